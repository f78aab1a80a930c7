// CopyFromGuest's framing as encodeDownload writes it, on temp directories.
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CHUNK_SIZE, type CopyFromGuestResponse, MAX_BATCH_ENTRIES } from "@guestkit/protocol";
import { describe, expect, it } from "vitest";
import { encodeDownload } from "../src/download-encoder.js";
import { tempDir } from "./send-support.js";

async function download(path: string, options: { batch?: boolean; followLinks?: boolean } = {}) {
  const sent: CopyFromGuestResponse["response"][] = [];
  await encodeDownload(
    { path, batch: options.batch ?? false, followLinks: options.followLinks ?? false },
    async (message) => {
      sent.push(message.response);
    },
  );
  return sent;
}

function tree(): string {
  const root = join(tempDir(), "root");
  mkdirSync(join(root, "sub"), { recursive: true });
  writeFileSync(join(root, "sub/small"), "small");
  writeFileSync(join(root, "large"), Buffer.alloc(CHUNK_SIZE + 1, 3));
  symlinkSync("sub/small", join(root, "link"));
  return root;
}

describe("encodeDownload", () => {
  it("sends header, data and end per entry, the last end final, paths under the root's name", async () => {
    const sent = await download(tree());
    const headers = sent.filter((message) => message.case === "header").map((message) => message.value.path);
    expect(new Set(headers)).toEqual(new Set(["root", "root/sub", "root/sub/small", "root/large", "root/link"]));
    const ends = sent.filter((message) => message.case === "end");
    expect(ends).toHaveLength(headers.length);
    expect(ends.at(-1)?.value).toMatchObject({ final: true, partial: false });
    expect(ends.slice(0, -1).every((end) => !end.value.final)).toBe(true);
    // The large file in CHUNK_SIZE pieces, right after its header.
    const large = sent.findIndex((message) => message.case === "header" && message.value.path === "root/large");
    expect(sent[large + 1]).toMatchObject({ case: "data", value: expect.objectContaining({ length: CHUNK_SIZE }) });
    expect(sent[large + 2]).toMatchObject({ case: "data", value: expect.objectContaining({ length: 1 }) });
    const link = sent.find((message) => message.case === "header" && message.value.path === "root/link");
    expect(link?.value).toMatchObject({ isSymlink: true, linkTarget: "sub/small", size: 0n });
  });

  it("batches whole entries when asked, keeps larger files in the original framing, ends with a bare final end", async () => {
    const sent = await download(tree(), { batch: true });
    const batched = sent.flatMap((message) => (message.case === "batch" ? message.value.entries : []));
    expect(new Set(batched.map((entry) => entry.header?.path))).toEqual(
      new Set(["root", "root/sub", "root/sub/small", "root/link"]),
    );
    expect(batched.find((entry) => entry.header?.path === "root/sub/small")?.data.toString()).toBe("small");
    expect(sent.filter((message) => message.case === "header").map((message) => message.value.path)).toEqual([
      "root/large",
    ]);
    expect(sent.at(-1)).toMatchObject({ case: "end", value: { final: true, partial: false } });
  });

  it("keeps each batch within MAX_BATCH_ENTRIES", async () => {
    const root = join(tempDir(), "root");
    mkdirSync(root);
    for (let index = 0; index < MAX_BATCH_ENTRIES + 10; index += 1) writeFileSync(join(root, `f${index}`), "x");
    const sizes = (await download(root, { batch: true })).flatMap((message) =>
      message.case === "batch" ? [message.value.entries.length] : [],
    );
    expect(sizes).toEqual([MAX_BATCH_ENTRIES, 11]);
  });

  it("answers a root it cannot copy with one error, and lists a skipped entry with a partial final end", async () => {
    const dir = tempDir();
    expect(await download(join(dir, "missing"))).toEqual([
      { case: "error", value: expect.objectContaining({ code: "ENOENT", path: join(dir, "missing") }) },
    ]);
    const root = tree();
    symlinkSync("/nowhere", join(root, "dangling"));
    const sent = await download(root, { followLinks: true });
    expect(sent.filter((message) => message.case === "skipped").map((message) => message.value)).toEqual([
      expect.objectContaining({ path: "root/dangling", code: "ENOENT" }),
    ]);
    expect(sent.at(-1)).toMatchObject({ case: "end", value: { final: true, partial: true } });
  });

  it("names the root of / '.' and of a trailing-slash path by its base name", async () => {
    const root = join(tempDir(), "root");
    mkdirSync(root);
    writeFileSync(join(root, "file"), "x");
    const sent = await download(`${root}//file/`);
    expect(sent[0]).toMatchObject({ case: "header", value: { path: "file", size: 1n } });
  });
});

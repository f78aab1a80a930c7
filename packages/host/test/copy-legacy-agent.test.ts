// copyTo against an agent that knows only the original protocol: it never announces
// batches, and it would silently drop one (as the existing Go agent does), so every
// file arriving proves the client stayed in the original framing.

import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LegacyAgent, startLegacyAgent } from "@guestkit/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyTo } from "../src/copy/copy-to.js";
import { type CopyClient, connectCopyClient } from "./copy-fixture.js";

let agent: LegacyAgent;
let client: CopyClient;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "guestkit-legacy-test-"));
  agent = await startLegacyAgent();
  client = await connectCopyClient(agent.socketPath);
});

afterAll(async () => {
  client?.close();
  await agent?.stop();
  await rm(work, { recursive: true, force: true });
});

describe("copyTo against an agent that speaks only the original protocol", () => {
  it("sends a tree of many small files in the original framing, and every file arrives", async () => {
    const source = join(work, "tree");
    const files = 3000;
    for (let d = 0; d < 10; d++) await mkdir(join(source, `d${d}`), { recursive: true });
    for (let i = 0; i < files; i++) await writeFile(join(source, `d${i % 10}`, `f${i}`), `file ${i}\n`);
    const large = Buffer.alloc(300 * 1024, 7);
    await writeFile(join(source, "large"), large);
    const destination = join(work, "dest");

    const result = await copyTo(client, source, destination);
    expect(result).toMatchObject({ entries: files + 12, partial: false });

    const arrived = (await readdir(destination, { recursive: true, withFileTypes: true })).filter((entry) =>
      entry.isFile(),
    );
    expect(arrived).toHaveLength(files + 1);
    for (const i of [0, 1, 1499, 2999]) {
      expect(await readFile(join(destination, `d${i % 10}`, `f${i}`), "utf8")).toBe(`file ${i}\n`);
    }
    expect((await readFile(join(destination, "large"))).equals(large)).toBe(true);
  });
});

// CopyToGuest's framing as UploadEncoder writes it, and the batch bounds both directions share.
import { create } from "@bufbuild/protobuf";
import {
  type CopyToGuestRequest,
  CopyToGuestStartSchema,
  MAX_BATCH_BYTES,
  MAX_BATCH_ENTRIES,
  SMALL_FILE_BYTES,
} from "@guestkit/protocol";
import { describe, expect, it } from "vitest";
import { EntryBatch } from "../src/entry-batch.js";
import { entryMetadata } from "../src/file-metadata.js";
import { splitNanoseconds } from "../src/timestamp.js";
import { UploadEncoder } from "../src/upload-encoder.js";

function recorder() {
  const sent: CopyToGuestRequest["request"][] = [];
  return { sent, send: async (request: CopyToGuestRequest) => void sent.push(request.request) };
}

const start = (path: string, size = 0) => create(CopyToGuestStartSchema, { path, size: BigInt(size) });

describe("UploadEncoder", () => {
  it("without batching: start, data, end for every entry", async () => {
    const { sent, send } = recorder();
    const encoder = new UploadEncoder(send, false);
    await encoder.whole(start("/d"), new Uint8Array(0));
    await encoder.whole(start("/d/f", 2), Buffer.from("hi"));
    await encoder.finish();
    expect(sent.map((request) => request.case)).toEqual(["start", "end", "start", "data", "end"]);
  });

  it("with batching: whole entries wait in a batch, which goes before the next streamed file", async () => {
    const { sent, send } = recorder();
    const encoder = new UploadEncoder(send, true);
    await encoder.whole(start("/a", 1), Buffer.from("a"));
    await encoder.whole(start("/b", 1), Buffer.from("b"));
    expect(sent).toEqual([]);
    await encoder.streamed(start("/big", 2), async (sendData) => {
      await sendData(Buffer.from("x"));
      await sendData(Buffer.from("y"));
    });
    await encoder.whole(start("/c", 1), Buffer.from("c"));
    await encoder.finish();
    expect(sent.map((request) => request.case)).toEqual(["batch", "start", "data", "data", "end", "batch"]);
    const first = sent[0];
    expect(first?.case === "batch" && first.value.entries.map((entry) => entry.start?.path)).toEqual(["/a", "/b"]);
  });

  it("sends no end for a streamed file whose read fails, so nothing of it is committed", async () => {
    const { sent, send } = recorder();
    const encoder = new UploadEncoder(send, true);
    const failure = new Error("changed while read");
    await expect(
      encoder.streamed(start("/f", 2), async (sendData) => {
        await sendData(Buffer.from("x"));
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(sent.map((request) => request.case)).toEqual(["start", "data"]);
  });

  it("starts a new batch at MAX_BATCH_BYTES of data", async () => {
    const { sent, send } = recorder();
    const encoder = new UploadEncoder(send, true);
    const files = MAX_BATCH_BYTES / SMALL_FILE_BYTES + 1;
    for (let index = 0; index < files; index += 1) {
      await encoder.whole(start(`/f${index}`, SMALL_FILE_BYTES), Buffer.alloc(SMALL_FILE_BYTES));
    }
    await encoder.finish();
    expect(sent.map((request) => (request.case === "batch" ? request.value.entries.length : 0))).toEqual([
      files - 1,
      1,
    ]);
  });
});

describe("EntryBatch", () => {
  it("is full at MAX_BATCH_ENTRIES entries or when the next data would pass MAX_BATCH_BYTES", () => {
    const batch = new EntryBatch<number>();
    expect(batch.take()).toBeUndefined();
    batch.add(1, MAX_BATCH_BYTES - 10);
    expect(batch.isFullFor(10)).toBe(false);
    expect(batch.isFullFor(11)).toBe(true);
    expect(batch.take()).toEqual([1]);
    for (let index = 0; index < MAX_BATCH_ENTRIES; index += 1) batch.add(index, 0);
    expect(batch.isFullFor(0)).toBe(true);
  });
});

describe("entry metadata", () => {
  it("splits times before 1970 with non-negative nanoseconds", () => {
    expect(splitNanoseconds(-1n)).toEqual({ seconds: -1n, nanos: 999_999_999 });
    expect(splitNanoseconds(1_500_000_000n)).toEqual({ seconds: 1n, nanos: 500_000_000 });
  });

  it("keeps setuid, setgid and sticky bits, a declared size for files only", async () => {
    const { lstatSync } = await import("node:fs");
    const tmp = lstatSync("/tmp", { bigint: true });
    expect(entryMetadata(tmp, "", 5n)).toMatchObject({ isDir: true, size: 0n, mode: Number(tmp.mode & 0o7777n) });
    const self = lstatSync("/proc/self/status", { bigint: true });
    expect(entryMetadata(self, "", 42n)).toMatchObject({ isDir: false, isSymlink: false, size: 42n });
  });
});

// connectVsock on this machine: everything that is decided before a connect() reaches
// the kernel. Real connects (refused, timed out, data flow) run inside the QEMU guest,
// where vsock_loopback makes CID 1 local; see tests/qemu.
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { connectVsock, localCid, VMADDR_CID_ANY, VMADDR_CID_HOST, VMADDR_PORT_ANY } from "../src/index.js";
import { assertSafeToDial } from "./cid-guard.js";
import { openFdCount } from "./fd-count.js";

describe("connectVsock argument checks (no system call is made)", () => {
  it.each([
    [-1, 2222, "vsock connect: CID must be an integer from 0 to 4294967294, got -1"],
    [VMADDR_CID_ANY, 2222, "vsock connect: CID must be an integer from 0 to 4294967294, got 4294967295"],
    [3.5, 2222, "vsock connect: CID must be an integer from 0 to 4294967294, got 3.5"],
    [3, -1, "vsock connect: port must be an integer from 0 to 4294967295, got -1"],
    [3, 2 ** 32, "vsock connect: port must be an integer from 0 to 4294967295, got 4294967296"],
    [3, VMADDR_PORT_ANY, "vsock connect: port 4294967295 (VMADDR_PORT_ANY) is not a target"],
  ])("rejects cid %s port %s", async (cid, port, message) => {
    const before = openFdCount();
    await expect(connectVsock(cid, port, { timeoutMs: 100 })).rejects.toThrow(new RangeError(message));
    expect(openFdCount()).toBe(before);
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])("rejects timeoutMs %s", async (timeoutMs) => {
    await expect(connectVsock(3, 2222, { timeoutMs })).rejects.toThrow(
      `vsock connect: timeoutMs must be a positive number, got ${timeoutMs}`,
    );
  });

  it("rejects with the signal's reason when already aborted, before opening a socket", async () => {
    const before = openFdCount();
    const reason = new Error("caller gave up");
    await expect(connectVsock(3, 2222, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(openFdCount()).toBe(before);
  });
});

describe("the dial guard tests go through", () => {
  it("refuses the host CID, this machine's CID and anything leaving the machine", () => {
    expect(() => assertSafeToDial(VMADDR_CID_HOST)).toThrow("refusing to dial CID 2");
    if (existsSync("/dev/vsock")) {
      const own = localCid();
      expect(() => assertSafeToDial(own)).toThrow(`refusing to dial CID ${own}`);
    }
    expect(() => assertSafeToDial(4)).toThrow("tests dial only CID 1");
  });

  it("allows CID 1 only where vsock_loopback is loaded", () => {
    if (existsSync("/sys/module/vsock_loopback")) {
      expect(() => assertSafeToDial(1)).not.toThrow();
    } else {
      expect(() => assertSafeToDial(1)).toThrow("vsock_loopback is not loaded here");
    }
  });
});

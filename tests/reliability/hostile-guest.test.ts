// A hostile guest, seen from the host, through the whole client library (target
// parsing, the shared connection, the dial bridge) rather than a bare gRPC client:
// packages/host/test/hostile-copy.test.ts covers copyFrom's own rules; this covers the
// same attacks through createGuestClient, into both kinds of destination, through the
// hybrid-vsock endpoint too, and what hostile-agent.ts does not script (rogue-agent.ts):
// misbehaving Exec, StatPath and CopyToGuest, messages over the limit, trees too deep,
// names too long, texts of many MiB. Every attack must be refused with a clear error,
// nothing may land outside the destination, no temp file may stay, and the host's
// memory and fds must stay bounded.
import { readdirSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CopyError, createGuestClient, type GuestClient, GuestError } from "@guestkit/host";
import {
  type HostileAgent,
  type HostileScenario,
  type HybridVsockEndpoint,
  type RogueAgent,
  type RogueScenario,
  sampleRss,
  startHostileAgent,
  startHybridVsockEndpoint,
  startRogueAgent,
} from "@guestkit/testkit";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

const MiB = 1024 * 1024;

let work: string;
let dest: string;
let outside: string;
let agent: HostileAgent | RogueAgent | undefined;
let endpoint: HybridVsockEndpoint | undefined;
let client: GuestClient | undefined;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "guestkit-hostile-guest-"));
  dest = join(work, "dest");
  outside = join(work, "outside");
  await mkdir(dest);
  await mkdir(outside);
});

afterEach(async () => {
  await client?.close();
  client = undefined;
  await endpoint?.close();
  endpoint = undefined;
  await agent?.stop();
  agent = undefined;
  await rm(work, { recursive: true, force: true });
});

function hostFds(): number {
  return readdirSync("/proc/self/fd").length;
}

async function hostile(scenario: HostileScenario, options: { count?: number } = {}): Promise<GuestClient> {
  agent = await startHostileAgent({ scenario, outsideDir: outside, ...options });
  client = createGuestClient(`unix:${agent.socketPath}`);
  return client;
}

async function rogue(scenario: RogueScenario, options: { depth?: number } = {}): Promise<GuestClient> {
  agent = await startRogueAgent({ scenario, ...options });
  client = createGuestClient(`unix:${agent.socketPath}`);
  return client;
}

async function failure<T extends GuestError = GuestError>(promise: Promise<unknown>): Promise<T> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(GuestError);
  return error as T;
}

/** Nothing outside `dest`, no temp file anywhere, nothing named like the attack's payload. */
async function expectContained(): Promise<void> {
  expect((await readdir(work)).sort()).toEqual(["dest", "outside"]);
  expect(await readdir(outside)).toEqual([]);
  const inside = (await readdir(dest, { recursive: true })).map(String);
  expect(inside.filter((path) => path.includes(".guestkit-"))).toEqual([]);
  expect(inside.filter((path) => /escaped|evil/.test(path))).toEqual([]);
}

const REFUSED: Array<[HostileScenario, CopyError["reason"]]> = [
  ["traversal", "unsafe-entry"],
  ["traversal-root", "unsafe-entry"],
  ["absolute", "unsafe-entry"],
  ["symlink-then-file", "unsafe-entry"],
  ["inner-symlink-then-file", "unsafe-entry"],
  ["link-escape", "unsafe-entry"],
  ["link-chain", "unsafe-entry"],
  ["dir-over-link", "unsafe-entry"],
  ["nul-name", "unsafe-entry"],
  ["empty-name", "unsafe-entry"],
  ["foreign-root", "unsafe-entry"],
  ["oversize", "size-mismatch"],
  ["undersize", "size-mismatch"],
  ["endless", "size-mismatch"],
  ["no-final", "protocol"],
  ["data-first", "protocol"],
  ["only-final-end", "protocol"],
];

describe("escape tricks through the full client", () => {
  for (const [scenario, kind] of REFUSED) {
    it(`${scenario}: refused (${kind}) into an existing directory and into a new name`, async () => {
      const guest = await hostile(scenario);
      // Connected first, so that the connection's own fds are in the count.
      await guest.connect();
      const fds = hostFds();
      for (const target of [dest, join(dest, "new-name")]) {
        const error = await failure<CopyError>(guest.copyFrom("/srv/root", target));
        expect(error).toBeInstanceOf(CopyError);
        expect(error.reason).toBe(kind);
        expect(error.message.length).toBeLessThan(2000);
        await expectContained();
      }
      // Both failed transfers let go of everything they opened.
      expect(hostFds()).toBeLessThanOrEqual(fds);
    });
  }

  it("through the hybrid-vsock endpoint the same attacks are refused the same way", async () => {
    for (const [scenario, kind] of REFUSED.filter(([name]) =>
      ["symlink-then-file", "traversal", "endless"].includes(name),
    )) {
      agent = await startHostileAgent({ scenario, outsideDir: outside });
      endpoint = await startHybridVsockEndpoint();
      endpoint.register(2222, agent.socketPath);
      client = createGuestClient(endpoint.target(2222));
      const error = await failure<CopyError>(client.copyFrom("/srv/root", dest));
      expect(error.reason, scenario).toBe(kind);
      await expectContained();
      await client.close();
      await endpoint.close();
      await agent.stop();
      client = undefined;
      endpoint = undefined;
      agent = undefined;
    }
  });

  it("a benign transfer from the same harness works, so the refusals are not a broken client", async () => {
    const guest = await hostile("benign");
    const result = await guest.copyFrom("/srv/root", dest);
    expect(result).toMatchObject({ entries: 3, bytes: 5 });
  });
});

describe("memory stays bounded against an endless or enormous guest", () => {
  it("an endless file of 2^62 declared bytes: 512 MiB streamed, host RSS flat, abort leaves nothing", async () => {
    const guest = await hostile("endless-huge");
    const controller = new AbortController();
    const rss = sampleRss(process.pid, 20);
    const base = process.memoryUsage().rss;
    let seen = 0;
    const error = await failure<CopyError>(
      guest.copyFrom("/srv/root", dest, {
        signal: controller.signal,
        onProgress: ({ bytes }) => {
          seen = bytes;
          if (bytes >= 512 * MiB) controller.abort();
        },
      }),
    );
    const peak = rss.stop().peakBytes;
    expect(error.reason).toBe("cancelled");
    expect(seen).toBeGreaterThanOrEqual(512 * MiB);
    expect(peak - base).toBeLessThan(100 * MiB);
    expect(await readdir(dest)).toEqual([]);
    await expectContained();
  }, 120_000);

  it("50,000 tiny entries through the full client: all written, RSS bounded", async () => {
    // packages/host/test/hostile-copy.test.ts sends a million to copyFrom itself.
    const count = 50_000;
    const guest = await hostile("many-entries", { count });
    // tmpfs: what is measured is the host's memory, not this VM's disk.
    const target = await mkdtemp("/dev/shm/guestkit-hostile-guest-");
    try {
      const rss = sampleRss(process.pid, 50);
      const base = process.memoryUsage().rss;
      const result = await guest.copyFrom("/srv/root", target);
      const peak = rss.stop().peakBytes;
      expect(result.entries).toBe(count + 1 + count / 1000);
      expect((await readdir(join(target, "root"))).length).toBe(count / 1000);
      expect(peak - base).toBeLessThan(200 * MiB);
    } finally {
      await rm(target, { recursive: true, force: true });
    }
  }, 300_000);

  it("a tree 5,000 directories deep: refused with a clear error, nothing outside", async () => {
    const guest = await rogue("copyfrom-deep", { depth: 5000 });
    const error = await failure<CopyError>(guest.copyFrom("/srv/root", dest));
    // The local path outgrows PATH_MAX long before the bottom is reached.
    expect(error.reason).toBe("local-io");
    expect(error.errno).toBe("ENAMETOOLONG");
    expect(error.message.length).toBeLessThan(20_000);
    await expectContained();
  }, 60_000);

  it("a name longer than NAME_MAX: refused before anything is created", async () => {
    const guest = await rogue("copyfrom-long-name");
    const error = await failure<CopyError>(guest.copyFrom("/srv/root", dest));
    expect(error.reason).toBe("unsafe-entry");
    expect(error.message).toMatch(/name longer than 255 bytes/);
    await expectContained();
  });

  it("a data message over MAX_MESSAGE_BYTES: RESOURCE_EXHAUSTED, nothing written", async () => {
    const guest = await rogue("copyfrom-oversized-message");
    const error = await failure<CopyError>(guest.copyFrom("/srv/root", dest));
    expect(error.code).toBe(8);
    expect(error.message).toMatch(/larger than max/);
    await expectContained();
  });

  it("an Exec stdout message over MAX_MESSAGE_BYTES: RESOURCE_EXHAUSTED", async () => {
    const guest = await rogue("exec-oversized-message");
    const error = await failure(guest.run(["anything"]));
    expect(error.code).toBe(8);
  });

  it("endless Exec output to run(): kept to maxOutputBytes, host RSS flat, cancel ends it", async () => {
    const guest = await rogue("exec-endless-output");
    const rss = sampleRss(process.pid, 20);
    const base = process.memoryUsage().rss;
    const handle = guest.exec(["anything"]);
    let bytes = 0;
    const controller = new AbortController();
    const collected = (async () => {
      for await (const output of handle) {
        bytes += output.data.byteLength;
        if (bytes >= 512 * MiB) controller.abort();
        if (controller.signal.aborted) break;
      }
    })();
    await collected;
    const peak = rss.stop().peakBytes;
    expect(bytes).toBeGreaterThanOrEqual(512 * MiB);
    expect(peak - base).toBeLessThan(100 * MiB);
  }, 120_000);

  it("endless Exec output that nobody reads: dropped past the limit, memory flat, the abort ends it", async () => {
    const guest = await rogue("exec-endless-output");
    const controller = new AbortController();
    const rss = sampleRss(process.pid, 20);
    const base = process.memoryUsage().rss;
    const handle = guest.exec(["anything"], { signal: controller.signal });
    while (handle.droppedBytes < 256 * MiB) await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort();
    const error = await failure(handle.exit);
    const peak = rss.stop().peakBytes;
    expect(error.reason).toBe("cancelled");
    expect(peak - base).toBeLessThan(100 * MiB);
  }, 120_000);
});

describe("a guest that lies, stalls or shouts", () => {
  it("an Exec that ends without its exit code is a protocol error, not a success", async () => {
    const guest = await rogue("exec-no-exit-code");
    const error = await failure(guest.run(["anything"]));
    expect(error.reason).toBe("protocol");
    expect(error.message).toMatch(/without an exit code/);
  });

  it("an Exec that never ends is ended by the caller's abort", async () => {
    const guest = await rogue("exec-silent");
    const handle = guest.exec(["anything"], { signal: AbortSignal.timeout(500) });
    expect(await handle.started).toBe(4242);
    const error = await failure(handle.exit);
    expect(error.reason).toBe("deadline");
  });

  it("a StatPath that never answers fails at its timeout", async () => {
    const guest = await rogue("stat-silent");
    const error = await failure(guest.stat("/x", { timeoutMs: 500 }));
    expect(error.reason).toBe("deadline");
  });

  it("a CopyToGuest that claims success before the upload is over is not believed", async () => {
    const guest = await rogue("copyto-early-success");
    const source = join(work, "source");
    await writeFile(source, Buffer.alloc(4 * MiB, 1));
    const error = await failure<CopyError>(guest.copyTo(source, "/guest/new"));
    expect(error.reason).toBe("protocol");
    expect(error.message).toMatch(/reported success before the upload was complete/);
  });

  const shouting: Array<[RogueScenario, (guest: GuestClient) => Promise<unknown>]> = [
    ["exec-giant-texts", (guest) => guest.run(["anything"], { check: true })],
    ["stat-giant-texts", (guest) => guest.stat("/x")],
    ["copyfrom-giant-error", (guest) => guest.copyFrom("/srv/root", dest)],
    [
      "copyto-giant-texts",
      async (guest) => {
        const source = join(work, "source");
        await writeFile(source, "x");
        return guest.copyTo(source, "/guest/new");
      },
    ],
  ];
  for (const [scenario, call] of shouting) {
    it(`${scenario}: texts of many MiB from the guest are cut before they reach the caller`, async () => {
      const guest = await rogue(scenario);
      const outcome = await call(guest).then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      );
      const text = "error" in outcome ? JSON.stringify(outcome.error, Object.getOwnPropertyNames(outcome.error)) : "";
      expect("error" in outcome).toBe(true);
      // The message, the details and every field the error carries, together.
      expect(text.length).toBeLessThan(64 * 1024);
    });
  }
});

// The library and guestctl driving an existing agent: the C-core legacy agent (Python
// grpcio, packages/testkit/c-core-legacy-agent), which behaves on the wire as the existing Go
// agent does: original fields only, ONE upload entry per stream, stdin EOF only by
// half-close, -1 for timeouts and signal deaths, UNKNOWN for a command that cannot start,
// symlink headers that carry a size, and gRPC's default keepalive enforcement (a client
// pinging more often than every 5 minutes gets GOAWAY too_many_pings, which fails every
// call on the connection). Each case runs through a Unix socket and through the
// hybrid-vsock endpoint, with the library and with guestctl.
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import {
  type CCoreLegacyAgent,
  type HybridVsockEndpoint,
  startCCoreLegacyAgent,
  startHybridVsockEndpoint,
} from "@guestkit/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CopyError } from "../src/copy/copy-error.js";
import { createGuestClient, type GuestClient } from "../src/guest-client.js";
import { Code, GuestError } from "../src/guest-error.js";
import type { GuestConnectionOptions } from "../src/transport/guest-connection.js";
import { runCli } from "./cli-support.js";

let agent: CCoreLegacyAgent;
let endpoint: HybridVsockEndpoint;
let work: string;
const clients: GuestClient[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "guestkit-existing-agent-"));
  agent = await startCCoreLegacyAgent();
  endpoint = await startHybridVsockEndpoint();
  endpoint.register(2222, agent.socketPath);
});

afterAll(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await endpoint?.close();
  const code = await agent?.stop();
  // A Python traceback in the agent's log would mean the client sent it something it
  // could not take, which the real agent might not survive either.
  expect(agent.log()).not.toContain("Traceback");
  expect(code).toBe(0);
  await rm(work, { recursive: true, force: true });
});

const transports = [
  ["a Unix socket", () => agent.target],
  ["the hybrid-vsock endpoint", () => endpoint.target()],
] as const;

function client(target: string, options: GuestConnectionOptions = {}, warnings: string[] = []): GuestClient {
  const guest = createGuestClient(target, { onWarning: (message) => warnings.push(message), ...options });
  clients.push(guest);
  return guest;
}

async function collect(handle: AsyncIterable<{ stream: string; data: Uint8Array }>): Promise<string> {
  let text = "";
  for await (const { data } of handle) text += Buffer.from(data).toString();
  return text;
}

describe.each(transports)("against an existing agent through %s", (_name, target) => {
  it("learns that the agent announces nothing, and says so", async () => {
    expect([...(await client(target()).capabilities())]).toEqual([]);
  });

  it("a quiet call outlives gRPC's ping policy: no pings, liveness checks instead", async () => {
    // 1 s pings would draw GOAWAY too_many_pings after about 5 s; the liveness checks
    // at the same interval are calls, which the server counts as traffic.
    const guest = client(target(), { keepaliveMs: 1000, keepaliveTimeoutMs: 2000 });
    const { exit } = await guest.run(["sleep", "8"]);
    expect(exit.code).toBe(0);
    expect(agent.log()).not.toContain("too_many_pings");
  }, 30_000);

  it("stdin EOF arrives by half-close, with and without a stdin stream", async () => {
    const guest = client(target());
    const withStdin = guest.exec(["cat"], { stdin: true });
    withStdin.stdin.end("from the host\n");
    expect(await collect(withStdin)).toBe("from the host\n");
    expect((await withStdin.exit).code).toBe(0);
    // No stdin at all: cat must see EOF at once, or it would wait forever.
    const { stdout, exit } = await guest.run(["cat"]);
    expect(stdout).toBe("");
    expect(exit.code).toBe(0);
  });

  it("a timeout is an unknown exit status, never a success", async () => {
    const { exit } = await client(target()).run(["sleep", "30"], { timeoutSeconds: 1 });
    expect(exit).toMatchObject({ code: -1, unknown: true, timedOut: false });
  });

  it("a command that cannot start is a start failure (127), not an opaque error", async () => {
    const { exit } = await client(target()).run(["/nonexistent/tool"]);
    expect(exit).toMatchObject({ code: 127, startFailed: true });
    expect(exit.startError).toContain("no such file or directory");
  });

  it("refuses what it cannot deliver: another user, signals; warns about terminal sizes", async () => {
    const warnings: string[] = [];
    const guest = client(target(), {}, warnings);
    const asNobody = await guest.run(["id", "-u"], { user: "nobody" }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(asNobody).toBeInstanceOf(GuestError);
    expect(asNobody).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "unsupported" });
    // Asked before the client knows what the agent is: dropped, with a warning...
    const sleeper = guest.exec(["sleep", "1"]);
    sleeper.kill("TERM");
    // ...and refused once it knows (such an agent reports no pid: wait for the call).
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(() => sleeper.kill("TERM")).toThrow(/cannot receive signals/);
    expect((await sleeper.exit).code).toBe(0);
    expect(warnings.join("\n")).toMatch(/cannot receive signals.*SIGTERM was not sent/);
    const tty = guest.exec(["true"], { tty: true, rows: 40, cols: 100 });
    expect((await tty.exit).code).toBe(0);
    expect(warnings.join("\n")).toMatch(/terminal size is not set/);
  });

  it("uploads a tree whole, one stream per entry, every file checked", async () => {
    const source = join(work, `tree-up-${_name.length}`);
    const files: string[] = [];
    for (let d = 0; d < 6; d++) {
      for (let e = 0; e < 3; e++) {
        await mkdir(join(source, `d${d}`, `e${e}`), { recursive: true });
        for (let f = 0; f < 12; f++) {
          const path = join(source, `d${d}`, `e${e}`, `f${f}`);
          await writeFile(path, `file ${d}/${e}/${f}\n`.repeat(f * 100 + 1));
          files.push(path);
        }
      }
    }
    await writeFile(join(source, "large"), Buffer.alloc(700 * 1024, 3));
    files.push(join(source, "large"));
    const destination = join(work, `tree-up-dest-${_name.length}`);
    const result = await client(target()).copyTo(source, destination);
    // The root, 6 + 18 directories, the files.
    expect(result).toMatchObject({ entries: 1 + 24 + files.length, partial: false });
    for (const path of files) {
      const copy = join(destination, relative(source, path));
      expect((await readFile(copy)).equals(await readFile(path)), copy).toBe(true);
    }
  });

  it("a symlink in an upload is skipped and listed: the original fields cannot express it", async () => {
    const source = join(work, `links-up-${_name.length}`);
    await mkdir(source);
    await writeFile(join(source, "file"), "data\n");
    await symlink("file", join(source, "link"));
    const destination = join(work, `links-up-dest-${_name.length}`);
    const result = await client(target()).copyTo(source, destination);
    expect(result.partial).toBe(true);
    expect(result.skipped).toEqual([expect.objectContaining({ path: expect.stringMatching(/link$/) })]);
    expect(await readFile(join(destination, "file"), "utf8")).toBe("data\n");
    await expect(lstat(join(destination, "link"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("downloads a tree with symlinks (whose headers carry the link's size)", async () => {
    const source = join(work, `links-down-${_name.length}`);
    await mkdir(join(source, "sub"), { recursive: true });
    await writeFile(join(source, "sub", "file"), "content\n");
    await symlink("sub/file", join(source, "to-file"));
    await symlink("sub", join(source, "to-dir"));
    const destination = join(work, `links-down-dest-${_name.length}`);
    await client(target()).copyFrom(source, destination);
    expect(await readlink(join(destination, "to-file"))).toBe("sub/file");
    expect(await readlink(join(destination, "to-dir"))).toBe("sub");
    expect(await readFile(join(destination, "sub", "file"), "utf8")).toBe("content\n");
  });

  it("an upload the agent fails is an error naming the entry, never a silent partial", async () => {
    const source = join(work, `fail-up-${_name.length}`);
    await mkdir(source);
    await writeFile(join(source, "file"), "x");
    // The agent cannot create the parent of the destination: it must say so.
    const error = await client(target())
      .copyTo(join(source, "file"), "/proc/guestkit-no-such-dir/file")
      .then(
        () => undefined,
        (caught: unknown) => caught,
      );
    expect(error).toBeInstanceOf(CopyError);
  });
});

describe("a hung VM running an existing agent", () => {
  it("is noticed by the liveness checks within keepaliveMs + keepaliveTimeoutMs", async () => {
    const frozen = await startHybridVsockEndpoint();
    try {
      frozen.register(2222, agent.socketPath);
      const guest = client(frozen.target(), { keepaliveMs: 500, keepaliveTimeoutMs: 1000 });
      const running = guest.exec(["sleep", "60"]);
      await guest.capabilities();
      frozen.freeze();
      const frozenAt = Date.now();
      const error = await running.exit.then(
        () => undefined,
        (caught: unknown) => caught,
      );
      const noticedAfter = Date.now() - frozenAt;
      expect(error).toMatchObject({ code: Code.UNAVAILABLE, reason: "connection-lost" });
      // One check in flight when the VM froze, or the next one 500 ms later, then its 1 s.
      expect(noticedAfter).toBeLessThan(1500 + 1000);
    } finally {
      await frozen.close();
    }
  });
});

describe("guestctl against an existing agent", () => {
  it.each(transports)(
    "through %s: a 30 s quiet command with default keepalive exits 0",
    async (_name, target) => {
      const result = await runCli(["--target", target(), "exec", "--", "sh", "-c", "sleep 30; echo done"]);
      expect(result.stderr).toBe("");
      expect(result.stdout).toBe("done\n");
      expect(result.code).toBe(0);
    },
    60_000,
  );

  it.each(transports)(
    "through %s: `exec -i cat` gets EOF; a timeout exits 255 saying why",
    async (_name, target) => {
      const echoed = await runCli(["--target", target(), "exec", "-i", "--", "cat"], { input: "x\n" });
      expect(echoed).toMatchObject({ code: 0, stdout: "x\n" });
      const timedOut = await runCli(["--target", target(), "exec", "--timeout", "1", "--", "sleep", "30"]);
      expect(timedOut.code).toBe(255);
      expect(timedOut.stderr).toContain("exit status unknown (the agent reported -1: a timeout or a signal death)");
      const missing = await runCli(["--target", target(), "exec", "--", "/nonexistent/tool"]);
      expect(missing.code).toBe(127);
      expect(missing.stderr).toContain("no such file or directory");
    },
    30_000,
  );

  it.each(transports)(
    "through %s: cp of a tree in and out is whole",
    async (_name, target) => {
      const source = join(work, `cli-tree-${_name.length}`);
      for (let d = 0; d < 4; d++) {
        await mkdir(join(source, `d${d}`), { recursive: true });
        for (let f = 0; f < 25; f++) await writeFile(join(source, `d${d}`, `f${f}`), `${d}-${f}\n`);
      }
      const inGuest = join(work, `cli-tree-guest-${_name.length}`);
      const up = await runCli(["--target", target(), "cp", source, `guest:${inGuest}`]);
      expect(up).toMatchObject({ code: 0, stderr: "" });
      const back = join(work, `cli-tree-back-${_name.length}`);
      const down = await runCli(["--target", target(), "cp", `guest:${inGuest}`, back]);
      expect(down).toMatchObject({ code: 0, stderr: "" });
      for (let d = 0; d < 4; d++) {
        const names = (await readdir(join(back, `d${d}`))).sort();
        expect(names).toHaveLength(25);
        for (let f = 0; f < 25; f++) expect(await readFile(join(back, `d${d}`, `f${f}`), "utf8")).toBe(`${d}-${f}\n`);
      }
    },
    60_000,
  );
});

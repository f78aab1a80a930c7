// The VMM's side of the hybrid-vsock handshake misbehaving: it closes in the middle of
// its answer, answers garbage instead of `OK <port>`, or never answers. Every call must
// fail within its deadline with a clear UNAVAILABLE (never hang), and the next call on
// the same client must work once the endpoint behaves again.
import { createGuestClient, type GuestClient, GuestError } from "@guestkit/host";
import {
  type AgentProcess,
  type HybridVsockEndpoint,
  type HybridVsockFault,
  startAgent,
  startHybridVsockEndpoint,
} from "@guestkit/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { sleep, waitFor } from "./support.js";

const UNAVAILABLE = 14;
const HANDSHAKE_TIMEOUT_MS = 500;
// What "fails within its deadline" allows on top of the deadline itself, on a loaded
// 2-core machine: far below anything that would count as a hang.
const SLACK_MS = 2000;

let agent: AgentProcess;
let endpoint: HybridVsockEndpoint;
const clients: GuestClient[] = [];

beforeAll(async () => {
  agent = await startAgent();
  endpoint = await startHybridVsockEndpoint();
  endpoint.register(2222, agent.socketPath);
});

afterAll(async () => {
  await endpoint.close();
  await agent.stop();
});

afterEach(async () => {
  endpoint.fault = "none";
  await Promise.all(clients.splice(0).map((client) => client.close()));
  // The endpoint sees a client's close a moment later; each test starts from none open.
  await waitFor("the endpoint's connections to close", () => endpoint.stats().open === 0);
});

function client(options: Parameters<typeof createGuestClient>[1] = {}): GuestClient {
  const made = createGuestClient(endpoint.target(2222), {
    handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
    dialTimeoutMs: HANDSHAKE_TIMEOUT_MS,
    ...options,
  });
  clients.push(made);
  return made;
}

/** Runs `call`, expects a GuestError, and returns it with how long it took. */
async function timedFailure(call: () => Promise<unknown>): Promise<{ error: GuestError; ms: number }> {
  const start = Date.now();
  const error = await call().then(
    () => undefined,
    (reason: unknown) => reason,
  );
  const ms = Date.now() - start;
  expect(error).toBeInstanceOf(GuestError);
  return { error: error as GuestError, ms };
}

const faults: Array<[HybridVsockFault, string, RegExp]> = [
  // Half an OK line, then EOF: the VMM went away mid-answer.
  ["close-mid-handshake", "no-listener", /closed the connection/],
  ["garbage", "bad-handshake", /unexpected answer to CONNECT: "ERR no such thing\\n"/],
  ["never-answer", "handshake-timeout", /no answer to CONNECT 2222 within \d+ ms/],
];

for (const [fault, reason, message] of faults) {
  describe(`the endpoint ${fault}`, () => {
    it("every kind of call fails within its deadline with a clear UNAVAILABLE", async () => {
      endpoint.fault = fault;
      const guest = client();
      const calls: Array<[string, () => Promise<unknown>]> = [
        ["exec", () => guest.exec(["true"]).exit],
        ["run", () => guest.run(["true"])],
        ["stat", () => guest.stat("/")],
        ["copyFrom", () => guest.copyFrom("/etc/hostname", "/nonexistent-dir/never-written")],
        ["copyTo", () => guest.copyTo("/etc/hostname", "/nonexistent-dir/never-written")],
        ["waitUntilReady", () => guest.waitUntilReady({ timeoutMs: 1000 })],
      ];
      for (const [name, call] of calls) {
        const { error, ms } = await timedFailure(call);
        expect(error.code, name).toBe(UNAVAILABLE);
        expect(error.reason, name).toBe(reason);
        expect(error.message, name).toMatch(message);
        expect(error.message, name).toContain(endpoint.path);
        const deadline = name === "waitUntilReady" ? 1000 : fault === "never-answer" ? HANDSHAKE_TIMEOUT_MS : 0;
        expect(ms, `${name} took ${ms} ms`).toBeLessThan(deadline + SLACK_MS);
      }
    });

    it("the next call on the same client works once the endpoint is healthy again", async () => {
      endpoint.fault = fault;
      const guest = client();
      await timedFailure(() => guest.run(["true"]));
      endpoint.fault = "none";
      expect((await guest.run(["echo", "recovered"])).stdout).toBe("recovered\n");
      expect((await guest.stat("/")).exists).toBe(true);
    });

    it("a faulty endpoint leaves no connection open behind the failed attempts", async () => {
      endpoint.fault = fault;
      const guest = client();
      for (let i = 0; i < 5; i += 1) await timedFailure(() => guest.stat("/"));
      endpoint.fault = "none";
      await guest.stat("/");
      // Exactly one joined connection: the healthy one.
      expect(endpoint.stats().open).toBe(1);
    });
  });
}

describe("retries within connectTimeoutMs", () => {
  it("a call waiting for a VMM that does not answer yet gets through once it does", async () => {
    endpoint.fault = "never-answer";
    const guest = client({ connectTimeoutMs: 20_000 });
    const pending = guest.run(["echo", "through"]);
    await sleep(HANDSHAKE_TIMEOUT_MS * 2);
    endpoint.fault = "none";
    expect((await pending).stdout).toBe("through\n");
  });

  it("a call waiting through a VMM that keeps closing mid-answer gets through once it stops", async () => {
    endpoint.fault = "close-mid-handshake";
    const guest = client({ connectTimeoutMs: 20_000 });
    const pending = guest.run(["echo", "through"]);
    await sleep(500);
    endpoint.fault = "none";
    expect((await pending).stdout).toBe("through\n");
  });

  it("garbage is not retried: a VMM that speaks another protocol will not start making sense", async () => {
    endpoint.fault = "garbage";
    const guest = client({ connectTimeoutMs: 20_000 });
    const { error, ms } = await timedFailure(() => guest.run(["true"]));
    expect(error.reason).toBe("bad-handshake");
    expect(ms).toBeLessThan(SLACK_MS);
  });

  it("gives up at connectTimeoutMs with the last reason, never later", async () => {
    endpoint.fault = "never-answer";
    const guest = client({ connectTimeoutMs: 1500 });
    const { error, ms } = await timedFailure(() => guest.run(["true"]));
    expect(error.reason).toBe("handshake-timeout");
    expect(ms).toBeGreaterThanOrEqual(1400);
    expect(ms).toBeLessThan(1500 + SLACK_MS);
  });
});

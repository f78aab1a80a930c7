// The agent grants a wide HTTP/2 window (limits.ts) on every session: checked on the
// wire with a plain node:http2 client against the real agent binary.
import { connect as connectHttp2 } from "node:http2";
import { connect as connectUnix } from "node:net";
import { HTTP2_WINDOW_BYTES, MAX_CONCURRENT_STREAMS } from "@guestkit/protocol";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type AgentProcess, startAgent } from "../../testkit/src/agent-process.js";

let agent: AgentProcess;

beforeAll(async () => {
  agent = await startAgent();
});

afterAll(async () => {
  await agent?.stop();
});

it("advertises the stream window and the concurrent-stream bound in SETTINGS, and opens the connection window", async () => {
  const session = connectHttp2("http://agent", { createConnection: () => connectUnix(agent.socketPath) });
  try {
    const settings = await new Promise<{ initialWindowSize?: number; maxConcurrentStreams?: number }>(
      (resolve, reject) => {
        session.once("remoteSettings", resolve);
        session.once("error", reject);
      },
    );
    expect(settings.initialWindowSize).toBe(HTTP2_WINDOW_BYTES);
    // The bound on concurrent calls per connection, set beside the window (both are SETTINGS).
    expect(settings.maxConcurrentStreams).toBe(MAX_CONCURRENT_STREAMS);
    // The connection-level WINDOW_UPDATE follows the SETTINGS frame; a ping round trip
    // after it guarantees it has been read.
    await new Promise<void>((resolve, reject) => session.ping((error) => (error ? reject(error) : resolve())));
    expect(session.state.remoteWindowSize).toBe(HTTP2_WINDOW_BYTES);
  } finally {
    await new Promise<void>((resolve) => session.close(() => resolve()));
  }
});

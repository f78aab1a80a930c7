// A host that stops reading in the middle of a download must not keep the agent from
// stopping. The stalled host here is a plain node:http2 client that grants an 8 MiB window
// (more than the socket holds, which our own client never does), starts a command that
// writes without end, and is then frozen with SIGSTOP: the agent's HTTP/2 session is left
// with a write that can never finish, and Node's session teardown waits for it. SIGTERM
// must still end the agent, and its command, within the shutdown deadline.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AgentProcess, encodeRequest, grpcFrame, startAgent } from "@guestkit/testkit";
import { afterEach, expect, it } from "vitest";

const work = mkdtempSync(join(tmpdir(), "stalled-host-"));
let agent: AgentProcess | undefined;
let host: ChildProcess | undefined;

afterEach(async () => {
  if (host?.pid) {
    host.kill("SIGKILL");
    host.kill("SIGCONT");
  }
  await agent?.stop();
  rmSync(work, { recursive: true, force: true });
});

const HOST_SCRIPT = `
import http2 from "node:http2";
import net from "node:net";
const [socketPath, request] = process.argv.slice(2);
const session = http2.connect("http://agent", {
  createConnection: () => net.connect(socketPath),
  settings: { initialWindowSize: 8 << 20 },
});
session.on("connect", () => session.setLocalWindowSize(8 << 20));
session.on("error", () => {});
const stream = session.request({ ":method": "POST", ":path": "/guest.GuestService/Exec", "content-type": "application/grpc", te: "trailers" });
stream.on("error", () => {});
stream.write(Buffer.from(request, "base64"));
let received = 0;
stream.on("data", (chunk) => {
  received += chunk.length;
  if (received > 1 << 20 && received - chunk.length <= 1 << 20) process.stdout.write("streaming\\n");
});
`;

it("SIGTERM stops the agent while a host has stopped reading a download", async () => {
  agent = await startAgent();
  const script = join(work, "stalled-host.mjs");
  writeFileSync(script, HOST_SCRIPT);
  const command = ["sh", "-c", "while :; do cat /dev/zero; done"];
  const request = grpcFrame(encodeRequest("exec", { request: { case: "start", value: { command } } })).toString(
    "base64",
  );
  host = spawn(process.execPath, [script, agent.socketPath, request], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    host?.stdout?.on("data", (text: Buffer) => {
      if (text.toString().includes("streaming")) resolve();
    });
    host?.once("exit", (code) => reject(new Error(`the host script exited (${code})`)));
  });
  host.kill("SIGSTOP");
  // Let the agent fill the socket and the host's window.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const started = Date.now();
  const exited = new Promise<number | null>((resolve) => agent?.process.once("exit", (code) => resolve(code)));
  agent.process.kill("SIGTERM");
  const code = await Promise.race([
    exited,
    new Promise<"hung">((resolve) => setTimeout(() => resolve("hung"), 20_000)),
  ]);
  expect(code, agent.stderr()).not.toBe("hung");
  expect(Date.now() - started).toBeLessThan(15_000);
  // The command was ended, not left behind.
  const pid = Number(/exec sh: started, pid (\d+)/.exec(agent.stderr())?.[1]);
  expect(pid).toBeGreaterThan(1);
  expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }));
}, 40_000);

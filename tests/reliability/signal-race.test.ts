// A signal that arrives the instant a command starts must reach it. The fastest a
// client can send one is pipelined right behind `start` in the same stream: the agent
// reads it as soon as the command is reported started. In TTY mode forkpty() returned
// before the child had made itself a session leader, so its process group did not exist
// yet and such a signal was lost about once in fifty (the command then ran to its end);
// the agent now waits for the setsid before reporting the start.
import {
  type AgentProcess,
  decodeResponse,
  encodeRequest,
  GUEST_METHODS,
  grpcFrame,
  RawGrpcConnection,
  startAgent,
} from "@guestkit/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";

let agent: AgentProcess;
let raw: RawGrpcConnection;

beforeAll(async () => {
  agent = await startAgent();
  raw = await RawGrpcConnection.open(agent.socketPath);
});

afterAll(async () => {
  await raw.close();
  await agent.stop();
});

/** Runs `sleep 30` with `signal` pipelined behind the start; resolves with the exit code sent. */
async function startThenSignal(tty: boolean, signal: string): Promise<number | undefined> {
  const result = await raw.call(GUEST_METHODS.exec.path, {
    body: [
      grpcFrame(encodeRequest("exec", { request: { case: "start", value: { command: ["sleep", "30"], tty } } })),
      grpcFrame(encodeRequest("exec", { request: { case: "signal", value: { name: signal } } })),
    ],
    endStream: false,
    // Far below the 30 s the command would run if the signal were lost.
    timeoutMs: 10_000,
  });
  for (const bytes of result.messages) {
    const message = decodeResponse("exec", bytes).response;
    if (message.case === "exitCode") return message.value;
  }
  return undefined;
}

for (const tty of [true, false]) {
  it(`${tty ? "TTY" : "pipes"}: a signal pipelined behind start always reaches the command`, async () => {
    const codes: Array<number | undefined> = [];
    // 10 at a time: concurrency is what makes the child late to its setsid.
    for (let round = 0; round < 15; round += 1) {
      codes.push(...(await Promise.all(Array.from({ length: 10 }, () => startThenSignal(tty, "KILL")))));
    }
    expect(codes.filter((code) => code !== 137)).toEqual([]);
    const terms = await Promise.all(Array.from({ length: 10 }, () => startThenSignal(tty, "TERM")));
    expect(terms.filter((code) => code !== 143)).toEqual([]);
  }, 60_000);
}

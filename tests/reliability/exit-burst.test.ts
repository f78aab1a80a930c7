// Output written just before exit must arrive even when many commands start at once.
// Forks are synchronous in the agent, so a burst of two hundred commands holds its event
// loop for hundreds of milliseconds; the bounded drain after exit (a timer) was then
// overdue and cut the output off before the poll phase that would have read it: a TTY
// command's whole output was lost (with `truncated` set) about once in a hundred.
import { createGuestClient, type GuestClient } from "@guestkit/host";
import { type AgentProcess, startAgent } from "@guestkit/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";

const BURST = 200;
// A TTY command costs more to start (a terminal): fewer rounds keep the test's time in
// check.
const ROUNDS = { tty: 2, pipes: 3 };

let agent: AgentProcess;
let clients: GuestClient[];

beforeAll(async () => {
  agent = await startAgent();
  clients = Array.from({ length: 4 }, () => createGuestClient(`unix:${agent.socketPath}`));
});

afterAll(async () => {
  await Promise.all(clients.map((client) => client.close()));
  await agent.stop();
});

for (const tty of [true, false]) {
  it(`${BURST} ${tty ? "TTY" : "pipe"} commands started at once: every one's output arrives whole`, async () => {
    const newline = tty ? "\r\n" : "\n";
    const wrong: string[] = [];
    for (let round = 0; round < (tty ? ROUNDS.tty : ROUNDS.pipes); round += 1) {
      const results = await Promise.all(
        Array.from({ length: BURST }, (_, i) =>
          (clients[i % clients.length] as GuestClient).run(
            ["sh", "-c", 'echo "first-$1"; echo "last-$1"', "sh", `${i}`],
            {
              tty,
            },
          ),
        ),
      );
      results.forEach((result, i) => {
        const expected = `first-${i}${newline}last-${i}${newline}`;
        if (result.stdout !== expected || result.exit.truncated) {
          wrong.push(`${i}: ${JSON.stringify(result.stdout)} truncated=${result.exit.truncated}`);
        }
      });
    }
    expect(wrong).toEqual([]);
  }, 120_000);
}

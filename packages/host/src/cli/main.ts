// guestctl: the command-line client of the guest agent. See program.ts for the
// commands; this file runs one and turns its outcome into output and an exit status.
// First: stops on a Node too old for guestctl before anything else is evaluated.
import "./node-requirement.js";
import { CommanderError } from "commander";
import { messageOf, statusOf } from "./exit-status.js";
import { createProgram } from "./program.js";

/** Runs guestctl with `args` (without node and the script); resolves with the exit status. */
export async function runCli(args: readonly string[]): Promise<number> {
  let status = 0;
  const program = createProgram((result) => {
    status = result;
  });
  try {
    await program.parseAsync([...args], { from: "user" });
    return status;
  } catch (error) {
    if (error instanceof CommanderError && error.exitCode === 0) return 0;
    process.stderr.write(`guestctl: ${messageOf(error)}\n`);
    if (process.env.GUESTCTL_DEBUG && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return statusOf(error);
  }
}

// A reader that went away (`guestctl --help | head -1`) is not a crash: what is left to
// print is dropped (exec's own output sinks also stop the remote command, see output-sink.ts).
for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {});

// Output is flushed before exiting: process.exit would otherwise cut a pipe's tail.
const status = await runCli(process.argv.slice(2));
await Promise.all(
  [process.stdout, process.stderr].map(
    (stream) =>
      new Promise<void>((resolve) => {
        if (stream.destroyed || !stream.writable) resolve();
        else stream.write("", () => resolve());
      }),
  ),
);
process.exit(status);

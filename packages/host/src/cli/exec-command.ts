// `guestctl exec`: runs a command in the guest as if it ran here. Its output goes to
// our stdout and stderr, our stdin goes to it with -i, our terminal becomes its
// terminal with -t, signals we get are sent to it, and we exit with its status. A bad
// command line exits 2 before anything runs; every other failure of guestctl itself
// exits 255, so it cannot pass for the command's status.
import type { Writable } from "node:stream";
import type { ExecHandle, ExitStatus } from "../exec/exec-handle.js";
import type { ExecOptions } from "../exec/exec-request.js";
import { createGuestClient } from "../guest-client.js";
import { type ConnectionFlags, clientOptions, parseSeconds } from "./connection-flags.js";
import { execDetached } from "./detached-commands.js";
import { CliError, EXIT_UNREACHABLE, EXIT_USAGE, messageOf, printable, usageError } from "./exit-status.js";
import { openLocalTerminal } from "./local-terminal.js";
import { OutputSink } from "./output-sink.js";
import { forwardSignals, SIGNALS_BEFORE_GIVING_UP, signalExitStatus } from "./signal-forwarding.js";

/** The options of `exec` as commander parses them. */
export interface ExecFlags extends ConnectionFlags {
  detach?: boolean;
  name?: string;
  interactive?: boolean;
  tty?: boolean;
  env?: string[];
  workdir?: string;
  user?: string;
  timeout?: string;
}

// What a raw terminal sends for Ctrl-C and Ctrl-\ (the default INTR and QUIT characters).
const KEY_SIGNALS = new Map<number, NodeJS.Signals>([
  [0x03, "SIGINT"],
  [0x1c, "SIGQUIT"],
]);

/** Runs `argv` in the guest; resolves with the status guestctl exits with. */
export async function execCommand(argv: string[], flags: ExecFlags): Promise<number> {
  const options = execOptions(flags);
  if (flags.detach) return execDetached(argv, options, flags);
  if (flags.name !== undefined) throw usageError("--name goes with -d (a detached command)");
  const client = createGuestClient(ownFailure(() => clientOptions(flags)));
  const terminal = flags.tty ? openLocalTerminal() : undefined;
  const size = terminal?.size();
  const abort = new AbortController();
  const notes: string[] = [];
  const cleanups: (() => void)[] = [];
  let gaveUpWith: NodeJS.Signals | undefined;
  let status: number;
  try {
    const handle = ownFailure(() =>
      client.exec(argv, {
        ...options,
        ...(size ? { rows: size.rows, cols: size.cols } : {}),
        signal: abort.signal,
      }),
    );
    const forwarder = forwardSignals({
      kill: (signal) => {
        try {
          handle.kill(signal);
        } catch (error) {
          // An agent that cannot receive signals: say so, and the next signals give up.
          process.stderr.write(`guestctl: warning: ${messageOf(error)}\n`);
        }
      },
      giveUp: (signal) => {
        gaveUpWith = signal;
        abort.abort();
      },
    });
    cleanups.push(() => forwarder.stop());
    if (terminal) {
      terminal.enterRaw();
      cleanups.push(() => terminal.restore());
      cleanups.push(terminal.onResize(({ rows, cols }) => handle.resize(rows, cols)));
    }
    if (handle.stdin) {
      cleanups.push(pipeStdin(handle.stdin));
    } else if (terminal?.interactive) {
      // Raw mode turned Ctrl-C into a byte; without -i no byte is sent, but the user
      // still expects it to interrupt the command.
      cleanups.push(
        readKeys((byte) => {
          const signal = KEY_SIGNALS.get(byte);
          if (signal) forwarder.deliver(signal);
        }),
      );
    }
    const { exit, wroteStderr } = await pumpOutput(handle);
    status = exit.code;
    // guestkit's agent writes a start failure's reason to the command's stderr; an
    // agent that does not is reported here.
    if (exit.startFailed && !wroteStderr && exit.startError) notes.push(printable(exit.startError));
    if (exit.unknown) {
      notes.push("exit status unknown (the agent reported -1: a timeout or a signal death)");
      status = EXIT_UNREACHABLE;
    }
    if (exit.truncated) {
      notes.push(
        "warning: a background process kept the command's output open after it exited; later output was not received",
      );
    }
  } catch (error) {
    if (gaveUpWith === undefined) throw asOwnFailure(error);
    notes.push(
      `the command did not end after ${SIGNALS_BEFORE_GIVING_UP} signals; gave up waiting (the agent kills it)`,
    );
    status = signalExitStatus(gaveUpWith);
  } finally {
    for (const cleanup of cleanups.splice(0).reverse()) cleanup();
    await client.close();
  }
  for (const note of notes) process.stderr.write(`guestctl: ${note}\n`);
  return status;
}

// Copies the command's output to ours until it ends, then returns how it ended.
async function pumpOutput(handle: ExecHandle): Promise<{ exit: ExitStatus; wroteStderr: boolean }> {
  // A reader of our stdout that went away: the command gets SIGPIPE, as it would here.
  const stdout = new OutputSink(process.stdout, () => handle.kill("SIGPIPE"));
  const stderr = new OutputSink(process.stderr, () => {});
  let wroteStderr = false;
  for await (const output of handle) {
    if (output.stream === "stderr") wroteStderr = true;
    await (output.stream === "stdout" ? stdout : stderr).write(output.data);
  }
  const exit = await handle.exit;
  await Promise.all([stdout.flush(), stderr.flush()]);
  return { exit, wroteStderr };
}

// Our stdin into the command's; our EOF becomes its EOF. Returns the undo function.
function pipeStdin(destination: Writable): () => void {
  const stdin = process.stdin;
  stdin.pipe(destination);
  return () => {
    stdin.unpipe(destination);
    stdin.pause();
    stdin.destroy();
  };
}

function readKeys(onByte: (byte: number) => void): () => void {
  const stdin = process.stdin;
  const onData = (chunk: Buffer) => {
    for (const byte of chunk) onByte(byte);
  };
  stdin.on("data", onData);
  return () => {
    stdin.off("data", onData);
    stdin.pause();
    stdin.destroy();
  };
}

function execOptions(flags: ExecFlags): ExecOptions {
  const options: ExecOptions = { tty: flags.tty === true, stdin: flags.interactive === true };
  if (flags.env && flags.env.length > 0) options.env = ownFailure(() => parseEnv(flags.env ?? []));
  if (flags.workdir !== undefined) options.cwd = flags.workdir;
  if (flags.user !== undefined) options.user = flags.user;
  if (flags.timeout !== undefined) {
    const timeout = flags.timeout;
    options.timeoutSeconds = ownFailure(() => parseSeconds(timeout, "--timeout", true));
  }
  return options;
}

/**
 * `-e NAME=VALUE` pairs; `-e NAME` alone passes this process's value of NAME (an error
 * when it has none, rather than silently leaving it out).
 */
export function parseEnv(pairs: readonly string[], local: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const equals = pair.indexOf("=");
    if (equals === 0) throw usageError(`-e ${pair}: the variable name is empty`);
    if (equals > 0) {
      env[pair.slice(0, equals)] = pair.slice(equals + 1);
      continue;
    }
    const value = local[pair];
    if (value === undefined) throw usageError(`-e ${pair}: ${pair} is not set here (write -e ${pair}=VALUE)`);
    env[pair] = value;
  }
  return env;
}

// Runs `step`; a usage error stays one (2), any other failure becomes a CliError with
// exec's own status, 255.
function ownFailure<T>(step: () => T): T {
  try {
    return step();
  } catch (error) {
    throw asOwnFailure(error);
  }
}

function asOwnFailure(error: unknown): CliError {
  if (error instanceof CliError && error.status === EXIT_USAGE) return error;
  return new CliError(messageOf(error), EXIT_UNREACHABLE, { cause: error });
}

// guestctl's detached-command commands: `exec -d`, `ps`, `logs`, `attach`, `kill`, `rm`
// (see StartDetached in proto/guest/guest.proto for what the agent does).

import type { DetachedInfo } from "../exec/detached.js";
import type { ExecOptions } from "../exec/exec-request.js";
import { createGuestClient, type GuestClient } from "../guest-client.js";
import { type ConnectionFlags, clientOptions } from "./connection-flags.js";
import { CliError, EXIT_UNREACHABLE, messageOf, printable } from "./exit-status.js";
import { OutputSink } from "./output-sink.js";

export interface DetachFlags extends ConnectionFlags {
  name?: string;
  interactive?: boolean;
}

async function withClient<T>(flags: ConnectionFlags, run: (client: GuestClient) => Promise<T>): Promise<T> {
  const client = createGuestClient(clientOptions(flags));
  try {
    return await run(client);
  } finally {
    await client.close();
  }
}

/** `exec -d`: prints the id; a command that could not start is its 126/127 with the reason. */
export function execDetached(argv: string[], options: ExecOptions, flags: DetachFlags): Promise<number> {
  return withClient(flags, async (client) => {
    const { stdin: _stdin, signal: _signal, unconsumedOutputLimit: _limit, ...rest } = options;
    const started = await client.startDetached(argv, {
      ...rest,
      ...(flags.name !== undefined ? { name: flags.name } : {}),
      stdin: flags.interactive === true,
    });
    if (started.exit) {
      process.stderr.write(`guestctl: ${printable(started.exit.startError ?? "could not start")}\n`);
      return started.exit.code;
    }
    process.stdout.write(`${started.id}\n`);
    return 0;
  });
}

export interface PsFlags extends ConnectionFlags {
  json?: boolean;
  all?: boolean;
}

/** `ps`: running detached commands (all of them with -a), as a table or JSON. */
export function psCommand(flags: PsFlags): Promise<number> {
  return withClient(flags, async (client) => {
    const listed = (await client.listDetached()).filter((command) => flags.all || command.running);
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(listed, null, 2)}\n`);
      return 0;
    }
    const rows = [["ID", "PID", "COMMAND", "STATUS", "STARTED"]];
    for (const command of listed) {
      rows.push([command.id, String(command.pid), command.command, statusOf(command), command.startedAt.toISOString()]);
    }
    const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? "").length))) ?? [];
    for (const row of rows) {
      process.stdout.write(
        `${printable(
          row
            .map((cell, i) => cell.padEnd(widths[i] ?? 0))
            .join("  ")
            .trimEnd(),
        )}\n`,
      );
    }
    return 0;
  });
}

function statusOf(command: DetachedInfo): string {
  if (command.running) return "running";
  const exit = command.exit;
  if (!exit) return "exited";
  if (exit.timedOut) return `timed out (${exit.code})`;
  if (exit.signal) return `killed by ${exit.signal} (${exit.code})`;
  return `exited ${exit.code}`;
}

export interface LogsFlags extends ConnectionFlags {
  follow?: boolean;
}

/** `logs [-f] ID` and `attach ID`: what is kept, then (following) live output; exits with the command's status. */
export function attachCommand(
  id: string,
  flags: LogsFlags & { interactive?: boolean },
  follow: boolean,
): Promise<number> {
  return withClient(flags, async (client) => {
    const handle = client.attach(id, { follow, stdin: flags.interactive === true });
    // Ctrl-C detaches and leaves the command running.
    const onInterrupt = () => handle.detach();
    process.once("SIGINT", onInterrupt);
    if (handle.stdin) process.stdin.pipe(handle.stdin);
    try {
      const stdout = new OutputSink(process.stdout, () => handle.detach());
      const stderr = new OutputSink(process.stderr, () => {});
      for await (const output of handle) await (output.stream === "stdout" ? stdout : stderr).write(output.data);
      await Promise.all([stdout.flush(), stderr.flush()]);
      const exit = await handle.exit;
      if (handle.outputDropped)
        process.stderr.write("guestctl: note: older output was dropped (the agent keeps the most recent 1 MiB)\n");
      if (exit === null) return 0;
      return exit.code;
    } catch (error) {
      throw new CliError(messageOf(error), EXIT_UNREACHABLE, { cause: error });
    } finally {
      process.off("SIGINT", onInterrupt);
      if (handle.stdin) process.stdin.unpipe(handle.stdin);
      process.stdin.pause();
    }
  });
}

export interface KillFlags extends ConnectionFlags {
  signal?: string;
}

/** `kill [-s SIGNAL] ID`: a signal, or (without -s) the end of it and everything it started. */
export function killCommand(id: string, flags: KillFlags): Promise<number> {
  return withClient(flags, async (client) => {
    await client.killDetached(id, flags.signal);
    return 0;
  });
}

/** `rm ID`: forgets an exited command. */
export function rmCommand(id: string, flags: ConnectionFlags): Promise<number> {
  return withClient(flags, async (client) => {
    await client.removeDetached(id);
    return 0;
  });
}

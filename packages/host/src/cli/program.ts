// guestctl's command line: the commands, their options and help, and how commander's
// own errors become guestctl's one-line errors and exit statuses.
import { readFileSync } from "node:fs";
import { Command, type CommanderError } from "commander";
import { TARGET_FORMS } from "../transport/target.js";
import { addConnectionOptions, type ConnectionFlags, TARGET_ENV, TOKEN_FILE_ENV } from "./connection-flags.js";
import { type CpFlags, cpCommand } from "./cp-command.js";
import {
  attachCommand,
  type KillFlags,
  killCommand,
  type LogsFlags,
  type PsFlags,
  psCommand,
  rmCommand,
} from "./detached-commands.js";
import { type ExecFlags, execCommand } from "./exec-command.js";
import { CliError, EXIT_STATUS_HELP, EXIT_USAGE, printable, usageError } from "./exit-status.js";
import { type PortForwardFlags, portForwardCommand } from "./port-forward-command.js";
import { type ProxyFlags, proxyCommand } from "./proxy-command.js";
import { PROXY_LISTEN_FORMS } from "./proxy-listen-address.js";
import { type StatFlags, statCommand } from "./stat-command.js";
import { DEFAULT_WAIT_SECONDS, type WaitFlags, waitCommand } from "./wait-command.js";

const MAIN_HELP = `
Targets: ${TARGET_FORMS}.
  hvsock:/run/vm.vsock     Cloud Hypervisor or Firecracker hybrid vsock socket, guest port 2222
  vsock:3                  kernel vsock (QEMU vhost-vsock), guest CID 3, port 2222
  unix:/tmp/agent.sock     an agent listening on a Unix socket
The target may also come from $${TARGET_ENV}, the token file from $${TOKEN_FILE_ENV}.

${EXIT_STATUS_HELP}
Examples:
  guestctl --target hvsock:/run/vm.vsock exec -- uname -a
  guestctl --target hvsock:/run/vm.vsock exec -it -- sh
  guestctl --target hvsock:/run/vm.vsock cp ./app guest:/opt/
  guestctl --target hvsock:/run/vm.vsock proxy --listen unix:/tmp/agent.sock
`;

const EXEC_HELP = `
Without -i the command sees end-of-file on stdin at once. Without -t, Ctrl-C, SIGTERM,
SIGHUP and SIGQUIT are sent to the command's process group; the third one makes
guestctl stop waiting (the agent then kills the command). With -t the local terminal is
in raw mode (every key goes to the command) and its size follows the local window.
`;

const CP_HELP = `
Exactly one of SRC and DST is written guest:PATH (an absolute path in the guest).
As docker cp: a directory is copied as a whole; SRC/. copies its contents; a DST that
is an existing directory receives SRC inside it. Regular files, directories and
symlinks are copied with their modes and modification times; FIFOs, sockets and
devices are skipped and listed. Without -a, the copy belongs to the receiving user and
setuid/setgid bits are dropped. A file that changes while it is read fails the copy
(exit 1) and is not written, unless --accept-changing-files; one that shrinks always
does. Files of /proc, /sys and the like are read whole and copied with what they hold.
`;

/** guestctl's version (the host package's). */
export function version(): string {
  const text = readFileSync(new URL("../../package.json", import.meta.url), "utf8");
  return (JSON.parse(text) as { version: string }).version;
}

/**
 * Builds the program. Running it sets the status through `done`; commander's errors are
 * thrown as CliErrors (and its help and version as CommanderErrors with status 0).
 */
export function createProgram(done: (status: number) => void): Command {
  const program = new Command("guestctl")
    .description("Drive a guestkit (or compatible) guest agent: run commands and move files in and out of a microVM.")
    .version(version(), "-V, --version", "print guestctl's version")
    .helpOption("-h, --help", "show help")
    .helpCommand(false)
    .enablePositionalOptions()
    .configureOutput({ outputError: () => {} })
    .exitOverride(commanderExit("guestctl"))
    .addHelpText("after", MAIN_HELP);
  addConnectionOptions(program);

  const exec = program
    .command("exec")
    .description("run a command in the guest")
    .usage("[options] [--] COMMAND [ARG...]")
    .option("-i, --interactive", "send stdin to the command (its EOF too)")
    .option("-d, --detach", "start the command detached: print its id and leave it running (see ps, logs, attach)")
    .option("--name <name>", "with -d: the id to give it (letters, digits, . _ -)")
    .option("-t, --tty", "run the command on a terminal; the local terminal goes raw and its size is followed")
    .option(
      "-e, --env <NAME=VALUE>",
      "set an environment variable (repeatable; NAME alone passes the local value)",
      collect,
      [],
    )
    .option("-w, --workdir <dir>", "working directory in the guest")
    .option("-u, --user <user>", "run as this user: a name, a uid or uid:gid")
    .option("--timeout <seconds>", "kill the command after this many whole seconds (exit status 124)")
    .argument("<command...>", "the command and its arguments")
    .passThroughOptions()
    .addHelpText("after", EXEC_HELP)
    .action(async (command: string[], _options: unknown, self: Command) => {
      done(await execCommand(command, self.optsWithGlobals<ExecFlags>()));
    });
  addConnectionOptions(exec);

  const cp = program
    .command("cp")
    .description("copy files or trees between the host and the guest")
    .usage("[options] SRC DST")
    .option("-a, --archive", "keep ownership (uid and gid) exactly, and with it setuid/setgid bits")
    .option("-L, --follow-link", "follow symlinks in SRC (copy what they point to)")
    .option(
      "--accept-changing-files",
      "copy a file that changes while it is read as it was read, with a warning (default: the copy fails)",
    )
    .option("--json", "print what was copied as JSON")
    .argument("<src>", "a local path or guest:PATH")
    .argument("<dst>", "a local path or guest:PATH")
    .addHelpText("after", CP_HELP)
    .action(async (source: string, destination: string, _options: unknown, self: Command) => {
      done(await cpCommand(source, destination, self.optsWithGlobals<CpFlags>()));
    });
  addConnectionOptions(cp);

  const stat = program
    .command("stat")
    .description("describe a path in the guest (exit status 1 if it does not exist)")
    .usage("[options] PATH")
    .option("-L, --dereference", "describe what a symlink points to")
    .option("--json", "print as JSON")
    .argument("<path>", "an absolute guest path (guest: in front is allowed)")
    .action(async (path: string, _options: unknown, self: Command) => {
      done(await statCommand(path, self.optsWithGlobals<StatFlags>()));
    });
  addConnectionOptions(stat);

  const wait = program
    .command("wait")
    .description("wait until the agent answers its health check (exit status 1 if it does not in time)")
    .option("--timeout <seconds>", `give up after this long (default ${DEFAULT_WAIT_SECONDS})`)
    .action(async (_options: unknown, self: Command) => {
      done(await waitCommand(self.optsWithGlobals<WaitFlags>()));
    });
  addConnectionOptions(wait);

  const proxy = program
    .command("proxy")
    .description("serve the agent on a local socket for plain gRPC tools (grpcurl, buf curl)")
    .requiredOption("--listen <address>", PROXY_LISTEN_FORMS)
    .action(async (_options: unknown, self: Command) => {
      done(await proxyCommand(self.optsWithGlobals<ProxyFlags>()));
    });
  addConnectionOptions(proxy);

  const ps = program
    .command("ps")
    .description("list detached commands (running ones; -a for all)")
    .option("--json", "print JSON")
    .option("-a, --all", "also those that exited")
    .action(async (_options: unknown, self: Command) => {
      done(await psCommand(self.optsWithGlobals<PsFlags>()));
    });
  addConnectionOptions(ps);

  const logs = program
    .command("logs")
    .description("print what a detached command wrote (the most recent 1 MiB); -f follows until it ends")
    .argument("<id>", "the command's id")
    .option("-f, --follow", "keep printing live output until the command ends (its exit status is ours)")
    .action(async (id: string, _options: unknown, self: Command) => {
      const flags = self.optsWithGlobals<LogsFlags>();
      done(await attachCommand(id, flags, flags.follow === true));
    });
  addConnectionOptions(logs);

  const attach = program
    .command("attach")
    .description("show a detached command's output, then follow it; Ctrl-C detaches and leaves it running")
    .argument("<id>", "the command's id")
    .option("-i, --interactive", "send stdin to the command")
    .action(async (id: string, _options: unknown, self: Command) => {
      done(await attachCommand(id, self.optsWithGlobals<LogsFlags & { interactive?: boolean }>(), true));
    });
  addConnectionOptions(attach);

  const kill = program
    .command("kill")
    .description("end a detached command and everything it started (TERM, then KILL), or send it -s SIGNAL")
    .argument("<id>", "the command's id")
    .option("-s, --signal <signal>", "send this signal only")
    .action(async (id: string, _options: unknown, self: Command) => {
      done(await killCommand(id, self.optsWithGlobals<KillFlags>()));
    });
  addConnectionOptions(kill);

  const rm = program
    .command("rm")
    .description("forget a detached command that exited")
    .argument("<id>", "the command's id")
    .action(async (id: string, _options: unknown, self: Command) => {
      done(await rmCommand(id, self.optsWithGlobals<ConnectionFlags>()));
    });
  addConnectionOptions(rm);

  const portForward = program
    .command("port-forward")
    .description("forward local TCP ports to ports inside the guest (LOCAL:GUEST; LOCAL 0 picks one)")
    .argument("<pairs...>", "LOCAL:GUEST port pairs")
    .option("--address <address>", "local address to listen on (default 127.0.0.1)")
    .action(async (pairs: string[], _options: unknown, self: Command) => {
      done(await portForwardCommand(pairs, self.optsWithGlobals<PortForwardFlags>()));
    });
  addConnectionOptions(portForward);

  for (const command of program.commands) command.exitOverride(commanderExit(`guestctl ${command.name()}`));

  // Our own rather than commander's, which answers an unknown name with the whole help.
  program
    .command("help")
    .description("show the help of a command, or this help")
    .usage("[COMMAND]")
    .argument("[command]", "a command name")
    .action((name: string | undefined) => {
      const command = name === undefined ? program : program.commands.find((each) => each.name() === name);
      if (!command || command.name() === "help") {
        throw usageError(`unknown command '${printable(name ?? "")}' (see guestctl --help)`);
      }
      command.outputHelp();
      done(0);
    });
  return program;
}

// No default value: commander would print "(default: [])" in the help.
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

// Help and --version end with status 0; every other commander error becomes a one-line
// usage error that points at the help of the command it is about.
function commanderExit(name: string): (error: CommanderError) => never {
  return (error) => {
    if (error.code === "commander.helpDisplayed" || error.code === "commander.version") throw error;
    if (error.code === "commander.help") throw new CliError(`a command is needed (see ${name} --help)`, EXIT_USAGE);
    const text = error.message.replace(/^error: /, "").trim();
    throw new CliError(`${text} (see ${name} --help)`, EXIT_USAGE, { cause: error });
  };
}

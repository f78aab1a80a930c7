// Test support for commands whose processes leave their session: a script that starts
// them, and /proc and cgroup v2 lookups to tell whether they still run.
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { procStat } from "../dist/exec/process-group.js";
import { waitFor } from "./exec-client.js";

// Starts a setsid child and a double-forked daemon (its parent exits, so init adopts
// it), each in a session of its own; waits until both have written their pid, says
// "ready", then sleeps, or exits 0 when $2 is "exit".
const ESCAPE_SCRIPT = `#!/bin/sh
dir=$1
setsid sh -c 'echo $$ >"$1/setsid.tmp" && mv "$1/setsid.tmp" "$1/setsid.pid" && exec sleep 600' sh "$dir" &
setsid sh -c 'sh -c "echo \\$\\$ >\\"\\$1/daemon.tmp\\" && mv \\"\\$1/daemon.tmp\\" \\"\\$1/daemon.pid\\" && exec sleep 600" sh "$1" & exit 0' sh "$dir" &
while [ ! -e "$dir/setsid.pid" ] || [ ! -e "$dir/daemon.pid" ]; do sleep 0.02; done
echo ready
[ "$2" = exit ] && exit 0
exec sleep 600
`;

/** Writes the script as DIR/escape.sh (run it as `escape.sh PIDDIR [exit]`); returns its path. */
export function writeEscapeScript(dir: string): string {
  const path = join(dir, "escape.sh");
  writeFileSync(path, ESCAPE_SCRIPT);
  chmodSync(path, 0o755);
  return path;
}

/** A process that left the command's session. */
export interface Escapee {
  readonly pid: number;
  readonly session: number;
  /** /proc/PID/stat's starttime: tells the process from a later one that reused its pid. */
  readonly startTime: string;
}

/** Waits for the script's two pid files in `dir` and returns both processes. */
export async function readEscapees(dir: string): Promise<Escapee[]> {
  await waitFor(() => existsSync(join(dir, "setsid.pid")) && existsSync(join(dir, "daemon.pid")), 10_000, "pid files");
  return ["setsid.pid", "daemon.pid"].map((name) => {
    const pid = Number(readFileSync(join(dir, name), "utf8").trim());
    const stat = procStat(pid);
    if (!stat) throw new Error(`${name}: process ${pid} is already gone`);
    return { pid, session: stat.session, startTime: stat.startTime };
  });
}

/** Running, and the same process as recorded (a zombie counts as dead). */
export function alive(escapee: Escapee): boolean {
  const stat = procStat(escapee.pid);
  return stat !== undefined && stat.startTime === escapee.startTime && stat.state !== "Z";
}

/** SIGKILLs whichever of them still runs (test cleanup). */
export function killEscapees(escapees: readonly Escapee[]): void {
  for (const escapee of escapees) {
    if (alive(escapee)) process.kill(escapee.pid, "SIGKILL");
  }
}

/** Waits (bounded) until none of them runs. */
export async function expectAllGone(escapees: readonly Escapee[], within = 5000): Promise<void> {
  await waitFor(() => escapees.every((escapee) => !alive(escapee)), within, "the escaped processes to be gone");
}

/** The cgroup v2 directory a /proc/PID/cgroup text names, on this machine's cgroup2 mount. */
export function cgroupDir(procCgroup: string): string {
  const line = procCgroup.split("\n").find((entry) => entry.startsWith("0::"));
  const mount = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((entry) => entry.split(" "))
    .find((fields) => fields[fields.indexOf("-") + 1] === "cgroup2");
  if (!line || !mount) throw new Error("no cgroup v2 here");
  return join(mount[4] ?? "", line.slice(3)).replace(/(.)\/$/, "$1");
}

/** The cgroup v2 directory of process `pid`. */
export function cgroupDirOf(pid: number): string {
  return cgroupDir(readFileSync(`/proc/${pid}/cgroup`, "utf8"));
}

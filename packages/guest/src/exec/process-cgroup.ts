// A cgroup (v2) for every command, so that ending a command ends everything it started.
//
// A command's session and process group do not hold its whole tree: `setsid cmd &`, or
// a daemon that double-forks, leaves both, and a timeout or a cancel that signals the
// session misses it. A cgroup is not left by accident: a process is in its parent's
// cgroup from the fork on, and only a write to some cgroup.procs moves it (a command
// running as root can do that, but then it leaves on purpose). So each command joins
// a fresh cgroup before it runs (the spawn modules see to that: a write from the agent
// after the spawn would leave a window in which `setsid cmd &` escapes), and a timeout,
// cancel, lost client or the agent's stop kills the cgroup: cgroup.kill (Linux 5.14)
// where the kernel has it, else the cgroup is frozen (cgroup.freeze, 5.2: nothing in it
// can fork any more) and each member SIGKILLed until none is left.
//
// The agent's subtree is guest-agent-PID under its own cgroup (found from the "0::"
// line of /proc/self/cgroup and the cgroup2 mount in /proc/self/mountinfo); commands
// are exec-N under it. No controller is enabled: the agent stays in its own cgroup and
// only leaves hold processes, which cgroup v2's no-internal-processes rule allows.
//
// A command that exits by itself may leave daemons behind on purpose (as under ssh):
// its cgroup is then kept until they are gone, looked at every LINGER_SWEEP_MS, and
// removed; an empty one is removed at once, so none pile up. The subtrees of agents that
// died without removing theirs (SIGKILL) are taken over the same way at start-up.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeError, errnoOf } from "@guestkit/protocol";

/** How the kernel lets the agent kill a whole cgroup. */
export type CgroupKillMethod = "cgroup.kill" | "cgroup.freeze";

/** How often the cgroups of finished commands whose daemons still run are looked at. */
export const LINGER_SWEEP_MS = 2000;

// How long a kill waits for the cgroup to empty, and for a freeze to take hold.
const KILL_WAIT_MS = 2000;
const FREEZE_WAIT_MS = 500;
const POLL_MS = 10;

/** Options of setUpCommandCgroups. */
export interface CommandCgroupsOptions {
  /** The kill method to use even where the kernel has a better one (tests). */
  readonly killMethod?: CgroupKillMethod;
  /** The directory to make the subtree in, instead of the process's own cgroup (tests). */
  readonly parent?: string;
}

/**
 * Makes the agent's subtree. Returns the reason when commands cannot have cgroups here
 * (no cgroup v2, no permission, a kernel without cgroup.freeze): the agent then ends
 * commands by their session and process group, as before.
 */
export function setUpCommandCgroups(options: CommandCgroupsOptions = {}): CommandCgroups | string {
  const own = options.parent !== undefined ? { dir: options.parent } : ownCgroupDirectory();
  if ("reason" in own) return own.reason;
  const root = join(own.dir, `guest-agent-${process.pid}`);
  try {
    mkdirSync(root);
  } catch (error) {
    if (errnoOf(error) !== "EEXIST") return `cannot make ${root}: ${describeError(error)}`;
  }
  const best: CgroupKillMethod | undefined = existsSync(join(root, "cgroup.kill"))
    ? "cgroup.kill"
    : existsSync(join(root, "cgroup.freeze"))
      ? "cgroup.freeze"
      : undefined;
  if (!best) {
    removeDirectory(root);
    return "this kernel has neither cgroup.kill (Linux 5.14) nor cgroup.freeze (5.2)";
  }
  const cgroups = new CommandCgroups(root, options.killMethod ?? best);
  cgroups.adoptLeftovers(own.dir);
  return cgroups;
}

// The agent's own cgroup directory, or why there is none.
function ownCgroupDirectory(): { dir: string } | { reason: string } {
  let own: string | undefined;
  let mounts: string;
  try {
    own = readFileSync("/proc/self/cgroup", "utf8")
      .split("\n")
      .find((line) => line.startsWith("0::"))
      ?.slice(3);
    mounts = readFileSync("/proc/self/mountinfo", "utf8");
  } catch (error) {
    return { reason: `cannot read /proc: ${describeError(error)}` };
  }
  if (own === undefined) return { reason: "no cgroup v2 hierarchy (no 0:: line in /proc/self/cgroup)" };
  for (const line of mounts.split("\n")) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
    const fields = line.split(" ");
    if (fields[fields.indexOf("-") + 1] !== "cgroup2") continue;
    const mountRoot = unescapeMountField(fields[3] ?? "");
    const mountPoint = unescapeMountField(fields[4] ?? "");
    // The mount shows the hierarchy from mountRoot down; the agent's cgroup must be in it.
    if (mountRoot === "/") return { dir: join(mountPoint, own) };
    if (own === mountRoot || own.startsWith(`${mountRoot}/`)) {
      return { dir: join(mountPoint, own.slice(mountRoot.length)) };
    }
  }
  return { reason: "cgroup2 is not mounted (mount -t cgroup2 none /sys/fs/cgroup)" };
}

// mountinfo writes space, tab, newline and backslash in paths as octal escapes.
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** The agent's subtree: one cgroup per command. */
export class CommandCgroups {
  /** The subtree's directory. */
  readonly root: string;
  readonly killMethod: CgroupKillMethod;
  #next = 1;
  // Cgroups of finished commands whose daemons still ran when the command was reaped.
  readonly #lingering = new Set<string>();
  #sweep: NodeJS.Timeout | undefined;

  constructor(root: string, killMethod: CgroupKillMethod) {
    this.root = root;
    this.killMethod = killMethod;
  }

  /** One line for the start-up log. */
  describe(): string {
    const how = this.killMethod === "cgroup.kill" ? "killed with cgroup.kill" : "frozen, then each process SIGKILLed";
    return `commands run in cgroups under ${this.root} (${how})`;
  }

  /** Makes a new, empty cgroup for one command. Throws when the directory cannot be made. */
  create(): CommandCgroup {
    for (;;) {
      const path = join(this.root, `exec-${this.#next++}`);
      try {
        mkdirSync(path);
        return new CommandCgroup(path, this.killMethod, (cgroup) => this.#release(cgroup));
      } catch (error) {
        // Left by an earlier agent of the same pid: take the next number.
        if (errnoOf(error) !== "EEXIST") throw error;
      }
    }
  }

  #release(cgroup: CommandCgroup): void {
    if (removeDirectory(cgroup.path)) return;
    this.#lingering.add(cgroup.path);
    this.#sweepFromTimeToTime();
  }

  /**
   * Takes over the subtrees that agents no longer running left in `parent` (one that was
   * SIGKILLed could not remove its own): each cgroup in them goes once it is empty,
   * as this agent's own do. A subtree whose agent's pid is in use is left alone (the
   * pid is read in this agent's pid namespace: an agent in another one, in the same
   * cgroup, would look gone).
   */
  adoptLeftovers(parent: string): void {
    for (const name of subdirectories(parent)) {
      const pid = /^guest-agent-(\d+)$/.exec(name)?.[1];
      if (!pid || Number(pid) === process.pid || existsSync(`/proc/${pid}`)) continue;
      const dir = join(parent, name);
      // Children first: a cgroup with children cannot be removed.
      for (const child of subdirectories(dir)) this.#lingering.add(join(dir, child));
      this.#lingering.add(dir);
    }
    this.#sweepLingering();
    if (this.#lingering.size > 0) this.#sweepFromTimeToTime();
  }

  /** How many cgroups of finished commands still hold processes. */
  get lingering(): number {
    return this.#lingering.size;
  }

  /** At the agent's stop: removes every empty cgroup and the subtree, if nothing is left in it. */
  close(): void {
    this.#sweepLingering();
    clearInterval(this.#sweep);
    this.#sweep = undefined;
    for (const name of subdirectories(this.root)) removeDirectory(join(this.root, name));
    removeDirectory(this.root);
  }

  #sweepFromTimeToTime(): void {
    this.#sweep ??= setInterval(() => this.#sweepLingering(), LINGER_SWEEP_MS).unref();
  }

  #sweepLingering(): void {
    for (const path of this.#lingering) {
      if (removeDirectory(path)) this.#lingering.delete(path);
    }
    if (this.#lingering.size === 0) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }
}

/** One command's cgroup. */
export class CommandCgroup {
  readonly path: string;
  readonly #killMethod: CgroupKillMethod;
  readonly #onRelease: (cgroup: CommandCgroup) => void;

  constructor(path: string, killMethod: CgroupKillMethod, onRelease: (cgroup: CommandCgroup) => void) {
    this.path = path;
    this.#killMethod = killMethod;
    this.#onRelease = onRelease;
  }

  /**
   * Removes the cgroup once nothing is left in it: at once when it is empty, else when
   * the daemons the command left behind are gone. Call once the command was reaped.
   */
  release(): void {
    this.#onRelease(this);
  }

  /** Pids of the processes in it (zombies are not: they left at exit). */
  members(): number[] {
    let text: string;
    try {
      text = readFileSync(join(this.path, "cgroup.procs"), "utf8");
    } catch {
      return [];
    }
    return text.split("\n").filter(Boolean).map(Number);
  }

  /** Whether any live process is in it. */
  populated(): boolean {
    return this.#events().populated === "1";
  }

  /** Sends `signal` to every process in it. */
  signal(signal: NodeJS.Signals): void {
    for (const pid of this.members()) {
      try {
        process.kill(pid, signal);
      } catch {
        // Gone between the read and the kill.
      }
    }
  }

  /** SIGKILLs everything in it, forks in flight included; resolves once it is empty (at most KILL_WAIT_MS). */
  async kill(): Promise<void> {
    const deadline = Date.now() + KILL_WAIT_MS;
    if (this.#killMethod === "cgroup.kill") {
      this.#write("cgroup.kill", "1");
    } else {
      // Frozen, nothing in it can fork, so one pass of SIGKILL reaches all; a task that
      // has not frozen yet (in the middle of a system call) is killed by the next pass.
      this.#write("cgroup.freeze", "1");
      const frozenBy = Date.now() + FREEZE_WAIT_MS;
      while (Date.now() < frozenBy && this.#events().frozen !== "1" && this.populated()) await delay(POLL_MS);
      while (Date.now() < deadline) {
        const members = this.members();
        if (members.length === 0) break;
        for (const pid of members) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // Gone already.
          }
        }
        await delay(POLL_MS);
      }
      this.#write("cgroup.freeze", "0");
    }
    while (Date.now() < deadline && this.populated()) await delay(POLL_MS);
  }

  #events(): Record<string, string> {
    let text = "";
    try {
      text = readFileSync(join(this.path, "cgroup.events"), "utf8");
    } catch {
      // Removed: nothing in it.
    }
    return Object.fromEntries(text.split("\n").map((line) => line.split(" ") as [string, string]));
  }

  #write(file: string, value: string): void {
    try {
      writeFileSync(join(this.path, file), value);
    } catch {
      // Removed already, so empty.
    }
  }
}

function subdirectories(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
  } catch {
    return [];
  }
}

// rmdir: true once it is gone. A cgroup with processes or children is EBUSY.
function removeDirectory(path: string): boolean {
  try {
    rmdirSync(path);
    return true;
  } catch (error) {
    return errnoOf(error) === "ENOENT";
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

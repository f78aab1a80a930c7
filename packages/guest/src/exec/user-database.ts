// Who a command runs as: `user` in ExecStart is a name, a uid, or user:group (each part a
// name or a number), looked up in /etc/passwd and /etc/group. Parsed here rather than
// through getpwnam so the agent needs no native code and reads the guest's files as they
// are now (a user added after the agent started is found).
import { readFile } from "node:fs/promises";

/** The identity a command runs as, with the environment a login would give it. */
export interface RunAs {
  readonly uid: number;
  readonly gid: number;
  /** HOME, USER and LOGNAME from the passwd entry; absent when the uid has none. */
  readonly env: Readonly<Record<string, string>>;
}

/** A `user` that cannot be resolved; the message is the one-line reason for the client. */
export class UnknownUserError extends Error {
  override readonly name = "UnknownUserError";
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
}

/** Files to read; tests and images with another layout can point elsewhere. */
export interface UserDatabaseOptions {
  passwdPath?: string;
  groupPath?: string;
}

const ID_PATTERN = /^\d{1,10}$/;
// uid_t is 32 bits and (uid_t)-1 means "unchanged" to setuid, so it is never a real id.
const MAX_ID = 0xfffffffe;

/**
 * Resolves `user` ("nobody", "1000", "1000:1000", "www-data:adm") to ids and login
 * environment. Throws UnknownUserError with a one-line reason when a name is unknown,
 * or when a bare uid has no passwd entry (there would be no primary group to use:
 * silently running with group 0 would hand out root's group).
 */
export async function resolveUser(spec: string, options: UserDatabaseOptions = {}): Promise<RunAs> {
  const colon = spec.indexOf(":");
  const userPart = colon < 0 ? spec : spec.slice(0, colon);
  const groupPart = colon < 0 ? undefined : spec.slice(colon + 1);
  if (userPart === "" || groupPart === "")
    throw new UnknownUserError(`bad user "${spec}": expected NAME, UID or USER:GROUP`);
  const passwd = parsePasswd(await readOptional(options.passwdPath ?? "/etc/passwd"));
  const entry = ID_PATTERN.test(userPart)
    ? passwd.find((e) => e.uid === Number(userPart))
    : passwd.find((e) => e.name === userPart);
  const uid = ID_PATTERN.test(userPart) ? parseId(userPart, spec) : entry?.uid;
  if (uid === undefined) throw new UnknownUserError(`unknown user "${userPart}": not in /etc/passwd`);

  let gid: number | undefined = entry?.gid;
  if (groupPart !== undefined) {
    if (ID_PATTERN.test(groupPart)) {
      gid = parseId(groupPart, spec);
    } else {
      const groups = parseGroup(await readOptional(options.groupPath ?? "/etc/group"));
      gid = groups.find((g) => g.name === groupPart)?.gid;
      if (gid === undefined) throw new UnknownUserError(`unknown group "${groupPart}": not in /etc/group`);
    }
  }
  if (gid === undefined) {
    throw new UnknownUserError(`uid ${uid} has no /etc/passwd entry, so no primary group: give it as UID:GID`);
  }
  const env: Record<string, string> = entry
    ? { HOME: entry.home || "/", USER: entry.name, LOGNAME: entry.name }
    : { HOME: "/" };
  return { uid, gid, env };
}

function parseId(text: string, spec: string): number {
  const id = Number(text);
  if (id > MAX_ID) throw new UnknownUserError(`bad user "${spec}": id ${text} is out of range`);
  return id;
}

async function readOptional(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return "";
    throw error;
  }
}

// name:password:uid:gid:gecos:home:shell; malformed lines are skipped, as libc does.
function parsePasswd(text: string): PasswdEntry[] {
  const entries: PasswdEntry[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(":");
    if (fields.length < 7 || line.startsWith("#")) continue;
    const [name = "", , uid = "", gid = "", , home = ""] = fields;
    if (!name || !ID_PATTERN.test(uid) || !ID_PATTERN.test(gid)) continue;
    entries.push({ name, uid: Number(uid), gid: Number(gid), home });
  }
  return entries;
}

// name:password:gid:members
function parseGroup(text: string): GroupEntry[] {
  const entries: GroupEntry[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(":");
    if (fields.length < 3 || line.startsWith("#")) continue;
    const [name = "", , gid = ""] = fields;
    if (!name || !ID_PATTERN.test(gid)) continue;
    entries.push({ name, gid: Number(gid) });
  }
  return entries;
}

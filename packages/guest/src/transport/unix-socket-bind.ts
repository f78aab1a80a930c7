// Whoever can connect to the agent's Unix socket can run commands as the agent's user
// (root in a guest), so the socket must never be reachable by anyone else, not even for
// a moment. bind(2) creates the socket file with mode 0777 & ~umask, and some init
// systems start services with umask 000: binding at the path and then chmod-ing would
// leave a window in which any local user can connect, and a connection made then stays.
// Instead the socket is bound inside a fresh directory beside the target, which mkdtemp
// creates 0700 whatever the umask (nobody else can reach into it), made 0600 there, and
// only then renamed into place: at its path it is 0600 from its first instant. A socket
// stays bound to its inode, so the listener keeps accepting under the new name.
//
// The umask is not changed around the bind instead: it is process-wide, the bind is
// asynchronous, and the agent writes files for hosts at the same time (uploads), which
// would get the wrong modes.
import { chmod, lstat, mkdtemp, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** The longest socket path Linux takes (sockaddr_un.sun_path, no NUL needed). */
const SUN_PATH_BYTES = 108;

/** Identifies the socket file the agent created, so it removes only its own. */
export interface BoundSocket {
  readonly path: string;
  readonly dev: number;
  readonly ino: number;
}

/**
 * Creates a Unix socket at `path` with mode 0600 from the moment it exists there.
 * `bind(staged)` binds the listener at a temporary path; if anything after it fails,
 * `unbind(staged)` is called. Replaces whatever file is at `path` (a socket left by a
 * previous run would make a plain bind fail with EADDRINUSE).
 */
export async function bindUnixSocketPrivately(
  path: string,
  bind: (staged: string) => Promise<void>,
  unbind: (staged: string) => void,
): Promise<BoundSocket> {
  let staging: string;
  try {
    staging = await mkdtemp(join(dirname(path), `.${basename(path).slice(0, 16)}-`));
  } catch (error) {
    throw new Error(`unix:${path}: cannot create the socket there: ${(error as Error).message}`);
  }
  const staged = join(staging, "s");
  try {
    if (Buffer.byteLength(staged) > SUN_PATH_BYTES) {
      throw new Error(
        `unix:${path}: the path is too long: the agent binds the socket as ${staged} (${Buffer.byteLength(staged)} bytes, at most ${SUN_PATH_BYTES}) and then moves it into place; use a shorter path`,
      );
    }
    await bind(staged);
    try {
      await chmod(staged, 0o600);
      await rename(staged, path);
      const info = await lstat(path);
      return { path, dev: info.dev, ino: info.ino };
    } catch (error) {
      unbind(staged);
      throw error;
    }
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** Removes the socket at `socket.path` if it is still the one bindUnixSocketPrivately created. */
export async function removeBoundSocket(socket: BoundSocket): Promise<void> {
  const now = await lstat(socket.path).catch(() => undefined);
  // An agent started since (an init respawning it) may own the path now.
  if (now?.ino === socket.ino && now.dev === socket.dev) await rm(socket.path, { force: true });
}

// mkdir -p for the parents of an uploaded entry, with a mode that does not depend on the
// agent's umask: a restrictive umask (077) must not leave /opt/app unreadable to the
// users the files are meant for.
import { chmod, mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { errnoOf } from "@guestkit/protocol";

/** Mode of directories the agent creates on its own, because an entry needed a parent. */
export const IMPLICIT_DIRECTORY_MODE = 0o755;

/**
 * Makes sure `directory` exists and is a directory (following symlinks, as `mkdir -p`
 * does), creating what is missing with mode 0755 exactly. Rejects with ENOTDIR when
 * something on the way is not a directory. `known` remembers directories found or made,
 * so a tree of thousands of files in a few directories does not stat them every time.
 */
export async function makeParents(directory: string, known?: Set<string>): Promise<void> {
  if (known?.has(directory)) return;
  await makeDirectories(directory);
  known?.add(directory);
}

async function makeDirectories(directory: string): Promise<void> {
  try {
    if ((await stat(directory)).isDirectory()) return;
    throw notADirectory(directory);
  } catch (error) {
    if (errnoOf(error) !== "ENOENT") throw error;
  }
  const parent = dirname(directory);
  if (parent !== directory) await makeDirectories(parent);
  try {
    await mkdir(directory, { mode: IMPLICIT_DIRECTORY_MODE });
  } catch (error) {
    // Another upload may have created it in the meantime; that is fine if it is a directory.
    if (errnoOf(error) === "EEXIST" && (await stat(directory)).isDirectory()) return;
    throw error;
  }
  await chmod(directory, IMPLICIT_DIRECTORY_MODE);
}

function notADirectory(path: string): Error {
  return Object.assign(new Error(`ENOTDIR: not a directory, ${path}`), { code: "ENOTDIR" });
}

// A directory entry of an upload: created if missing, updated if present. Its time is
// not set here: writing entries into a directory changes its mtime, so the caller sets
// directory times once nothing more will be written into them.
import { chmod, chown, mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import type { EntryAttributes } from "./atomic-file.js";
import { errnoCode } from "./grpc-errors.js";
import { makeParents } from "./make-parents.js";

/**
 * Makes `path` a directory with `attributes` (except mtime). A new directory is created
 * with mode 0700 and opened up only after chown, so no other user can get in between.
 * An existing directory (or symlink to one, as with `mkdir -p`) keeps its mode when
 * `modeGiven` is false, so an upload with mode 0 cannot turn /tmp's 01777 into 0755.
 */
export async function applyDirectoryEntry(
  path: string,
  attributes: EntryAttributes,
  modeGiven: boolean,
): Promise<void> {
  await makeParents(dirname(path));
  let created = true;
  try {
    await mkdir(path, { mode: 0o700 });
  } catch (error) {
    if (errnoCode(error) !== "EEXIST") throw error;
    if (!(await stat(path)).isDirectory()) {
      throw Object.assign(new Error(`EEXIST: exists and is not a directory, ${path}`), { code: "EEXIST" });
    }
    created = false;
  }
  if (attributes.owner) await chown(path, attributes.owner.uid, attributes.owner.gid);
  if (created || modeGiven) await chmod(path, attributes.mode);
}

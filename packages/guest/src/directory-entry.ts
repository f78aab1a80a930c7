// A directory entry of an upload: created if missing, updated if present. Its time is
// not set here: writing entries into a directory changes its mtime, so the caller sets
// directory times once nothing more will be written into them.
import { chmodSync, chownSync, mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { errnoOf } from "@guestkit/protocol";
import type { EntryAttributes } from "./atomic-file.js";
import { makeParents } from "./make-parents.js";

/**
 * Makes `path` a directory with `attributes` (except mtime). A new directory is created
 * with mode 0700 and opened up only after chown, so no other user can get in between.
 * An existing directory (or symlink to one, as with `mkdir -p`) keeps its mode when
 * `modeGiven` is false, so an upload with mode 0 cannot turn /tmp's 01777 into 0755.
 * `known` (see makeParents) spares a stat of parents already found or made.
 *
 * The calls on the directory itself are synchronous: each is one quick system call, and
 * a thread-pool round trip for each of them cost a tree of many small directories more
 * than the calls themselves (bench/, node --cpu-prof).
 */
export async function applyDirectoryEntry(
  path: string,
  attributes: EntryAttributes,
  modeGiven: boolean,
  known?: Set<string>,
): Promise<void> {
  await makeParents(dirname(path), known);
  let created = true;
  try {
    mkdirSync(path, { mode: 0o700 });
  } catch (error) {
    if (errnoOf(error) !== "EEXIST") throw error;
    if (!statSync(path).isDirectory()) {
      throw Object.assign(new Error(`EEXIST: exists and is not a directory, ${path}`), { code: "EEXIST" });
    }
    created = false;
  }
  if (attributes.owner) chownSync(path, attributes.owner.uid, attributes.owner.gid);
  if (created || modeGiven) chmodSync(path, attributes.mode);
}

// Checks on names and link targets that come from the guest. The host never trusts the
// guest: every entry path and symlink target it sends passes through here before
// anything touches the local disk.
import { MAX_NAME_BYTES, MAX_PATH_BYTES } from "@guestkit/protocol";

/**
 * Splits a guest entry path ("root/dir/file") into its names, or returns why it is
 * refused. Only plain relative paths pass: no leading `/`, no `.` or `..`, no empty
 * names (`a//b`, a trailing `/`), no NUL, nothing longer than PATH_MAX / NAME_MAX.
 */
export function splitEntryPath(path: string): { names: string[] } | { problem: string } {
  if (path === "") return { problem: "empty path" };
  if (path.includes("\0")) return { problem: "path contains a NUL byte" };
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return { problem: `path longer than ${MAX_PATH_BYTES} bytes` };
  if (path.startsWith("/")) return { problem: "absolute path" };
  const names = path.split("/");
  for (const name of names) {
    if (name === "") return { problem: "empty name in path" };
    if (name === "..") return { problem: "`..` in path" };
    if (name === ".") return { problem: "`.` in path" };
    if (Buffer.byteLength(name) > MAX_NAME_BYTES) return { problem: `name longer than ${MAX_NAME_BYTES} bytes` };
  }
  return { names };
}

/**
 * Why a symlink target is refused, or undefined when it is safe. `depth` is how many
 * directories lie between the containment root and the directory holding the link
 * (0 = the link sits in the root itself).
 *
 * A safe target is relative and has its `..` names only at the start, at most `depth`
 * of them. Checking `..` lexically is not enough on its own: in `up/../..`, where `up`
 * is itself a link to `..`, the kernel resolves `up` first, so the second `..` climbs
 * one level above where a lexical reading says. With every `..` up front, each link
 * climbs from its own real directory and then only descends, so by induction no chain
 * of links made this way can leave the root.
 */
export function linkTargetProblem(target: string, depth: number): string | undefined {
  if (target === "") return "empty symlink target";
  if (target.includes("\0")) return "symlink target contains a NUL byte";
  if (Buffer.byteLength(target) > MAX_PATH_BYTES) return `symlink target longer than ${MAX_PATH_BYTES} bytes`;
  if (target.startsWith("/")) return "absolute symlink target";
  let ups = 0;
  let descended = false;
  for (const name of target.split("/")) {
    if (name === "" || name === ".") continue;
    if (name === "..") {
      if (descended) return "symlink target has `..` after a name";
      ups += 1;
      if (ups > depth) return "symlink target points outside the destination";
    } else {
      descended = true;
    }
  }
  return undefined;
}

/**
 * Drops the setuid and setgid bits unless asked to keep them, and anything above the
 * permission bits (some agents send the whole st_mode, file type included).
 */
export function sanitizeMode(mode: number, keepSetuid: boolean): number {
  const permissions = mode & 0o7777;
  return keepSetuid ? permissions : permissions & ~0o6000;
}

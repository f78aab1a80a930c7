// The shared libraries the guest's ELF files need (Node, node-pty's and the vsock
// addon), found by following DT_NEEDED through the unpacked Debian library packages.
import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, readlinkSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";

const LIBRARY_DIRS = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64"];

/** The DT_NEEDED sonames of an ELF file. */
export function neededLibraries(elf: string): string[] {
  const dynamic = execFileSync("readelf", ["-d", "-W", elf], { encoding: "utf8" });
  return [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((match) => match[1] as string);
}

/**
 * Every library `elves` need, directly or through each other, as soname -> file in
 * one of `roots` (unpacked Debian packages). Throws naming any soname not found.
 */
export function libraryClosure(elves: readonly string[], roots: readonly string[]): Map<string, string> {
  const found = new Map<string, string>();
  const pending = elves.flatMap(neededLibraries);
  for (let soname = pending.shift(); soname !== undefined; soname = pending.shift()) {
    if (found.has(soname)) continue;
    const file = locate(soname, roots);
    if (!file) throw new Error(`shared library ${soname} is in none of the library packages`);
    found.set(soname, file);
    pending.push(...neededLibraries(file));
  }
  return found;
}

function locate(soname: string, roots: readonly string[]): string | undefined {
  for (const root of roots) {
    for (const dir of LIBRARY_DIRS) {
      const path = join(root, dir, soname);
      if (existsSync(path)) return resolveInside(root, path);
    }
  }
  return undefined;
}

// Follows symlinks inside an unpacked package: an absolute target (libc6 has some)
// means the package's root, never this machine's.
function resolveInside(root: string, path: string): string {
  let current = path;
  for (let hops = 0; lstatSync(current).isSymbolicLink(); hops++) {
    if (hops > 16) throw new Error(`too many symlinks at ${path}`);
    const target = readlinkSync(current);
    current = isAbsolute(target) ? join(root, target) : join(dirname(current), target);
  }
  return current;
}

// Debian packages the image is made of: resolved to exact versions through apt's
// lists, fetched with `apt-get download` into a cache, unpacked with `dpkg-deb -x`.
// Nothing else is fetched. A version that is already cached is never fetched again.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";

/** A Debian package resolved to one version and unpacked. */
export interface DebianPackage {
  name: string;
  version: string;
  /** The unpacked tree (what `dpkg-deb -x` produced). */
  root: string;
}

let listsRefreshed = false;

function refreshLists(why: string): boolean {
  if (listsRefreshed || process.getuid?.() !== 0) return false;
  process.stderr.write(`guest-image: ${why}; running apt-get update\n`);
  execFileSync("apt-get", ["update", "-qq"], { stdio: ["ignore", "ignore", "inherit"] });
  listsRefreshed = true;
  return true;
}

function download(name: string, version: string, dir: string): void {
  // The sandbox user cannot write into a cache owned by root; nothing else changes.
  const run = () =>
    execFileSync("apt-get", ["download", "-q", "-o", "APT::Sandbox::User=root", `${name}=${version}`], {
      cwd: dir,
      stdio: ["ignore", "ignore", "inherit"],
    });
  try {
    run();
  } catch (error) {
    // Stale lists name files the mirror has since dropped (old kernel ABIs go at point releases).
    if (!refreshLists(`apt-get download ${name}=${version} failed`)) throw error;
    if (candidateVersion(name) !== version) {
      throw new Error(`${name} ${version} is gone from the archive; run the build again to use the current version`);
    }
    run();
  }
}

/** The candidate version apt would install, refreshing apt's lists once if it knows none. */
export function candidateVersion(name: string): string {
  const read = () => {
    const policy = execFileSync("apt-cache", ["policy", name], { encoding: "utf8" });
    const match = /Candidate:\s*(\S+)/.exec(policy);
    return match && match[1] !== "(none)" ? match[1] : undefined;
  };
  let version = read();
  if (version === undefined && refreshLists(`apt knows no version of ${name}`)) version = read();
  if (version === undefined) throw new Error(`apt has no candidate version of ${name} (run apt-get update as root)`);
  return version;
}

/** The package a metapackage (linux-image-cloud-amd64) currently points at. */
export function metapackageTarget(name: string, prefix: string): string {
  candidateVersion(name);
  const depends = execFileSync("apt-cache", ["depends", "--important", name], { encoding: "utf8" });
  const match = new RegExp(`Depends:\\s*(${prefix}\\S*)`).exec(depends);
  if (!match?.[1]) throw new Error(`${name} does not depend on a ${prefix}* package`);
  return match[1];
}

/** Downloads (once) and unpacks (once) `name` at its candidate version under `cacheDir`. */
export function fetchPackage(name: string, cacheDir: string): DebianPackage {
  const version = candidateVersion(name);
  const debs = join(cacheDir, "debs");
  const root = join(cacheDir, "unpacked", `${name}_${version.replaceAll(":", "%3a")}`);
  if (existsSync(root)) return { name, version, root };
  mkdirSync(debs, { recursive: true });
  const prefix = `${name}_${version.replaceAll(":", "%3a")}_`;
  let deb = readdirSync(debs).find((file) => file.startsWith(prefix) && file.endsWith(".deb"));
  if (!deb) {
    process.stderr.write(`guest-image: downloading ${name} ${version}\n`);
    download(name, version, debs);
    deb = readdirSync(debs).find((file) => file.startsWith(prefix) && file.endsWith(".deb"));
    if (!deb) throw new Error(`apt-get download ${name}=${version} produced no ${prefix}*.deb`);
  }
  // Unpack next to the final place and rename, so an interrupted run leaves no half tree.
  const partial = `${root}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  execFileSync("dpkg-deb", ["-x", join(debs, deb), partial]);
  renameSync(partial, root);
  return { name, version, root };
}

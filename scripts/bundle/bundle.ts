// One way to turn a Node program of ours into one file: esbuild, ESM, with what must stay
// a package of its own (native addons, things loaded lazily on first use) left outside.
// A program pays at every start for each module it loads: one file instead of hundreds
// read one by one from node_modules halves the start of guestctl and of the agent
// (bench/README.md has the figures). `pnpm build` bundles both programs (bundles.ts);
// the release's agent tarball bundles the agent the same way (scripts/release).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Metafile } from "esbuild";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The agent's packages that stay outside its bundle: native addons, and reflection (loaded on first use). */
export const AGENT_EXTERNALS = [
  "@guestkit/vsock",
  "@guestkit/posix-spawn",
  "node-pty",
  "@grpc/reflection",
  "@grpc/proto-loader",
] as const;

/** What bundleProgram needs. */
export interface BundleOptions {
  /** The built (tsc) entry module. */
  entry: string;
  outfile: string;
  /** Packages loaded from node_modules at run time instead of bundled. */
  external: readonly string[];
  /** The oldest Node the program runs on ("node22"). */
  target: string;
}

/** Bundles `entry` into `outfile`; returns esbuild's record of what went in. */
export async function bundleProgram(options: BundleOptions): Promise<Metafile> {
  const result = await build({
    entryPoints: [options.entry],
    outfile: options.outfile,
    absWorkingDir: REPO_ROOT,
    bundle: true,
    platform: "node",
    format: "esm",
    target: options.target,
    external: [...options.external],
    // grpc-js and commander are CommonJS: their require() of Node's modules needs one in ESM.
    banner: {
      js: 'import { createRequire as __guestkitRequire } from "node:module";\nconst require = __guestkitRequire(import.meta.url);',
    },
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
  });
  return result.metafile;
}

/** The directories of the npm packages whose code went into a bundle. */
export function bundledPackageDirs(metafile: Metafile): string[] {
  const dirs = new Set<string>();
  for (const input of Object.keys(metafile.inputs)) {
    const at = input.lastIndexOf("node_modules/");
    if (at < 0) continue;
    const rest = input.slice(at + "node_modules/".length).split("/");
    const name = rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] as string);
    dirs.add(join(REPO_ROOT, input.slice(0, at), "node_modules", name));
  }
  return [...dirs];
}

/** "name version (license)" of a package directory. */
export function describePackage(dir: string): string {
  const { name, version, license } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as {
    name: string;
    version: string;
    license?: string;
  };
  return `${name} ${version} (${license ?? "see its package"})`;
}

// `npm run release`: writes release/ from the workspace's build (the npm script builds
// first): one npm tarball per published package, and the self-contained agent bundle.
// Prints what it wrote with sizes. See README.md, "Releases".
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { buildAgentBundle } from "./agent-bundle.ts";
import { packNpmPackages } from "./npm-packages.ts";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const outDir = process.env.GUESTKIT_RELEASE_DIR ?? join(REPO_ROOT, "release");

const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;
const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

try {
  const packages = packNpmPackages(outDir);
  const bundle = await buildAgentBundle({ outDir, cacheDir: join(REPO_ROOT, "release", ".cache") });
  const where = (file: string) => relative(process.cwd(), file) || file;
  for (const pkg of packages) {
    process.stdout.write(
      `${where(pkg.file)}  ${kib(pkg.bytes)}, ${pkg.files.length} files  (${pkg.name}@${pkg.version})\n`,
    );
  }
  process.stdout.write(
    `${where(bundle.file)}  ${mib(bundle.bytes)}; unpacked ${mib(bundle.unpackedBytes)}, of which Node ${bundle.nodeVersion} ${mib(bundle.nodeBytes)}\n`,
  );
} catch (error) {
  process.stderr.write(`release: ${(error as Error).message}\n`);
  process.exitCode = 1;
}

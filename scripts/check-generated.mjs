// Fails when packages/protocol/src/gen does not match its inputs: regenerates into a
// temp dir and compares, so a stale commit cannot pass CI.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), "guestkit-gen-"));
try {
  execFileSync("buf", ["lint"], { cwd: root, stdio: "inherit" });
  execFileSync("buf", ["generate", "--output", scratch], { cwd: root, stdio: "inherit" });
  const generated = join("packages", "protocol", "src", "gen");
  const want = listFiles(join(scratch, generated));
  const have = listFiles(join(root, generated));
  const stale = [...new Set([...want.keys(), ...have.keys()])].filter((file) => want.get(file) !== have.get(file));
  if (stale.length > 0) {
    console.error(`generated code is stale (run \`pnpm generate\`): ${stale.join(", ")}`);
    process.exit(1);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

function listFiles(dir) {
  const files = new Map();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) {
      const path = join(entry.parentPath, entry.name);
      files.set(relative(dir, path), readFileSync(path, "utf8"));
    }
  }
  return files;
}

// Install step: builds the vsock addon from source with node-gyp. A failure is NOT an
// install failure: vsock is optional for the rest of guestkit, so this records why the
// addon is missing (build/unavailable.txt) and the loader puts that in its error.
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const reasonFile = join(root, "build", "unavailable.txt");

function unavailable(reason) {
  mkdirSync(dirname(reasonFile), { recursive: true });
  writeFileSync(reasonFile, `${reason}\n`);
  process.stderr.write(`@guestkit/vsock: not built, vsock targets will be unavailable: ${reason}\n`);
}

if (process.platform !== "linux") {
  unavailable(`AF_VSOCK is Linux only (this is ${process.platform})`);
} else {
  rmSync(reasonFile, { force: true });
  // pnpm and npm point npm_config_node_gyp at the node-gyp they bundle.
  const nodeGyp = process.env.npm_config_node_gyp;
  const [command, args] = nodeGyp ? [process.execPath, [nodeGyp, "rebuild"]] : ["node-gyp", ["rebuild"]];
  const result = spawnSync(command, args, { cwd: root, stdio: ["ignore", "inherit", "pipe"], encoding: "utf8" });
  if (result.status !== 0) {
    process.stderr.write(result.stderr ?? "");
    // node-gyp's output ends in boilerplate (versions, cwd); the cause is an earlier line.
    const lines = (result.stderr ?? "").split("\n").map((line) => line.trim());
    const causes = lines.filter((line) => /error:|Error:|not found|No such file|make: \*\*\*/.test(line));
    const why = result.error
      ? result.error.message
      : (causes.length ? causes : lines.filter(Boolean)).slice(0, 2).join(" / ");
    unavailable(`node-gyp rebuild failed: ${why || `exit ${result.status}`}`);
  }
}

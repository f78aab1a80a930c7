// Install step of the packages with a native addon (@guestkit/vsock, @guestkit/posix-spawn):
// builds it from source with node-gyp in the package's directory (the current one while
// its install script runs). A failure is NOT an install failure: each addon is optional,
// so this records why it is missing (build/unavailable.txt), and the package's loader puts
// that in its error or falls back.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const root = process.cwd();
const { name, description } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const reasonFile = join(root, "build", "unavailable.txt");

function unavailable(reason) {
  mkdirSync(dirname(reasonFile), { recursive: true });
  writeFileSync(reasonFile, `${reason}\n`);
  process.stderr.write(`${name}: the addon is not built (${description}): ${reason}\n`);
}

if (process.platform !== "linux") {
  unavailable(`Linux only (this is ${process.platform})`);
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

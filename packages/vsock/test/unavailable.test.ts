// A system where the addon did not build: a real copy of the package without
// build/Release/vsock.node, loaded in a real Node process. Every entry point must say
// clearly why vsock is unavailable instead of crashing at import.
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, beforeEach, expect, it } from "vitest";

const packageDir = fileURLToPath(new URL("..", import.meta.url));
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "guestkit-vsock-unbuilt-"));
  cpSync(join(packageDir, "package.json"), join(dir, "package.json"));
  cpSync(join(packageDir, "dist"), join(dir, "dist"), { recursive: true });
});

afterEach(() => rmSync(dir, { recursive: true, force: true }));

const probe = `
import { connectVsock, listenVsock, vsockUnavailableReason } from "./dist/index.js";
const out = { reason: vsockUnavailableReason() };
try { listenVsock(2222); } catch (error) { out.listen = [error.code, error.message]; }
await connectVsock(1, 2222).catch((error) => { out.connect = [error.code, error.message]; });
console.log(JSON.stringify(out));
`;

async function runProbe(): Promise<{ reason: string; listen: [string, string]; connect: [string, string] }> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", probe], { cwd: dir });
  return JSON.parse(stdout);
}

it("says why when the build failed, from the reason the install step recorded", async () => {
  mkdirSync(join(dir, "build"));
  writeFileSync(join(dir, "build", "unavailable.txt"), "node-gyp rebuild failed: gcc: not found\n");
  const result = await runProbe();
  const reason =
    "the @guestkit/vsock native addon is not built (node-gyp rebuild failed: gcc: not found); reinstall with a C compiler, make and python3";
  expect(result.reason).toBe(reason);
  expect(result.listen).toEqual(["EVSOCKUNAVAILABLE", `vsock is not available: ${reason}`]);
  expect(result.connect).toEqual(["EVSOCKUNAVAILABLE", `vsock is not available: ${reason}`]);
});

it("says so when the addon was never built at all", async () => {
  const result = await runProbe();
  expect(result.reason).toContain("the @guestkit/vsock native addon is not built (it was never built)");
});

// How guestctl starts: the bundled CLI with Node's compile cache, kept under the user's own
// cache directory. Whoever can write that cache can change what guestctl runs, so it must
// never land in a directory others can write, such as /tmp.
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startCli } from "./cli-support.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), "guestctl-start-"));
  dirs.push(dir);
  return dir;
}

describe("guestctl's start", () => {
  it("keeps its compile cache under XDG_CACHE_HOME, private to the user, and runs from it again", async () => {
    const cacheHome = scratch();
    const first = await startCli(["--version"], { env: { XDG_CACHE_HOME: cacheHome } }).result;
    expect(first).toMatchObject({ code: 0, stderr: "" });
    expect(first.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    const ours = join(cacheHome, "guestkit");
    // guestctl's directory is the user's alone, so nobody else can put code in the cache.
    expect(statSync(ours).mode & 0o777).toBe(0o700);
    expect(readdirSync(join(ours, "node-compile-cache"), { recursive: true }).length).toBeGreaterThan(0);
    // A second run reads what the first wrote and behaves the same.
    const second = await startCli(["--version"], { env: { XDG_CACHE_HOME: cacheHome } }).result;
    expect(second).toEqual(first);
  });

  it("with a cache directory that cannot be made, runs without the cache", async () => {
    // A regular file where the directory would be: nothing can be made under it, root or not.
    const file = join(scratch(), "not-a-directory");
    writeFileSync(file, "");
    const result = await startCli(["--version"], { env: { XDG_CACHE_HOME: join(file, "cache") } }).result;
    expect(result).toMatchObject({ code: 0, stderr: "" });
    expect(result.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});

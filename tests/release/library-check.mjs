// Runs in a scratch project outside the repository where the release tarballs were
// installed with plain `npm install`: it can use only what a user of @guestkit/host has.
// `node library-check.mjs TARGET GUEST_DIR` drives the agent at TARGET through the
// library (exec, a TTY of a given size, a tree copied in and out, stat) and prints what
// it saw as one JSON object; release.test.ts judges it.
import { lstatSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createGuestClient } from "@guestkit/host";

const [target, guestDir] = process.argv.slice(2);
const guest = createGuestClient(target, { connectTimeoutMs: 10_000 });
const seen = { node: process.versions.node };
try {
  await guest.waitUntilReady({ timeoutMs: 20_000 });

  const run = await guest.run(["sh", "-c", "echo out; echo err >&2; exit 3"]);
  seen.exec = { code: run.exit.code, stdout: run.stdout, stderr: run.stderr };

  const tty = guest.exec(["sh", "-c", "stty size; test -t 0 && echo on-a-tty"], { tty: true, rows: 33, cols: 101 });
  let ttyOutput = "";
  for await (const { data } of tty) ttyOutput += Buffer.from(data).toString();
  seen.tty = { code: (await tty.exit).code, output: ttyOutput };

  mkdirSync("tree/sub", { recursive: true });
  writeFileSync("tree/a.txt", "alpha\n");
  writeFileSync("tree/sub/b.bin", Buffer.alloc(70_000, 7), { mode: 0o640 });
  symlinkSync("../a.txt", "tree/sub/link");
  const up = await guest.copyTo("tree", `${guestDir}/`);
  const down = await guest.copyFrom(`${guestDir}/tree`, "back");
  seen.copy = {
    up: { entries: up.entries, bytes: up.bytes },
    down: { entries: down.entries, bytes: down.bytes },
    a: readFileSync(join("back", "a.txt"), "utf8"),
    bSize: lstatSync(join("back", "sub", "b.bin")).size,
    bMode: lstatSync(join("back", "sub", "b.bin")).mode & 0o777,
    link: readlinkSync(join("back", "sub", "link")),
  };

  const file = await guest.stat(`${guestDir}/tree/sub/b.bin`);
  const missing = await guest.stat(`${guestDir}/nope`);
  seen.stat = { exists: file.exists, type: file.type, size: file.size, mode: file.mode, missing: missing.exists };

  // The optional vsock addon was built at install, from its own package directory.
  const vsock = await import("@guestkit/vsock");
  seen.vsock = vsock.vsockUnavailableReason() ?? "available";
} finally {
  await guest.close();
}
process.stdout.write(`${JSON.stringify(seen)}\n`);

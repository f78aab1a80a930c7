// The QEMU test's extra initramfs archive, appended to the unchanged product image:
// the host library with its dependencies (the in-guest client), the agent's token, the in-guest check
// script, the debug-exit helper and the once.d hook that runs them. The kernel
// unpacks concatenated cpio archives in order, so the image under test is byte for
// byte the one users boot, plus these files.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeCpio } from "../../scripts/guest-image/cpio.ts";
import { ImageTree } from "../../scripts/guest-image/image-tree.ts";
import { addPackageTree } from "../../scripts/guest-image/node-packages.ts";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const GUEST_DIR = fileURLToPath(new URL("guest", import.meta.url));

/** Builds `workDir/initramfs-e2e.cpio` = the product initramfs + the test archive; returns its path. */
export function buildE2eInitramfs(productInitramfs: string, workDir: string): string {
  const debugExit = join(workDir, "debug-exit");
  execFileSync("cc", [
    "-static",
    "-nostdlib",
    "-fno-stack-protector",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-o",
    debugExit,
    join(GUEST_DIR, "debug-exit.c"),
  ]);
  const tree = new ImageTree();
  // The script sits inside the host package's directory, so `@guestkit/host` resolves
  // to it by its own name and its dependencies from its node_modules.
  addPackageTree(tree, join(REPO_ROOT, "packages", "host"), "opt/guestkit-e2e");
  tree.file("opt/guestkit-e2e/e2e/e2e.ts", join(GUEST_DIR, "e2e.ts"), 0o644);
  tree.file("opt/guestkit-e2e/debug-exit", debugExit, 0o755);
  tree.file("etc/guestkit/once.d/50-e2e", join(GUEST_DIR, "once-e2e.sh"), 0o755);
  // The checks run inside the guest, so they reach the agent from CID 1: without a token
  // it would serve only the host (CID 2). One token per image, private to root.
  tree.data("etc/guestkit/token", randomBytes(24).toString("hex"), 0o600);
  const overlay = join(workDir, "e2e-overlay.cpio");
  writeCpio(overlay, tree.entries(), 0);
  const combined = join(workDir, "initramfs-e2e.cpio");
  copyFileSync(productInitramfs, combined);
  appendFileSync(combined, readFileSync(overlay));
  return combined;
}

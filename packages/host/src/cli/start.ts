// guestctl's entry point (bin/guestctl runs this): turns on Node's compile cache, then
// runs the bundled CLI (dist/cli/guestctl.mjs, built by scripts/bundle/bundles.ts from
// main.ts). With the cache, V8 reuses the compiled code of that one big file instead of
// compiling it again on every call.
//
// The cache lives under the user's own cache directory, never in a shared one such as
// /tmp: whoever can write the cache can change what guestctl runs.
import { mkdirSync } from "node:fs";
import module from "node:module";
import { homedir } from "node:os";
import { join } from "node:path";

const cacheHome = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
try {
  // Our directory is the user's alone (0700) before Node puts anything in it. Where it
  // cannot be made (no home, a read-only one), guestctl runs without the cache.
  const dir = join(cacheHome, "guestkit");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Node 22.1 and later; older versions run without the cache (and main.ts says what they lack).
  module.enableCompileCache?.(join(dir, "node-compile-cache"));
} catch {}
await import(new URL("./guestctl.mjs", import.meta.url).href);

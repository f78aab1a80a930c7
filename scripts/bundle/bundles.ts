// `pnpm build`, after tsc: guestctl and the agent as one file each, which their launchers
// (packages/host/bin/guestctl through cli/start.ts, packages/guest/bin/guest-agent) run.
// The libraries (each package's dist/index.js) are not bundled: programs that import them
// resolve their dependencies themselves. The bundled packages are dependencies of the
// package the bundle ships in, so their license texts are installed beside it; the first
// line of each bundle names them.
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { AGENT_EXTERNALS, bundledPackageDirs, bundleProgram, describePackage } from "./bundle.ts";

const PACKAGES = fileURLToPath(new URL("../../packages/", import.meta.url));

const programs = [
  {
    what: "guestctl",
    entry: `${PACKAGES}host/dist/cli/main.js`,
    outfile: `${PACKAGES}host/dist/cli/guestctl.mjs`,
    external: ["@guestkit/vsock"],
    target: "node22",
  },
  {
    what: "guest-agent",
    entry: `${PACKAGES}guest/dist/main.js`,
    outfile: `${PACKAGES}guest/dist/agent.mjs`,
    external: AGENT_EXTERNALS,
    target: "node24",
  },
];

for (const { what, ...options } of programs) {
  const metafile = await bundleProgram(options);
  const included = bundledPackageDirs(metafile).map(describePackage).sort();
  const notice = `// ${what}, bundled from ${options.entry.slice(PACKAGES.length)}. Includes: ${included.join(", ")}.\n`;
  writeFileSync(options.outfile, notice + readFileSync(options.outfile, "utf8"));
}

// The agent's version: its package's. The bundle (scripts/release) keeps a package.json
// at the same place relative to dist/, so this reads the same file in both layouts.
import { readFileSync } from "node:fs";

/** The agent's version, as `guest-agent --version` prints it. */
export function agentVersion(): string {
  const text = readFileSync(new URL("../package.json", import.meta.url), "utf8");
  return (JSON.parse(text) as { version: string }).version;
}

// The agent's console log. One line per event on stderr, never a command's arguments or
// environment (they carry secrets): callers pass what is safe to print.

let quiet = false;
let broken = false;

// When whoever reads our stderr goes away (a dead parent, a closed console), writes fail
// with EPIPE. Logging must then stop quietly: reporting that failure would itself write
// to stderr, fail again, and spin.
process.stderr.on("error", () => {
  broken = true;
});

/** Silences info lines (errors are always printed). */
export function setQuiet(value: boolean): void {
  quiet = value;
}

export function logInfo(message: string): void {
  if (!quiet) write(`guest-agent: ${message}\n`);
}

export function logError(message: string): void {
  write(`guest-agent: error: ${message}\n`);
}

function write(line: string): void {
  if (!broken) process.stderr.write(line);
}

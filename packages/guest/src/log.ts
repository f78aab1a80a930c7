// The agent's console log. One line per event on stderr, never a command's arguments or
// environment (they carry secrets): callers pass what is safe to print.

let quiet = false;

/** Silences info lines (errors are always printed). */
export function setQuiet(value: boolean): void {
  quiet = value;
}

export function logInfo(message: string): void {
  if (!quiet) process.stderr.write(`guest-agent: ${message}\n`);
}

export function logError(message: string): void {
  process.stderr.write(`guest-agent: error: ${message}\n`);
}

// The agent's console log. One line per event on stderr, never a command's arguments or
// environment (they carry secrets): callers pass what is safe to print.
//
// Node writes to a pipe or file on stderr synchronously, so a line per exec event was a
// system call on the event loop for every command start and end. Info lines are batched
// and written once per turn of the loop instead; errors go out at once (after whatever
// is pending, to keep the order), and anything pending is written at exit.

let quiet = false;
let broken = false;
let pending: string[] = [];
let scheduled = false;

// When whoever reads our stderr goes away (a dead parent, a closed console), writes fail
// with EPIPE. Logging must then stop quietly: reporting that failure would itself write
// to stderr, fail again, and spin.
process.stderr.on("error", () => {
  broken = true;
});
process.on("exit", flush);

/** Silences info lines (errors are always printed). */
export function setQuiet(value: boolean): void {
  quiet = value;
}

/** Logs an informational line, written with the others of this turn of the event loop. */
export function logInfo(message: string): void {
  if (quiet || broken) return;
  pending.push(`guest-agent: ${message}\n`);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
}

/** Logs an error line at once. */
export function logError(message: string): void {
  pending.push(`guest-agent: error: ${message}\n`);
  flush();
}

function flush(): void {
  scheduled = false;
  if (pending.length === 0) return;
  const text = pending.join("");
  pending = [];
  if (!broken) process.stderr.write(text);
}

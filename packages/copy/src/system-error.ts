// How the engine names a failed system call in what it reports: the errno name as the
// code, the error's own message as the reason.

/** The errno name of a failed system call ("ENOENT"), or "EIO" when it has none. */
export function errnoCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code !== "" ? code : "EIO";
}

/** The error's message, for the `reason` of a skipped entry. */
export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

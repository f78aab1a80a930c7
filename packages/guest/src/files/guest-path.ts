// The rule every file call applies to a path it is given, so that a bad path is a clear
// error and never something the kernel interprets in a surprising way.

/**
 * Why `path` cannot name an entry in the guest, or undefined when it can. Paths must be
 * absolute: the agent's working directory is an accident of how it was started, and a
 * relative path would silently land somewhere else. A NUL byte would be cut by the C
 * library, so the call would act on a different path than the one that was asked for.
 */
export function checkGuestPath(path: string): string | undefined {
  if (path === "") return "the path is empty";
  if (path.includes("\0")) return `the path contains a NUL byte: ${JSON.stringify(path)}`;
  if (!path.startsWith("/")) return `the path is not absolute: ${JSON.stringify(path)}`;
  return undefined;
}

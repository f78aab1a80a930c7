// The agent's optional dependencies (@guestkit/posix-spawn, @guestkit/vsock) are loaded
// with import() rather than a static import, so that an install without one of them
// still starts: a missing package is a reason to fall back or to refuse one listener,
// not a crash at start-up.

/** An optional package: its module, or one line saying why it cannot be used. */
export type OptionalPackage<T> = { module: T } | { reason: string };

/** Loads `name` through `load` (an `import()` of that literal name, which bundlers can see). */
export async function importOptional<T>(name: string, load: () => Promise<T>): Promise<OptionalPackage<T>> {
  try {
    return { module: await load() };
  } catch (error) {
    const { code, message } = error as { code?: unknown; message?: unknown };
    // The package itself is absent; anything else (a file missing inside it, a syntax
    // error, an export this Node lacks) is a broken install, and its text says which.
    if (code === "ERR_MODULE_NOT_FOUND" && String(message).includes(`'${name}'`)) {
      return { reason: `${name} is not installed` };
    }
    return { reason: `${name} failed to load: ${String(message)}` };
  }
}

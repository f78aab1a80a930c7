// Where a copy lands: the `docker cp` rules, shared by both directions so that
// `guestctl cp` behaves the same whichever side is the guest.
import { posix } from "node:path";
import { CopyError } from "./copy-error.js";

/** A source path as the user wrote it, taken apart. */
export interface SourceSpec {
  /** The path to read, without a trailing `/` or `/.`. */
  path: string;
  /** Written as `SRC/.`: copy the directory's contents rather than the directory. */
  contentsOnly: boolean;
  /** Written with a trailing `/`: it must be a directory. */
  mustBeDir: boolean;
}

/** A destination path as the user wrote it, taken apart. */
export interface DestinationSpec {
  /** The path without trailing `/`. */
  path: string;
  /** Written with a trailing `/`: it names a directory, which must exist for a file. */
  trailingSlash: boolean;
}

/** What the destination is now. */
export interface DestinationState {
  exists: boolean;
  isDir: boolean;
}

/** Where the source root goes. */
export interface Placement {
  /** The path the source root becomes. */
  target: string;
  /**
   * The target is an existing directory receiving the source directory's contents
   * (`SRC/.` onto a directory): its own mode, owner and times are left as they are.
   */
  mergeIntoExisting: boolean;
  /** The target is the destination itself, which does not exist: its parent must be a directory. */
  createsDestination: boolean;
}

/** Takes a source path apart (POSIX separators on both sides). */
export function parseSource(path: string): SourceSpec {
  if (path === "") throw new CopyError("source", "the source path is empty");
  const contentsOnly = path === "." || path.endsWith("/.");
  let rest = contentsOnly ? path.slice(0, -1) : path;
  const mustBeDir = contentsOnly || rest.endsWith("/");
  rest = stripTrailingSlashes(rest);
  return { path: rest === "" ? "." : rest, contentsOnly, mustBeDir };
}

/** Takes a destination path apart. */
export function parseDestination(path: string): DestinationSpec {
  if (path === "") throw new CopyError("destination", "the destination path is empty");
  const stripped = stripTrailingSlashes(path);
  return { path: stripped, trailingSlash: stripped !== path && stripped !== "/" };
}

/**
 * Applies the `docker cp` rules:
 * - a file onto an existing directory goes inside it, under its own name;
 * - a file onto an existing file overwrites it;
 * - a file onto a missing path creates it, unless the path ends in `/` (an error: that directory does not exist);
 * - a directory onto an existing directory goes inside it, or with `SRC/.` its contents do;
 * - a directory onto a missing path creates it with the contents;
 * - a directory onto an existing file is an error.
 * `baseName` is the source's own name; `sourceIsDir` what the source turned out to be.
 */
export function placeCopy(
  source: SourceSpec,
  sourceIsDir: boolean,
  baseName: string,
  destination: DestinationSpec,
  state: DestinationState,
): Placement {
  if (source.mustBeDir && !sourceIsDir) {
    throw new CopyError(
      "source",
      `${source.path} is not a directory (the source was written with a trailing / or /.)`,
      {
        path: source.path,
      },
    );
  }
  const into = (): Placement => {
    if (baseName === "" || baseName === "." || baseName === ".." || baseName.includes("/")) {
      throw new CopyError(
        "source",
        `cannot name a copy of ${source.path} inside ${destination.path}: use ${source.path}/. to copy its contents`,
        { path: source.path },
      );
    }
    return {
      target: posix.join(destination.path, baseName),
      mergeIntoExisting: false,
      createsDestination: false,
    };
  };
  if (!sourceIsDir) {
    if (state.exists && state.isDir) return into();
    if (state.exists) {
      if (destination.trailingSlash) {
        throw new CopyError("destination", `${destination.path} is not a directory`, { path: destination.path });
      }
      return { target: destination.path, mergeIntoExisting: false, createsDestination: false };
    }
    if (destination.trailingSlash) {
      throw new CopyError("destination", `destination directory ${destination.path}/ does not exist`, {
        path: destination.path,
      });
    }
    return { target: destination.path, mergeIntoExisting: false, createsDestination: true };
  }
  if (state.exists && !state.isDir) {
    throw new CopyError("destination", `cannot copy a directory onto a file: ${destination.path} is not a directory`, {
      path: destination.path,
    });
  }
  if (state.exists) {
    if (source.contentsOnly) return { target: destination.path, mergeIntoExisting: true, createsDestination: false };
    return into();
  }
  return { target: destination.path, mergeIntoExisting: false, createsDestination: true };
}

function stripTrailingSlashes(path: string): string {
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end -= 1;
  return path.slice(0, end);
}

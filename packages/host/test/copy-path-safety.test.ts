// The checks on guest-supplied names and link targets, on their own. The end-to-end
// refusals (nothing written outside the destination) are in hostile-copy.test.ts.
import { describe, expect, it } from "vitest";
import { linkTargetProblem, sanitizeMode, splitEntryPath } from "../src/copy/path-safety.js";

describe("splitEntryPath", () => {
  it("splits plain relative paths", () => {
    expect(splitEntryPath("root")).toEqual({ names: ["root"] });
    expect(splitEntryPath("root/a b/ünïcode\\x")).toEqual({ names: ["root", "a b", "ünïcode\\x"] });
    expect(splitEntryPath("root/...")).toEqual({ names: ["root", "..."] });
  });

  it.each([
    ["", "empty path"],
    ["/etc/passwd", "absolute path"],
    ["root/../x", "`..` in path"],
    ["..", "`..` in path"],
    ["root/./x", "`.` in path"],
    ["root//x", "empty name in path"],
    ["root/", "empty name in path"],
    ["root/x\0y", "path contains a NUL byte"],
    [`root/${"n".repeat(256)}`, "name longer than 255 bytes"],
    [`root/${"d/".repeat(2100)}x`, "path longer than 4096 bytes"],
  ])("refuses %j: %s", (path, problem) => {
    expect(splitEntryPath(path)).toEqual({ problem });
  });
});

describe("linkTargetProblem", () => {
  it.each([
    ["sibling", 0],
    ["sub/dir/file", 0],
    ["./x", 0],
    ["../x", 1],
    ["../../a/b", 2],
    ["..//../a", 2],
  ])("accepts %j at depth %i", (target, depth) => {
    expect(linkTargetProblem(target, depth)).toBeUndefined();
  });

  it.each([
    ["", 3, "empty symlink target"],
    ["/etc/passwd", 3, "absolute symlink target"],
    ["../x", 0, "symlink target points outside the destination"],
    ["../../../x", 2, "symlink target points outside the destination"],
    ["a/../..", 3, "symlink target has `..` after a name"],
    ["up/../../x", 3, "symlink target has `..` after a name"],
    ["x\0y", 3, "symlink target contains a NUL byte"],
  ])("refuses %j at depth %i", (target, depth, problem) => {
    expect(linkTargetProblem(target, depth)).toBe(problem);
  });
});

describe("sanitizeMode", () => {
  it("drops setuid and setgid unless asked, keeps the sticky bit, and drops file type bits", () => {
    expect(sanitizeMode(0o4755, false)).toBe(0o755);
    expect(sanitizeMode(0o6755, false)).toBe(0o755);
    expect(sanitizeMode(0o1777, false)).toBe(0o1777);
    expect(sanitizeMode(0o6755, true)).toBe(0o6755);
    expect(sanitizeMode(0o100644, false)).toBe(0o644);
  });
});

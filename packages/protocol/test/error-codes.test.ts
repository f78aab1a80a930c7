import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { ErrorCode, errnoOf, errorCodeOf, FALLBACK_ERRNO, statusOfErrno } from "../src/error-codes.js";

describe("the in-band error vocabulary", () => {
  it("a failure's code is its errno name, or EIO when it has none", () => {
    const enoent = Object.assign(new Error("gone"), { code: "ENOENT" });
    expect(errnoOf(enoent)).toBe("ENOENT");
    expect(errorCodeOf(enoent)).toBe("ENOENT");
    expect(errnoOf(new Error("ours"))).toBe("");
    expect(errorCodeOf(new Error("ours"))).toBe(FALLBACK_ERRNO);
    expect(errorCodeOf("a string")).toBe("EIO");
    expect(errorCodeOf(null)).toBe("EIO");
  });

  it("one errno table decides the gRPC status; other names decide none", () => {
    expect(statusOfErrno("ENOENT")).toBe(status.NOT_FOUND);
    expect(statusOfErrno("EACCES")).toBe(status.PERMISSION_DENIED);
    expect(statusOfErrno("ENOSPC")).toBe(status.RESOURCE_EXHAUSTED);
    expect(statusOfErrno("EINVAL")).toBe(status.INVALID_ARGUMENT);
    for (const name of ["EIO", "", ErrorCode.SIZE_MISMATCH, "constructor", "toString", "__proto__"]) {
      expect(statusOfErrno(name), name).toBeUndefined();
    }
  });

  it("guestkit's own codes are not errno names", () => {
    for (const code of Object.values(ErrorCode)) expect(code.startsWith("E")).toBe(false);
  });
});

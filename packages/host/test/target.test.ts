// Target strings: every accepted form, and clear errors for the rest.
import { describe, expect, it } from "vitest";
import { Code, GuestError } from "../src/guest-error.js";
import { formatTarget, parseTarget, TARGET_FORMS } from "../src/transport/target.js";

describe("parseTarget", () => {
  it.each([
    ["hvsock:/run/vm.vsock", { kind: "hvsock", path: "/run/vm.vsock", port: 2222 }],
    ["hvsock:/run/vm.vsock:1024", { kind: "hvsock", path: "/run/vm.vsock", port: 1024 }],
    ["hvsock:relative/vm.vsock", { kind: "hvsock", path: "relative/vm.vsock", port: 2222 }],
    ["hvsock:/run/a:b/vm.vsock", { kind: "hvsock", path: "/run/a:b/vm.vsock", port: 2222 }],
    ["hvsock:/run/vm:1/vm.vsock:7", { kind: "hvsock", path: "/run/vm:1/vm.vsock", port: 7 }],
    ["hvsock:/run/vm.vsock:4294967294", { kind: "hvsock", path: "/run/vm.vsock", port: 4294967294 }],
    ["vsock:3", { kind: "vsock", cid: 3, port: 2222 }],
    ["vsock:1", { kind: "vsock", cid: 1, port: 2222 }],
    ["vsock:42:5000", { kind: "vsock", cid: 42, port: 5000 }],
    ["unix:/tmp/agent.sock", { kind: "unix", path: "/tmp/agent.sock" }],
    ["unix:/tmp/with:colon.sock", { kind: "unix", path: "/tmp/with:colon.sock" }],
    ["tcp:127.0.0.1:9000", { kind: "tcp", host: "127.0.0.1", port: 9000 }],
    ["tcp:localhost", { kind: "tcp", host: "localhost", port: 2222 }],
    ["tcp:[::1]:9000", { kind: "tcp", host: "::1", port: 9000 }],
    ["tcp:[::1]", { kind: "tcp", host: "::1", port: 2222 }],
  ])("%s", (text, expected) => {
    expect(parseTarget(text)).toEqual(expected);
  });

  it.each([
    ["", "no scheme"],
    ["/run/vm.vsock", "no scheme"],
    ["ssh:host", 'unknown scheme "ssh"'],
    ["hvsock:", "the socket path is empty"],
    ["hvsock::2222", "the socket path is empty"],
    ["hvsock:/run/vm.vsock:", "port"],
    ["hvsock:/run/vm.vsock:0", "port"],
    ["hvsock:/run/vm.vsock:abc", "port"],
    ["hvsock:/run/vm.vsock:4294967295", "port"],
    ["vsock:", "CID"],
    ["vsock:abc", "CID"],
    ["vsock:0", "not a guest"],
    ["vsock:2", "not a guest"],
    ["vsock:4294967295", "not a guest"],
    ["vsock:99999999999", "CID"],
    ["vsock:3:0", "port"],
    ["vsock:3:x", "port"],
    ["vsock:3:1:2", "CID"],
    ["unix:", "the socket path is empty"],
    ["tcp:", "the host is empty"],
    ["tcp::2222", "the host is empty"],
    ["tcp:host:70000", "port"],
    ["tcp:host:0", "port"],
    ["tcp:::1", "brackets"],
    ["tcp:[::1]:x", "port"],
  ])("rejects %j (%s)", (text, why) => {
    let caught: unknown;
    try {
      parseTarget(text);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(GuestError);
    const error = caught as GuestError;
    expect(error.code).toBe(Code.INVALID_ARGUMENT);
    expect(error.reason).toBe("invalid-argument");
    expect(error.message).toContain(why);
    expect(error.message).toContain(TARGET_FORMS);
    expect(error.message).toContain(JSON.stringify(text));
  });

  it("formats what it parses, port written out", () => {
    for (const text of ["hvsock:/run/vm.vsock:2222", "vsock:3:2222", "unix:/tmp/a.sock", "tcp:[::1]:80", "tcp:h:1"]) {
      expect(formatTarget(parseTarget(text))).toBe(text);
    }
    expect(formatTarget(parseTarget("hvsock:/run/vm.vsock"))).toBe("hvsock:/run/vm.vsock:2222");
  });
});

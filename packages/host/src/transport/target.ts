// Target strings: the one way to say where an agent is, shared by the library,
// guestctl's --target and GUESTCTL_TARGET.
import { DEFAULT_PORT } from "@guestkit/protocol";
import { Code, GuestError } from "../guest-error.js";

/** Where an agent is. */
export type GuestTarget =
  /** A Cloud Hypervisor / Firecracker hybrid-vsock socket on the host, and the guest port behind it. */
  | { kind: "hvsock"; path: string; port: number }
  /** Kernel vsock (QEMU vhost-vsock): the guest's CID and port. */
  | { kind: "vsock"; cid: number; port: number }
  /** An agent listening on a Unix socket (tests, containers, a guest-side proxy). */
  | { kind: "unix"; path: string }
  /** An agent listening on TCP. */
  | { kind: "tcp"; host: string; port: number };

/** The accepted forms, for error messages and help text. */
export const TARGET_FORMS = `hvsock:PATH[:PORT], vsock:CID[:PORT], unix:PATH or tcp:HOST[:PORT] (PORT defaults to ${DEFAULT_PORT})`;

// vsock ports are 32-bit; 0xFFFFFFFF is VMADDR_PORT_ANY, which cannot be dialed.
const MAX_VSOCK_PORT = 0xfffffffe;
// CID 0 is the hypervisor, 2 the host itself and 0xFFFFFFFF "any": none of them is a guest.
const NOT_GUEST_CIDS = new Set([0, 2, 0xffffffff]);

/**
 * Parses a target string. Throws a GuestError (INVALID_ARGUMENT) naming the accepted
 * forms. In `hvsock:PATH:PORT` the port is the text after the last colon when it is
 * all digits, so a socket path that itself ends in `:digits` needs its port written out.
 */
export function parseTarget(text: string): GuestTarget {
  const colon = text.indexOf(":");
  const scheme = colon < 0 ? "" : text.slice(0, colon);
  const rest = colon < 0 ? "" : text.slice(colon + 1);
  const bad = (why: string) =>
    new GuestError(Code.INVALID_ARGUMENT, `bad target "${text}": ${why}; expected ${TARGET_FORMS}`, {
      reason: "invalid-argument",
    });
  switch (scheme) {
    case "hvsock": {
      const { head, port } = splitPort(rest, MAX_VSOCK_PORT);
      if (port === null) throw bad("the port must be a number from 1 to 4294967294");
      if (head === "") throw bad("the socket path is empty");
      return { kind: "hvsock", path: head, port: port ?? DEFAULT_PORT };
    }
    case "vsock": {
      const parts = rest.split(":");
      if (parts.length > 2 || !/^\d{1,10}$/.test(parts[0] ?? "")) throw bad("the CID must be a number");
      const cid = Number(parts[0]);
      if (cid > 0xffffffff) throw bad("the CID must fit in 32 bits");
      if (NOT_GUEST_CIDS.has(cid)) throw bad(`CID ${cid} is not a guest (0 = hypervisor, 2 = host, 4294967295 = any)`);
      const port = parts.length === 2 ? parsePort(parts[1] ?? "", MAX_VSOCK_PORT) : DEFAULT_PORT;
      if (port === undefined) throw bad("the port must be a number from 1 to 4294967294");
      return { kind: "vsock", cid, port };
    }
    case "unix":
      if (rest === "") throw bad("the socket path is empty");
      return { kind: "unix", path: rest };
    case "tcp": {
      const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(rest);
      let host: string;
      let port: number | undefined = DEFAULT_PORT;
      if (bracketed) {
        host = bracketed[1] ?? "";
        if (bracketed[2] !== undefined) port = parsePort(bracketed[2], 65535);
      } else {
        const parts = rest.split(":");
        if (parts.length > 2) throw bad("write an IPv6 address in brackets: tcp:[::1]:2222");
        host = parts[0] ?? "";
        if (parts.length === 2) port = parsePort(parts[1] ?? "", 65535);
      }
      if (host === "") throw bad("the host is empty");
      if (port === undefined) throw bad("the port must be a number from 1 to 65535");
      return { kind: "tcp", host, port };
    }
    default:
      throw bad(colon < 0 ? "no scheme" : `unknown scheme "${scheme}"`);
  }
}

/** The canonical string of a target (what parseTarget accepts, with the port written out). */
export function formatTarget(target: GuestTarget): string {
  switch (target.kind) {
    case "hvsock":
      return `hvsock:${target.path}:${target.port}`;
    case "vsock":
      return `vsock:${target.cid}:${target.port}`;
    case "unix":
      return `unix:${target.path}`;
    case "tcp":
      return target.host.includes(":") ? `tcp:[${target.host}]:${target.port}` : `tcp:${target.host}:${target.port}`;
  }
}

// "PATH:PORT" -> the path and the port; "PATH" -> port undefined; a bad port -> null.
function splitPort(text: string, max: number): { head: string; port: number | undefined | null } {
  const at = text.lastIndexOf(":");
  if (at < 0) return { head: text, port: undefined };
  const tail = text.slice(at + 1);
  if (!/^\d+$/.test(tail)) {
    // "PATH:" or "PATH:abc": a port was meant but is not a number.
    return tail === "" || /^[^/]*$/.test(tail)
      ? { head: text.slice(0, at), port: null }
      : { head: text, port: undefined };
  }
  const port = parsePort(tail, max);
  return { head: text.slice(0, at), port: port ?? null };
}

function parsePort(text: string, max: number): number | undefined {
  if (!/^\d{1,10}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= max ? port : undefined;
}

// Where `guestctl proxy` listens: a Unix socket or a loopback TCP port, nothing else.
// The proxy hands whoever connects the agent's full power (root in the guest), so it
// must not be reachable from another machine, and on this one only by this user and
// root (an owner-only socket; on TCP, see loopback-peer-uid.ts).
import { isIP } from "node:net";
import { usageError } from "./exit-status.js";

/** A local address for the proxy. */
export type ProxyListenAddress = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

/** The accepted forms, for help and errors. */
export const PROXY_LISTEN_FORMS = "unix:PATH or tcp:127.0.0.1:PORT (a loopback address; PORT 0 picks a free one)";

/** Parses --listen; a usage error for anything but a Unix socket or a loopback TCP address. */
export function parseProxyListenAddress(text: string): ProxyListenAddress {
  const bad = (why: string) => usageError(`bad --listen "${text}": ${why}; expected ${PROXY_LISTEN_FORMS}`);
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length);
    if (path === "") throw bad("the socket path is empty");
    return { kind: "unix", path };
  }
  if (!text.startsWith("tcp:")) throw bad("unknown scheme");
  const rest = text.slice("tcp:".length);
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(rest);
  if (!match) throw bad("write tcp:HOST:PORT");
  const host = match[1] ?? match[2] ?? "";
  const port = Number(match[3]);
  if (port > 65535) throw bad("the port must be from 0 to 65535");
  if (!isLoopback(host)) throw bad(`${host} is not a loopback address; the proxy listens only on this machine`);
  return { kind: "tcp", host: host === "localhost" ? "127.0.0.1" : host, port };
}

/** Whether `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`. */
export function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.split(".")[0] === "127";
  if (isIP(host) === 6) return host === "::1" || /^(0{0,4}:){7}0{0,3}1$/.test(host) || host === "::ffff:127.0.0.1";
  return false;
}

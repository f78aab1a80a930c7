// `--listen` addresses: unix:PATH, tcp:HOST:PORT, vsock:PORT.
import { DEFAULT_PORT } from "@guestkit/protocol";

export type ListenAddress =
  | { kind: "unix"; path: string }
  | { kind: "tcp"; host: string; port: number }
  | { kind: "vsock"; port: number };

export const LISTEN_FORMS = "unix:PATH, tcp:HOST:PORT or vsock:PORT";

/** Parses one --listen value; throws an Error naming the accepted forms. */
export function parseListenAddress(text: string): ListenAddress {
  const colon = text.indexOf(":");
  const scheme = colon < 0 ? text : text.slice(0, colon);
  const rest = colon < 0 ? "" : text.slice(colon + 1);
  switch (scheme) {
    case "unix":
      if (rest) return { kind: "unix", path: rest };
      break;
    case "vsock": {
      const port = rest === "" ? DEFAULT_PORT : parsePort(rest);
      if (port !== undefined) return { kind: "vsock", port };
      break;
    }
    case "tcp": {
      const at = rest.lastIndexOf(":");
      const host = rest.slice(0, at).replace(/^\[(.*)\]$/, "$1");
      const port = parsePort(rest.slice(at + 1));
      if (at > 0 && host && port !== undefined) return { kind: "tcp", host, port };
      break;
    }
  }
  throw new Error(`bad listen address "${text}": expected ${LISTEN_FORMS}`);
}

/** The address as --listen takes it. */
export function formatListenAddress(address: ListenAddress): string {
  switch (address.kind) {
    case "unix":
      return `unix:${address.path}`;
    case "tcp":
      return `tcp:${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;
    case "vsock":
      return `vsock:${address.port}`;
  }
}

/** The grpc-js bind string for unix and tcp addresses. */
export function grpcBindTarget(address: ListenAddress): string {
  switch (address.kind) {
    case "unix":
      return `unix:${address.path}`;
    case "tcp":
      return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
    case "vsock":
      return `vsock:${address.port}`;
  }
}

function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

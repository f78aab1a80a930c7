// `guestctl port-forward [--address 127.0.0.1] LOCAL:GUEST...`: listens on each local port
// and forwards every connection it accepts to the guest port, through a ForwardPort call
// of its own (kubectl's form; LOCAL 0 picks a free port, and `:GUEST` is the same as
// `0:GUEST`). Runs until SIGINT, SIGTERM or SIGHUP, then closes every connection.
//
// Anyone on this machine who can reach the local address can use the forward, as with
// kubectl: it reaches one service inside the guest, never the agent itself (the agent
// refuses forwards to its own listeners).
import { createGuestClient } from "../guest-client.js";
import type { ForwardListener } from "../port-forward.js";
import { type ConnectionFlags, clientOptions } from "./connection-flags.js";
import { messageOf, printable, usageError } from "./exit-status.js";

export interface PortForwardFlags extends ConnectionFlags {
  address?: string;
}

const STOP_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/** Parses `LOCAL:GUEST` (or `GUEST`, which listens on the same port number). */
export function parsePortPair(text: string): { local: number; guest: number } {
  const parts = text.split(":");
  const port = (value: string | undefined, allowZero: boolean) => {
    const n = value === undefined || value === "" ? (allowZero ? 0 : Number.NaN) : Number(value);
    if (!/^\d*$/.test(value ?? "") || !Number.isInteger(n) || n < (allowZero ? 0 : 1) || n > 65535) {
      throw usageError(`bad port pair ${JSON.stringify(text)}: use LOCAL:GUEST, ports 1-65535 (LOCAL 0 picks one)`);
    }
    return n;
  };
  if (parts.length === 1) {
    const same = port(parts[0], false);
    return { local: same, guest: same };
  }
  if (parts.length !== 2) throw usageError(`bad port pair ${JSON.stringify(text)}: use LOCAL:GUEST`);
  return { local: port(parts[0], true), guest: port(parts[1], false) };
}

/** Runs the forwards until a stop signal; resolves with the exit status. */
export async function portForwardCommand(pairs: string[], flags: PortForwardFlags): Promise<number> {
  if (pairs.length === 0) throw usageError("port-forward needs at least one LOCAL:GUEST pair");
  const parsed = pairs.map(parsePortPair);
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    for (const name of STOP_SIGNALS) process.once(name, () => resolve(name));
  });
  const client = createGuestClient(clientOptions(flags));
  const listeners: ForwardListener[] = [];
  try {
    for (const { local, guest } of parsed) {
      const listener = await client.listenForward({
        localPort: local,
        localAddress: flags.address ?? "127.0.0.1",
        guestPort: guest,
        onError: (error) => process.stderr.write(`guestctl: port-forward ${local} -> ${guest}: ${messageOf(error)}\n`),
      });
      listeners.push(listener);
      const { address, port } = listener.address;
      const shown = address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
      process.stdout.write(`Forwarding from ${printable(shown)} -> ${guest}\n`);
    }
    const signal = await stopped;
    process.stderr.write(`guestctl: port-forward: ${signal}, stopping\n`);
    return 0;
  } finally {
    await Promise.all(listeners.map((listener) => listener.close()));
    await client.close();
  }
}

// Which local user a loopback TCP connection comes from. A Unix socket has an owner and a
// mode, so `guestctl proxy` makes its socket owner-only; a loopback TCP port has neither,
// and any user of this machine can connect to it. The proxy cannot ask for the agent's
// token (it passes bytes through without parsing gRPC), so for TCP it asks the kernel
// instead: Linux lists every TCP socket in /proc/net/tcp and /proc/net/tcp6 with its two
// addresses and the uid that created it. The peer of an accepted connection is the
// socket whose local address is our remote one and whose remote address is our local one.
import { readFile } from "node:fs/promises";
import { isIPv4, type Socket } from "node:net";

const TABLES = ["/proc/net/tcp", "/proc/net/tcp6"];

// The table's state column. A TIME_WAIT entry is no longer anyone's socket: the kernel
// lists it with uid 0.
const TIME_WAIT = "06";

/** Why peer uids cannot be read on this system, or undefined when they can. */
export async function loopbackPeerUidUnavailable(): Promise<string | undefined> {
  try {
    await readFile(TABLES[0] as string, "latin1");
    return undefined;
  } catch (error) {
    return `cannot read the kernel's socket table (${(error as Error).message}), which tells whose a connection is`;
  }
}

/**
 * The uid owning the other end of `socket`, a connection accepted on a loopback port of
 * this machine; undefined if it is not found (it has gone already, for one).
 */
export async function loopbackPeerUid(socket: Socket): Promise<number | undefined> {
  const { remoteAddress, remotePort, localAddress, localPort } = socket;
  if (remoteAddress === undefined || remotePort === undefined || localAddress === undefined) return undefined;
  if (localPort === undefined) return undefined;
  const peerLocal = endpointKey(remoteAddress, remotePort);
  const peerRemote = endpointKey(localAddress, localPort);
  for (const table of TABLES) {
    const text = await readFile(table, "latin1").catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ...
      const fields = line.trim().split(/\s+/);
      const [, local, remote, state, , , , uid] = fields;
      if (local === undefined || remote === undefined || uid === undefined || state === TIME_WAIT) continue;
      if (tableKey(local) === peerLocal && tableKey(remote) === peerRemote) return Number(uid);
    }
  }
  return undefined;
}

// One spelling for an endpoint from either side: the address as 16 bytes in hex (IPv4 as
// IPv4-mapped IPv6, as a dual-stack socket sees it), then the port.
function endpointKey(address: string, port: number): string {
  return `${ipv6Bytes(address)}:${port}`;
}

// A table entry is ADDR:PORT in hex; ADDR is the address's 32-bit words, each in the
// kernel's (little-endian) byte order.
function tableKey(entry: string): string | undefined {
  const [address, port] = entry.split(":");
  if (address === undefined || port === undefined) return undefined;
  let bytes = "";
  for (let word = 0; word < address.length; word += 8) {
    const hex = address.slice(word, word + 8);
    bytes += (hex.match(/../g) ?? []).reverse().join("");
  }
  if (bytes.length === 8) bytes = `00000000000000000000ffff${bytes}`;
  return `${bytes.toLowerCase()}:${Number.parseInt(port, 16)}`;
}

function ipv6Bytes(address: string): string {
  if (isIPv4(address)) return `00000000000000000000ffff${ipv4Hex(address)}`;
  let text = address.toLowerCase().replace(/%.*$/, "");
  // An embedded IPv4 tail (::ffff:127.0.0.1) becomes two groups.
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)?.[1];
  if (tail !== undefined) {
    const hex = ipv4Hex(tail);
    text = `${text.slice(0, -tail.length)}${hex.slice(0, 4)}:${hex.slice(4)}`;
  }
  const [head = "", rest] = text.split("::");
  const front = head === "" ? [] : head.split(":");
  const back = rest === undefined || rest === "" ? [] : rest.split(":");
  const groups = rest === undefined ? front : [...front, ...Array(8 - front.length - back.length).fill("0"), ...back];
  return groups.map((group) => group.padStart(4, "0")).join("");
}

function ipv4Hex(address: string): string {
  return address
    .split(".")
    .map((part) => Number(part).toString(16).padStart(2, "0"))
    .join("");
}

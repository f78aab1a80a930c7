// Joins two byte streams: what one reads the other writes, with backpressure both ways.
// The gRPC bridge and a `guestctl proxy` both end in this.
import type { Duplex } from "node:stream";

/**
 * Pipes `a` and `b` into each other. An end (EOF) is passed on as an end, so a
 * half-close reaches the other side; an error or a close on either side destroys both.
 * Resolves once both are closed.
 */
export function splice(a: Duplex, b: Duplex): Promise<void> {
  return new Promise((resolve) => {
    if (a.destroyed || b.destroyed) {
      a.destroy();
      b.destroy();
      resolve();
      return;
    }
    let open = 2;
    const onClose = (other: Duplex) => () => {
      other.destroy();
      open -= 1;
      if (open === 0) resolve();
    };
    const onError = () => {
      a.destroy();
      b.destroy();
    };
    a.once("close", onClose(b));
    b.once("close", onClose(a));
    a.on("error", onError);
    b.on("error", onError);
    a.pipe(b);
    b.pipe(a);
  });
}

// A host that cancels many calls keeps its connection. grpc-js resets the stream of every
// call cancelled before its trailers arrived, and the host cancels in normal work (each
// copy-from once its final `end` is in); nghttp2's rapid-reset guard used to answer more
// than 1000 resets (plus 33 a second) with GOAWAY INTERNAL_ERROR, failing every call on
// the connection with "Session closed with error code 2" (see
// packages/guest/src/transport/http2-stream-resets.ts). The resets are sent here by hand, as fast
// as one connection takes them, so the count alone decides: no timing is involved.
import { constants } from "node:http2";
import { encodeRequest, GUEST_METHODS, grpcFrame, RawGrpcConnection, startAgent } from "@guestkit/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";

// Three times the guard's burst: it would need a minute of refill to let these through.
const RESETS = 3000;

let agent: Awaited<ReturnType<typeof startAgent>>;
let connection: RawGrpcConnection | undefined;

beforeAll(async () => {
  agent = await startAgent();
});

afterAll(async () => {
  await connection?.close();
  await agent.stop();
});

it(`${RESETS} calls reset by the client on one connection: the connection stays up and serves`, async () => {
  connection = await RawGrpcConnection.open(agent.socketPath);
  const { session } = connection;
  const goaways: number[] = [];
  session.on("goaway", (code: number) => goaways.push(code));
  const request = grpcFrame(encodeRequest("statPath", { path: "/" }));
  for (let sent = 0; sent < RESETS && connection.alive; sent++) {
    const stream = session.request({
      ":method": "POST",
      ":path": GUEST_METHODS.statPath.path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.on("error", () => {});
    stream.end(request);
    stream.close(constants.NGHTTP2_CANCEL);
    // Every 100 resets, one call answered: the frames went out and were read, so neither
    // side's writes pile up beyond the socket (a Node HTTP/2 session stops reading while
    // a write of its own is pending, and with thousands of unanswered frames queued each
    // way the two froze). 3,000 resets still arrive within a few seconds, far faster than
    // the guard's refill of 33 a second.
    if (sent % 100 === 99) await connection.call(GUEST_METHODS.statPath.path, { body: [request] });
  }
  const answer = await connection.call(GUEST_METHODS.statPath.path, { body: [request] });
  expect(goaways).toEqual([]);
  expect(connection.alive).toBe(true);
  expect(answer.grpcStatus).toBe(0);
  expect(agent.stderr(), agent.stderr()).not.toContain("HTTP/2 connection failed");
}, 60_000);

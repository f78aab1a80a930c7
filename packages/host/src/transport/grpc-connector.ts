// The hook that lets grpc-js open the agent's socket itself, with no local bridge: its
// channel credentials' connector (`_createSecureConnector`) is handed each freshly
// connected socket before HTTP/2 starts on it, and may run a handshake on it first.
//
// That is internal grpc-js API (pinned to ~1.14 in package.json). If a grpc-js release
// stops calling it, hvsock connections send no CONNECT line and fail at once, and
// grpc-connector.test.ts fails: it checks on a real connection that the hook ran.
import type { Socket } from "node:net";
import * as grpc from "@grpc/grpc-js";

type SecureConnector = ReturnType<grpc.ChannelCredentials["_createSecureConnector"]>;

/**
 * Makes `socket` ready to carry HTTP/2 (e.g. the hybrid-vsock handshake) and resolves
 * with the socket to use; rejecting fails grpc-js's connection attempt.
 */
export type PrepareSocket = (socket: Socket) => Promise<Socket>;

/**
 * Channel credentials without TLS whose connector hands every socket grpc-js connects
 * to `prepare` before HTTP/2 starts on it. Equal only to themselves, so grpc-js never
 * shares a subchannel made with them with another channel.
 */
export function createConnectorCredentials(prepare: PrepareSocket): grpc.ChannelCredentials {
  return new ConnectorCredentials(prepare);
}

class ConnectorCredentials extends grpc.ChannelCredentials {
  readonly #prepare: PrepareSocket;

  constructor(prepare: PrepareSocket) {
    super();
    this.#prepare = prepare;
  }

  override compose(): grpc.ChannelCredentials {
    // Call credentials would ride on a channel without TLS; the token goes in metadata.
    throw new Error("connector credentials cannot carry call credentials");
  }

  override _isSecure(): boolean {
    return false;
  }

  override _equals(other: grpc.ChannelCredentials): boolean {
    return other === this;
  }

  override _createSecureConnector(
    ..._args: Parameters<grpc.ChannelCredentials["_createSecureConnector"]>
  ): SecureConnector {
    const prepare = this.#prepare;
    return {
      async connect(socket: Socket) {
        return { socket: await prepare(socket), secure: false };
      },
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => grpc.CallCredentials.createEmpty(),
      destroy() {},
    };
  }
}

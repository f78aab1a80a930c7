// The one place that knows how big messages and chunks are. Both sides import these.

/** Bytes of file or output data per message we send. Well under the receive limit. */
export const CHUNK_SIZE = 256 * 1024;

/**
 * Largest message either side accepts. Existing hosts send 32 KiB chunks and gRPC's
 * default limit is 4 MiB; ours is higher so a peer configured for bigger chunks is
 * still accepted, and bounded so one message cannot take unbounded memory.
 */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** The vsock port the agent listens on and clients dial by default. */
export const DEFAULT_PORT = 2222;

/** The fully qualified service name, as reflection and health report it. */
export const SERVICE_NAME = "guest.GuestService";

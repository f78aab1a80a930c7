// How an agent tells a client that CopyToGuest accepts batches (CopyToGuestRequest.batch).
//
// An agent that does not know the batch field would drop it without a word (protobuf
// skips unknown fields, and a Go oneof with an unknown case is simply empty), so a client
// must not send a batch on trust. The agent sends this header with the call's initial
// metadata as soon as the call starts; a client begins in the original framing and
// switches to batches once the header has arrived, which costs no round trip. Existing
// agents never send it, so against them the client stays in the original framing.

/** Response-header key by which an agent announces CopyToGuest batches. */
export const COPY_BATCH_METADATA_KEY = "guestkit-copy-batch";

/** The value of COPY_BATCH_METADATA_KEY meaning "batches as of this protocol version". */
export const COPY_BATCH_METADATA_VALUE = "1";

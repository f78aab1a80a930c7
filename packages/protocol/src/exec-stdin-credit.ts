// Exec stdin credit (ExecResponse.stdin_consumed in guest.proto).
//
// Messages on one stream arrive in order, and HTTP/2 flow control holds a client's
// writes once the agent stops reading. An agent that read an Exec stream only as fast
// as the command took its stdin therefore left `signal`, `resize` and `stdin_close`
// queued behind stdin the command never read: after 32 MiB of stdin to a command that
// does not read, kill("KILL") was not delivered at all. With the credit, the agent reads
// every message as it arrives and queues stdin itself, and the client keeps what it has
// sent and the command has not taken within EXEC_STDIN_WINDOW_BYTES (limits.ts), so the
// agent never has a reason to stop reading and a control message waits behind at most
// that much stdin on the wire.

/**
 * The capability an agent announces when it sends ExecResponse.stdin_consumed and reads
 * Exec requests ahead of the command's stdin. A client limits its stdin by the credit
 * only against an agent that announced it: against any other, it would wait forever.
 */
export const EXEC_STDIN_CREDIT_CAPABILITY = "exec-stdin-credit";

// The one place that knows how big messages and chunks are. Both sides import these.

/** Bytes of file or output data per message we send. Well under the receive limit. */
export const CHUNK_SIZE = 256 * 1024;

/**
 * Largest message either side accepts. Existing hosts send 32 KiB chunks and gRPC's
 * default limit is 4 MiB; ours is higher so a peer configured for bigger chunks is
 * still accepted, and bounded so one message cannot take unbounded memory.
 */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/**
 * HTTP/2 flow-control window, per stream and per connection, that each side grants its
 * peer (the agent for uploads, the host client for downloads and output). HTTP/2's
 * default of 64 KiB lets a sender put only 64 KiB on the wire before it must wait for
 * the receiver's event loop to answer with a WINDOW_UPDATE: that round trip, not the
 * socket, was what limited bulk transfers. Measured in bench/: 1 GiB uploads and
 * downloads were fastest from about 1 MiB up, with no gain beyond 8 MiB.
 *
 * The connection window does not bound what a peer can make the receiver buffer: Node
 * replenishes it as data arrives, also for a stream nobody reads, whose data then waits
 * in that stream. Only the stream window does, per stream, and its data costs more than
 * its size, because each piece is a view that keeps Node's whole socket read alive: a
 * client that filled the agent's 8 MiB window on 100 Exec streams whose commands read
 * nothing cost the agent 11.5 MiB each. So the agent keeps its streams read (stdin has
 * its own credit, EXEC_STDIN_WINDOW_BYTES) and bounds their number
 * (MAX_CONCURRENT_STREAMS).
 */
export const HTTP2_WINDOW_BYTES = 8 * 1024 * 1024;

/**
 * The HTTP/2 window (per stream and for the connection) the host client grants the
 * agent, for command output and downloads. It must stay below what the socket between
 * them holds (a Linux Unix socket: about 208 KiB, net.core.wmem_default; vsock's buffer
 * is 256 KiB): a Node HTTP/2 session stops reading its socket while one of its writes is
 * pending (node_http2.cc, Http2Session::MaybeStopReading), so if both sides may queue
 * more than the socket holds, each can wait for the other to read and the connection
 * freezes. The agent's 8 MiB window (uploads, stdin) takes one direction past that
 * size; this one keeps the agent's queued output small enough that its writes always
 * finish and it reads again. Measured on one connection carrying both: 256 KiB froze
 * tests/reliability/simultaneous-transfers.test.ts and concurrent-copies.test.ts
 * (2 of 2 runs), 128 KiB passed. Against the 64 KiB default, 128 KiB moved stdout
 * streaming from about 200 to 245 MiB/s and copyFrom from 220 to 265 MiB/s.
 */
export const HOST_HTTP2_WINDOW_BYTES = 128 * 1024;

/**
 * Calls the agent serves at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
 * With the per-stream bounds (at most two messages of output, stream-writer.ts; a window
 * of stdin, EXEC_STDIN_WINDOW_BYTES) it is what bounds the agent's memory per connection:
 * a stalled stream costs about 0.6 MiB of RSS, a command that reads no stdin from a host
 * that honours the credit about 0.9 MiB, so a connection full of stalled streams costs
 * about 0.6 to 0.9 GiB (2000 stalled downloads took 8 GiB without the bound). A Node
 * client (grpc-js, the host library) holds a call past the limit until a stream ends,
 * so at the limit a new call, a StatPath too, waits; the peers' counts differ for a
 * moment while a stream closes, and a call sent in that moment is refused (grpc-js:
 * RESOURCE_EXHAUSTED). Far above what hosts run on one connection (tests run 300 at once).
 */
export const MAX_CONCURRENT_STREAMS = 1000;

/**
 * Exec stdin a client keeps in flight: it sends another stdin message (at most
 * CHUNK_SIZE) only while less than this has been sent and not yet consumed by the
 * command (ExecResponse.stdin_consumed; exec-stdin-credit.ts), and the agent queues at
 * most this and one message per command. It only has to cover the round trip of the
 * credit: 512 MiB of stdin into `wc -c` moved at the same rate with 256 KiB, 512 KiB and
 * 1 MiB and without the credit (98-109 MiB/s, a loaded machine, 4 alternated runs each).
 */
export const EXEC_STDIN_WINDOW_BYTES = 512 * 1024;

/**
 * The RFC 9218 priority a host sends with every call to an agent that announces the
 * `call-priority` capability (the `priority` request header):
 * the default urgency, and incremental. Node's HTTP/2 server (nghttp2 1.70) schedules the
 * data of streams of one urgency that are not incremental oldest first: a newer stream
 * sends only when every older one has nothing to send or no window left. A StatPath on a
 * connection carrying 30 downloads waited 11 s, until they had finished; with every call
 * incremental the streams take turns, and it answered in 17 ms. Existing hosts send no
 * such header and keep the oldest-first order.
 */
export const CALL_PRIORITY = "u=3, i";

/**
 * A ticket for a data connection (data-connection.ts) is good for this long, and a
 * connection that began like one must have sent its magic and ticket within it.
 */
export const DATA_CONNECTION_WAIT_MS = 5000;

/**
 * A copy moves on a data connection only when it is a tree or a file of at least this
 * size: below it, the extra connection costs more than it saves.
 */
export const DATA_CONNECTION_MIN_BYTES = 1024 * 1024;

/**
 * Files up to this size travel whole: read, held and written in one go with synchronous
 * calls on both sides (one event-loop turn per file instead of a thread-pool round trip
 * per system call), which is what makes trees of many small files fast.
 */
export const SMALL_FILE_BYTES = 64 * 1024;

/**
 * Bounds of one batch of whole entries (CopyToGuestBatch, CopyFromGuestBatch): a sender
 * fills a batch up to these, a receiver refuses one beyond them. A batch carries only
 * files of at most SMALL_FILE_BYTES, directories and symlinks. A few hundred KiB keeps a
 * batch well under MAX_MESSAGE_BYTES and small enough that the receiver writes one while
 * the next is on its way; the entry bound caps what a batch of empty entries makes the
 * receiver decode at once.
 */
export const MAX_BATCH_BYTES = 256 * 1024;
export const MAX_BATCH_ENTRIES = 1024;

/**
 * How much of each text a peer sends back the receiver keeps, in UTF-16 code units: the
 * peer is not trusted to keep them short, and every cut goes through cutText. A path
 * (an entry, the path of an error, a symlink target) is kept up to PATH_MAX; a message
 * (an error, the reason an entry was skipped, why a command could not start) up to
 * MAX_GUEST_MESSAGE (the path it is about travels beside it, or the receiver knows it);
 * a machine-readable name (an errno name, "SIZE_MISMATCH", a signal name) up to
 * MAX_GUEST_CODE. Within a message the host writes itself, a guest path is quoted up to
 * MAX_QUOTED_PATH, and CommandFailedError quotes the last MAX_STDERR_EXCERPT of stderr.
 */
export const MAX_GUEST_PATH = 4096;
export const MAX_GUEST_MESSAGE = 1000;
export const MAX_GUEST_CODE = 100;
export const MAX_QUOTED_PATH = 300;
export const MAX_STDERR_EXCERPT = 500;

/**
 * Longest entry path or symlink target, and longest single name, in UTF-8 bytes, that a
 * receiver accepts from a copy (Linux PATH_MAX and NAME_MAX): the host refuses an entry
 * beyond them before it touches its disk.
 */
export const MAX_PATH_BYTES = 4096;
export const MAX_NAME_BYTES = 255;

/**
 * Largest synthetic file (procfs, sysfs...; see packages/copy/src/synthetic-files.ts) a copy reads: such a
 * file is held whole in memory before its header, since its size is known only once it
 * has been read. Far above what /proc and /sys files hold (a few KiB; /proc/kallsyms
 * some MiB); /proc/kcore, which declares the whole address space, is refused.
 */
export const MAX_SYNTHETIC_FILE_BYTES = 64 * 1024 * 1024;

/** The vsock port the agent listens on and clients dial by default. */
export const DEFAULT_PORT = 2222;

/** The fully qualified service name, as reflection and health report it. */
export const SERVICE_NAME = "guest.GuestService";

/** Output each detached command keeps (the most recent; older output is dropped). */
export const DETACHED_OUTPUT_BYTES = 1024 * 1024;

/**
 * Detached commands the agent holds at once, running or exited: with DETACHED_OUTPUT_BYTES
 * each, the bound on what their output takes (64 MiB). Past it, the oldest exited one is
 * forgotten; when all of them run, a new one is refused (RESOURCE_EXHAUSTED).
 */
export const MAX_DETACHED_COMMANDS = 64;

/** How long an exited detached command stays listed with its exit. */
export const DETACHED_EXITED_KEPT_MS = 60 * 60 * 1000;

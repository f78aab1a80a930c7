// The `guest` protocol: what a host uses to run commands in a microVM and move files in and out.
//
// Wire compatibility: every message, field number and type that existing hosts use
// (docs/wire-protocol.md) is kept exactly. Everything guestkit adds is a NEW field number,
// so a peer that knows only the original fields still works: it ignores what it does
// not know, and everything it relies on is still sent.
//
// Capabilities: a client uses an addition only when the agent announced it. A guestkit
// agent puts the response header `guestkit-capabilities` (capability names separated by
// commas) on every call it answers; a client learns the list with one health check when
// a connection opens. No header means an agent that knows only the original fields: the
// client then sends only those. The names (packages/protocol/src/capabilities.ts):
//   exec-control      Exec: stdin_close, signal, resize, user, terminal size; started, exit.
//   copy-multi-entry  CopyToGuest: many entries per stream, entries_written, symlinks, chown.
//                     Without it the agent takes ONE entry per stream and answers after
//                     the first `end`: a client sends each entry on a stream of its own.
//   copy-batch        CopyToGuestRequest.batch accepted, CopyFromGuestRequest.batch honoured.
//   keepalive-pings   HTTP/2 pings accepted at any rate, with or without calls. Without it
//                     a client assumes gRPC's default server policy (one ping per 5 minutes,
//                     none without calls) and checks liveness with calls instead.
//   port-forward      ForwardPort is served.
//   detached          StartDetached, ListDetached, AttachDetached and ControlDetached.
//   exec-stdin-credit ExecResponse.stdin_consumed is sent; stdin is queued by the agent.
//   call-priority     streams are scheduled by the RFC 9218 `priority` request header: a
//                     client sends CALL_PRIORITY with every call so that calls take turns.
//   data-connection   CopyToGuest and CopyFromGuest move their messages, Exec a
//                     command's heavy output and ForwardPort its bytes, on a data
//                     connection beside HTTP/2 when the client asks (below).
//
// Data connections (packages/protocol/src/data-connection.ts). HTTP/2 flow control in
// Node holds bulk data well below what the socket carries, so a copy may move its
// messages on a connection of its own:
// 1. The client sends the request header `guestkit-data-connection: 1` on the call.
// 2. An agent that takes it answers with the response header `guestkit-data-ticket`: 64
//    hex digits (32 random bytes), good for ONE connection within
//    DATA_CONNECTION_WAIT_MS (5000) ms. CopyToGuest always takes it; CopyFromGuest only
//    for a directory or a file of at least DATA_CONNECTION_MIN_BYTES (1 MiB). No ticket
//    in the headers: the call goes on in-band.
// 3. The client opens another connection to the same port by the same way (another
//    CONNECT through a hybrid-vsock socket; another vsock, Unix or TCP connection) and
//    writes `GKDATA1\n` and the ticket's 32 bytes. The agent tells it from HTTP/2 by its
//    first byte. An unknown, used or late ticket gets the connection closed.
// 4. On it, the call's messages (CopyToGuestRequest from the client, or
//    CopyFromGuestResponse from the agent) travel as frames: a 4-byte big-endian length,
//    then the message, within the same limits as in-band; a frame of length 0 ends the
//    stream (neither side half-closes the connection: a VMM would end both directions).
//    A connection that ends without that frame was lost: the transfer fails, and the
//    entry being written is removed. The call's own stream carries no messages.
// 5. The CopyToGuest answer, every status and cancellation stay on the call; the data
//    connection lives no longer than its call.
// Exec takes a data connection later, only for commands with a lot of output, so that
// short commands pay nothing: a client asks with the same request header; once the
// command's output on the call passes DATA_CONNECTION_MIN_BYTES, the agent sends
// ExecResponse.data_ticket, and from then on the command's stdout and stderr messages
// travel on the data connection instead (in order, after those already sent). The
// agent writes the end frame once the output is over, and only then sends `exit` and
// `exit_code` on the call; the client reports the exit only after that end frame. This
// ticket is good until the call ends (a client whose reader stopped has not read it
// yet; the command is held back meanwhile, as by a client that does not read). A data
// connection that is lost fails the call with UNAVAILABLE and ends the command. stdin,
// resize and signals stay on the call.
// ForwardPort takes one as copies do (the ticket in the response headers), once the
// agent's TCP connection is up; `connected` follows the data connection's arrival, and
// then the `data` messages go both ways on it, each direction ended by its end frame
// (EOF of that direction; neither side half-closes the data connection, which a VMM
// takes for the end of both). The call carries `connected` and the outcome.
//
// Limits. Each is written NAME (value), NAME as exported by limits.ts in the protocol
// package; packages/protocol/test/proto-limits.test.ts fails when a value here differs.
//   MAX_MESSAGE_BYTES (16 MiB)  the largest message either side accepts; existing hosts
//                               send 32 KiB chunks and gRPC's default limit is 4 MiB.
//   CHUNK_SIZE (256 KiB)        the most data a guestkit peer puts in one `data`,
//                               `stdout` or `stderr` message (files, output, forwards).
//   SMALL_FILE_BYTES (64 KiB)   the largest file a batch entry carries.
//   MAX_BATCH_BYTES (256 KiB)   the file data of one batch, all entries together.
//   MAX_BATCH_ENTRIES (1024)    the entries of one batch.
//   MAX_PATH_BYTES (4096) and MAX_NAME_BYTES (255)  an entry path or symlink target, and
//                               one name in it, in UTF-8 bytes (Linux PATH_MAX, NAME_MAX).
//   MAX_SYNTHETIC_FILE_BYTES (64 MiB)  the largest procfs/sysfs file CopyFromGuest sends.
// A receiver refuses a message beyond them (a batch beyond its bounds is a PROTOCOL
// error); the texts a peer sends (paths, messages, codes) the receiver keeps only up to
// bounds of its own (limits.ts: MAX_GUEST_PATH and the others).
//
// In-band errors. The calls that move files report failures in their messages with
// status OK, as existing hosts expect; a gRPC status means the call itself failed (a bad
// request, a failure of the agent). A machine-readable code travels beside each error
// text (error_code, code): an errno name as Linux names it ("ENOENT", "EACCES",
// "ENOSPC"; "EIO" for a failure that carried no errno; "EINVAL" for a path the agent
// refuses: empty, not absolute, or holding a NUL byte), or one of guestkit's own:
//   SIZE_MISMATCH  a file's data did not match its declared size;
//   PROTOCOL       the peer broke the framing (messages out of order, beyond a limit);
//   SPECIAL_FILE   a FIFO, socket or device, which is never opened;
//   CHANGED        an entry replaced by another while the tree was walked.
// (packages/protocol/src/error-codes.ts; the errno names that map to a gRPC status are
// listed there, the same for both sides.)

// @generated by protoc-gen-es v2.17.0 with parameter "target=ts,import_extension=js"
// @generated from file guest/guest.proto (package guest, syntax proto3)
/* eslint-disable */

import type { GenEnum, GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import { enumDesc, fileDesc, messageDesc, serviceDesc } from "@bufbuild/protobuf/codegenv2";
import type { Message } from "@bufbuild/protobuf";

/**
 * Describes the file guest/guest.proto.
 */
export const file_guest_guest: GenFile = /*@__PURE__*/
  fileDesc("ChFndWVzdC9ndWVzdC5wcm90bxIFZ3Vlc3QixAEKC0V4ZWNSZXF1ZXN0EiEKBXN0YXJ0GAEgASgLMhAuZ3Vlc3QuRXhlY1N0YXJ0SAASDwoFc3RkaW4YAiABKAxIABIjCgZyZXNpemUYAyABKAsyES5ndWVzdC5XaW5kb3dTaXplSAASLAoLc3RkaW5fY2xvc2UYBCABKAsyFS5ndWVzdC5FeGVjU3RkaW5DbG9zZUgAEiMKBnNpZ25hbBgFIAEoCzIRLmd1ZXN0LkV4ZWNTaWduYWxIAEIJCgdyZXF1ZXN0ItMBCglFeGVjU3RhcnQSDwoHY29tbWFuZBgBIAMoCRILCgN0dHkYAiABKAgSJgoDZW52GAMgAygLMhkuZ3Vlc3QuRXhlY1N0YXJ0LkVudkVudHJ5EgsKA2N3ZBgEIAEoCRIXCg90aW1lb3V0X3NlY29uZHMYBSABKAUSDAoEcm93cxgGIAEoDRIMCgRjb2xzGAcgASgNEgwKBHVzZXIYCSABKAkaKgoIRW52RW50cnkSCwoDa2V5GAEgASgJEg0KBXZhbHVlGAIgASgJOgI4AUoECAgQCSIoCgpXaW5kb3dTaXplEgwKBHJvd3MYASABKA0SDAoEY29scxgCIAEoDSIQCg5FeGVjU3RkaW5DbG9zZSIaCgpFeGVjU2lnbmFsEgwKBG5hbWUYASABKAkizAEKDEV4ZWNSZXNwb25zZRIQCgZzdGRvdXQYASABKAxIABIQCgZzdGRlcnIYAiABKAxIABITCglleGl0X2NvZGUYAyABKAVIABIlCgdzdGFydGVkGAQgASgLMhIuZ3Vlc3QuRXhlY1N0YXJ0ZWRIABIfCgRleGl0GAUgASgLMg8uZ3Vlc3QuRXhlY0V4aXRIABIYCg5zdGRpbl9jb25zdW1lZBgGIAEoBEgAEhUKC2RhdGFfdGlja2V0GAcgASgJSABCCgoIcmVzcG9uc2UiGgoLRXhlY1N0YXJ0ZWQSCwoDcGlkGAEgASgNIoABCghFeGVjRXhpdBIMCgRjb2RlGAEgASgFEg4KBnNpZ25hbBgCIAEoCRIRCgl0aW1lZF9vdXQYAyABKAgSGAoQb3V0cHV0X3RydW5jYXRlZBgEIAEoCBIUCgxzdGFydF9mYWlsZWQYBSABKAgSEwoLc3RhcnRfZXJyb3IYBiABKAkiqQEKEkNvcHlUb0d1ZXN0UmVxdWVzdBIoCgVzdGFydBgBIAEoCzIXLmd1ZXN0LkNvcHlUb0d1ZXN0U3RhcnRIABIOCgRkYXRhGAIgASgMSAASJAoDZW5kGAMgASgLMhUuZ3Vlc3QuQ29weVRvR3Vlc3RFbmRIABIoCgViYXRjaBgEIAEoCzIXLmd1ZXN0LkNvcHlUb0d1ZXN0QmF0Y2hIAEIJCgdyZXF1ZXN0IkEKEENvcHlUb0d1ZXN0QmF0Y2gSLQoHZW50cmllcxgBIAMoCzIcLmd1ZXN0LkNvcHlUb0d1ZXN0QmF0Y2hFbnRyeSJNChVDb3B5VG9HdWVzdEJhdGNoRW50cnkSJgoFc3RhcnQYASABKAsyFy5ndWVzdC5Db3B5VG9HdWVzdFN0YXJ0EgwKBGRhdGEYAiABKAwiwgEKEENvcHlUb0d1ZXN0U3RhcnQSDAoEcGF0aBgBIAEoCRIMCgRtb2RlGAIgASgNEg4KBmlzX2RpchgDIAEoCBIMCgRzaXplGAQgASgDEg0KBW10aW1lGAUgASgDEgsKA3VpZBgGIAEoDRILCgNnaWQYByABKA0SDQoFY2hvd24YCCABKAgSEgoKaXNfc3ltbGluaxgJIAEoCBITCgtsaW5rX3RhcmdldBgKIAEoCRITCgttdGltZV9uYW5vcxgLIAEoDSIQCg5Db3B5VG9HdWVzdEVuZCKNAQoTQ29weVRvR3Vlc3RSZXNwb25zZRIPCgdzdWNjZXNzGAEgASgIEg0KBWVycm9yGAIgASgJEhUKDWJ5dGVzX3dyaXR0ZW4YAyABKAMSFwoPZW50cmllc193cml0dGVuGAQgASgDEhIKCmVycm9yX3BhdGgYBSABKAkSEgoKZXJyb3JfY29kZRgGIAEoCSJJChRDb3B5RnJvbUd1ZXN0UmVxdWVzdBIMCgRwYXRoGAEgASgJEhQKDGZvbGxvd19saW5rcxgCIAEoCBINCgViYXRjaBgDIAEoCCKRAgoVQ29weUZyb21HdWVzdFJlc3BvbnNlEiwKBmhlYWRlchgBIAEoCzIaLmd1ZXN0LkNvcHlGcm9tR3Vlc3RIZWFkZXJIABIOCgRkYXRhGAIgASgMSAASJgoDZW5kGAMgASgLMhcuZ3Vlc3QuQ29weUZyb21HdWVzdEVuZEgAEioKBWVycm9yGAQgASgLMhkuZ3Vlc3QuQ29weUZyb21HdWVzdEVycm9ySAASLgoHc2tpcHBlZBgFIAEoCzIbLmd1ZXN0LkNvcHlGcm9tR3Vlc3RTa2lwcGVkSAASKgoFYmF0Y2gYBiABKAsyGS5ndWVzdC5Db3B5RnJvbUd1ZXN0QmF0Y2hIAEIKCghyZXNwb25zZSJFChJDb3B5RnJvbUd1ZXN0QmF0Y2gSLwoHZW50cmllcxgBIAMoCzIeLmd1ZXN0LkNvcHlGcm9tR3Vlc3RCYXRjaEVudHJ5IlMKF0NvcHlGcm9tR3Vlc3RCYXRjaEVudHJ5EioKBmhlYWRlchgBIAEoCzIaLmd1ZXN0LkNvcHlGcm9tR3Vlc3RIZWFkZXISDAoEZGF0YRgCIAEoDCK2AQoTQ29weUZyb21HdWVzdEhlYWRlchIMCgRwYXRoGAEgASgJEgwKBG1vZGUYAiABKA0SDgoGaXNfZGlyGAMgASgIEhIKCmlzX3N5bWxpbmsYBCABKAgSEwoLbGlua190YXJnZXQYBSABKAkSDAoEc2l6ZRgGIAEoAxINCgVtdGltZRgHIAEoAxILCgN1aWQYCCABKA0SCwoDZ2lkGAkgASgNEhMKC210aW1lX25hbm9zGAogASgNIkMKEENvcHlGcm9tR3Vlc3RFbmQSDQoFZmluYWwYASABKAgSDwoHcGFydGlhbBgCIAEoCBIPCgdjaGFuZ2VkGAMgASgIIkEKEkNvcHlGcm9tR3Vlc3RFcnJvchIPCgdtZXNzYWdlGAEgASgJEgwKBHBhdGgYAiABKAkSDAoEY29kZRgDIAEoCSJCChRDb3B5RnJvbUd1ZXN0U2tpcHBlZBIMCgRwYXRoGAEgASgJEg4KBnJlYXNvbhgCIAEoCRIMCgRjb2RlGAMgASgJIjUKD1N0YXRQYXRoUmVxdWVzdBIMCgRwYXRoGAEgASgJEhQKDGZvbGxvd19saW5rcxgCIAEoCCKNAgoQU3RhdFBhdGhSZXNwb25zZRIOCgZleGlzdHMYASABKAgSDgoGaXNfZGlyGAIgASgIEg8KB2lzX2ZpbGUYAyABKAgSEgoKaXNfc3ltbGluaxgEIAEoCBITCgtsaW5rX3RhcmdldBgFIAEoCRIMCgRtb2RlGAYgASgNEgwKBHNpemUYByABKAMSDQoFZXJyb3IYCCABKAkSDQoFbXRpbWUYCSABKAMSEwoLbXRpbWVfbmFub3MYCiABKA0SCwoDdWlkGAsgASgNEgsKA2dpZBgMIAEoDRIiCglmaWxlX3R5cGUYDSABKA4yDy5ndWVzdC5GaWxlVHlwZRISCgplcnJvcl9jb2RlGA4gASgJIn8KEkZvcndhcmRQb3J0UmVxdWVzdBIoCgVzdGFydBgBIAEoCzIXLmd1ZXN0LkZvcndhcmRQb3J0U3RhcnRIABIOCgRkYXRhGAIgASgMSAASJAoDZW9mGAMgASgLMhUuZ3Vlc3QuRm9yd2FyZFBvcnRFb2ZIAEIJCgdyZXF1ZXN0Ii4KEEZvcndhcmRQb3J0U3RhcnQSDAoEaG9zdBgBIAEoCRIMCgRwb3J0GAIgASgNIhAKDkZvcndhcmRQb3J0RW9mIsIBChNGb3J3YXJkUG9ydFJlc3BvbnNlEjAKCWNvbm5lY3RlZBgBIAEoCzIbLmd1ZXN0LkZvcndhcmRQb3J0Q29ubmVjdGVkSAASDgoEZGF0YRgCIAEoDEgAEiQKA2VvZhgDIAEoCzIVLmd1ZXN0LkZvcndhcmRQb3J0RW9mSAASNwoNY29ubmVjdF9lcnJvchgEIAEoCzIeLmd1ZXN0LkZvcndhcmRQb3J0Q29ubmVjdEVycm9ySABCCgoIcmVzcG9uc2UiJwoURm9yd2FyZFBvcnRDb25uZWN0ZWQSDwoHYWRkcmVzcxgBIAEoCSI4ChdGb3J3YXJkUG9ydENvbm5lY3RFcnJvchIMCgRjb2RlGAEgASgJEg8KB21lc3NhZ2UYAiABKAkiVAoUU3RhcnREZXRhY2hlZFJlcXVlc3QSHwoFc3RhcnQYASABKAsyEC5ndWVzdC5FeGVjU3RhcnQSDAoEbmFtZRgCIAEoCRINCgVzdGRpbhgDIAEoCCJPChVTdGFydERldGFjaGVkUmVzcG9uc2USCgoCaWQYASABKAkSCwoDcGlkGAIgASgNEh0KBGV4aXQYAyABKAsyDy5ndWVzdC5FeGVjRXhpdCIVChNMaXN0RGV0YWNoZWRSZXF1ZXN0IkAKFExpc3REZXRhY2hlZFJlc3BvbnNlEigKCGNvbW1hbmRzGAEgAygLMhYuZ3Vlc3QuRGV0YWNoZWRDb21tYW5kIr0BCg9EZXRhY2hlZENvbW1hbmQSCgoCaWQYASABKAkSCwoDcGlkGAIgASgNEg8KB2NvbW1hbmQYAyABKAkSDwoHcnVubmluZxgEIAEoCBIVCg1zdGFydGVkX2F0X21zGAUgASgDEhQKDGV4aXRlZF9hdF9tcxgGIAEoAxIdCgRleGl0GAcgASgLMg8uZ3Vlc3QuRXhlY0V4aXQSFgoOb3V0cHV0X2Ryb3BwZWQYCCABKAgSCwoDdHR5GAkgASgIItkBChVBdHRhY2hEZXRhY2hlZFJlcXVlc3QSLAoGYXR0YWNoGAEgASgLMhouZ3Vlc3QuQXR0YWNoRGV0YWNoZWRTdGFydEgAEg8KBXN0ZGluGAIgASgMSAASLAoLc3RkaW5fY2xvc2UYAyABKAsyFS5ndWVzdC5FeGVjU3RkaW5DbG9zZUgAEiMKBnNpZ25hbBgEIAEoCzIRLmd1ZXN0LkV4ZWNTaWduYWxIABIjCgZyZXNpemUYBSABKAsyES5ndWVzdC5XaW5kb3dTaXplSABCCQoHcmVxdWVzdCIxChNBdHRhY2hEZXRhY2hlZFN0YXJ0EgoKAmlkGAEgASgJEg4KBmZvbGxvdxgCIAEoCCKaAQoWQXR0YWNoRGV0YWNoZWRSZXNwb25zZRIQCgZzdGRvdXQYASABKAxIABIQCgZzdGRlcnIYAiABKAxIABIvCgdkcm9wcGVkGAMgASgLMhwuZ3Vlc3QuRGV0YWNoZWRPdXRwdXREcm9wcGVkSAASHwoEZXhpdBgEIAEoCzIPLmd1ZXN0LkV4ZWNFeGl0SABCCgoIcmVzcG9uc2UiFwoVRGV0YWNoZWRPdXRwdXREcm9wcGVkImIKFkNvbnRyb2xEZXRhY2hlZFJlcXVlc3QSCgoCaWQYASABKAkSEAoGc2lnbmFsGAIgASgJSAASDgoEa2lsbBgDIAEoCEgAEhAKBnJlbW92ZRgEIAEoCEgAQggKBmFjdGlvbiIZChdDb250cm9sRGV0YWNoZWRSZXNwb25zZSrNAQoIRmlsZVR5cGUSGQoVRklMRV9UWVBFX1VOU1BFQ0lGSUVEEAASFQoRRklMRV9UWVBFX1JFR1VMQVIQARIXChNGSUxFX1RZUEVfRElSRUNUT1JZEAISFQoRRklMRV9UWVBFX1NZTUxJTksQAxISCg5GSUxFX1RZUEVfRklGTxAEEhQKEEZJTEVfVFlQRV9TT0NLRVQQBRIZChVGSUxFX1RZUEVfQ0hBUl9ERVZJQ0UQBhIaChZGSUxFX1RZUEVfQkxPQ0tfREVWSUNFEAcymgUKDEd1ZXN0U2VydmljZRIzCgRFeGVjEhIuZ3Vlc3QuRXhlY1JlcXVlc3QaEy5ndWVzdC5FeGVjUmVzcG9uc2UoATABEkYKC0NvcHlUb0d1ZXN0EhkuZ3Vlc3QuQ29weVRvR3Vlc3RSZXF1ZXN0GhouZ3Vlc3QuQ29weVRvR3Vlc3RSZXNwb25zZSgBEkwKDUNvcHlGcm9tR3Vlc3QSGy5ndWVzdC5Db3B5RnJvbUd1ZXN0UmVxdWVzdBocLmd1ZXN0LkNvcHlGcm9tR3Vlc3RSZXNwb25zZTABEjsKCFN0YXRQYXRoEhYuZ3Vlc3QuU3RhdFBhdGhSZXF1ZXN0GhcuZ3Vlc3QuU3RhdFBhdGhSZXNwb25zZRJICgtGb3J3YXJkUG9ydBIZLmd1ZXN0LkZvcndhcmRQb3J0UmVxdWVzdBoaLmd1ZXN0LkZvcndhcmRQb3J0UmVzcG9uc2UoATABEkoKDVN0YXJ0RGV0YWNoZWQSGy5ndWVzdC5TdGFydERldGFjaGVkUmVxdWVzdBocLmd1ZXN0LlN0YXJ0RGV0YWNoZWRSZXNwb25zZRJHCgxMaXN0RGV0YWNoZWQSGi5ndWVzdC5MaXN0RGV0YWNoZWRSZXF1ZXN0GhsuZ3Vlc3QuTGlzdERldGFjaGVkUmVzcG9uc2USUQoOQXR0YWNoRGV0YWNoZWQSHC5ndWVzdC5BdHRhY2hEZXRhY2hlZFJlcXVlc3QaHS5ndWVzdC5BdHRhY2hEZXRhY2hlZFJlc3BvbnNlKAEwARJQCg9Db250cm9sRGV0YWNoZWQSHS5ndWVzdC5Db250cm9sRGV0YWNoZWRSZXF1ZXN0Gh4uZ3Vlc3QuQ29udHJvbERldGFjaGVkUmVzcG9uc2ViBnByb3RvMw");

/**
 * @generated from message guest.ExecRequest
 */
export type ExecRequest = Message<"guest.ExecRequest"> & {
  /**
   * @generated from oneof guest.ExecRequest.request
   */
  request: {
    /**
     * Must be the first message of the stream, and only the first.
     *
     * @generated from field: guest.ExecStart start = 1;
     */
    value: ExecStart;
    case: "start";
  } | {
    /**
     * Bytes for the command's stdin. Stdin EOF is the client half-closing its stream,
     * or `stdin_close` below.
     *
     * @generated from field: bytes stdin = 2;
     */
    value: Uint8Array;
    case: "stdin";
  } | {
    /**
     * @generated from field: guest.WindowSize resize = 3;
     */
    value: WindowSize;
    case: "resize";
  } | {
    /**
     * guestkit: closes the command's stdin now, while the stream stays open for
     * `signal` and `resize`. In TTY mode the terminal's EOF character is sent.
     *
     * @generated from field: guest.ExecStdinClose stdin_close = 4;
     */
    value: ExecStdinClose;
    case: "stdinClose";
  } | {
    /**
     * guestkit: sends a signal to the command's whole process group.
     *
     * @generated from field: guest.ExecSignal signal = 5;
     */
    value: ExecSignal;
    case: "signal";
  } | { case: undefined; value?: undefined };
};

/**
 * Describes the message guest.ExecRequest.
 * Use `create(ExecRequestSchema)` to create a new message.
 */
export const ExecRequestSchema: GenMessage<ExecRequest> = /*@__PURE__*/
  messageDesc(file_guest_guest, 0);

/**
 * @generated from message guest.ExecStart
 */
export type ExecStart = Message<"guest.ExecStart"> & {
  /**
   * argv; command[0] is looked up in PATH.
   *
   * @generated from field: repeated string command = 1;
   */
  command: string[];

  /**
   * @generated from field: bool tty = 2;
   */
  tty: boolean;

  /**
   * Added on top of the agent's own environment.
   *
   * @generated from field: map<string, string> env = 3;
   */
  env: { [key: string]: string };

  /**
   * @generated from field: string cwd = 4;
   */
  cwd: string;

  /**
   * 0 = no timeout. On expiry the process group gets SIGTERM, then SIGKILL after a
   * short grace, and the exit code is 124.
   *
   * @generated from field: int32 timeout_seconds = 5;
   */
  timeoutSeconds: number;

  /**
   * Terminal size in TTY mode; 0 means 24 rows, 80 columns.
   *
   * @generated from field: uint32 rows = 6;
   */
  rows: number;

  /**
   * @generated from field: uint32 cols = 7;
   */
  cols: number;

  /**
   * guestkit: run as this user: a name from /etc/passwd, a uid, or uid:gid.
   * HOME, USER and LOGNAME come from the passwd entry. Empty = the agent's user.
   *
   * @generated from field: string user = 9;
   */
  user: string;
};

/**
 * Describes the message guest.ExecStart.
 * Use `create(ExecStartSchema)` to create a new message.
 */
export const ExecStartSchema: GenMessage<ExecStart> = /*@__PURE__*/
  messageDesc(file_guest_guest, 1);

/**
 * @generated from message guest.WindowSize
 */
export type WindowSize = Message<"guest.WindowSize"> & {
  /**
   * @generated from field: uint32 rows = 1;
   */
  rows: number;

  /**
   * @generated from field: uint32 cols = 2;
   */
  cols: number;
};

/**
 * Describes the message guest.WindowSize.
 * Use `create(WindowSizeSchema)` to create a new message.
 */
export const WindowSizeSchema: GenMessage<WindowSize> = /*@__PURE__*/
  messageDesc(file_guest_guest, 2);

/**
 * guestkit: see ExecRequest.stdin_close.
 *
 * @generated from message guest.ExecStdinClose
 */
export type ExecStdinClose = Message<"guest.ExecStdinClose"> & {
};

/**
 * Describes the message guest.ExecStdinClose.
 * Use `create(ExecStdinCloseSchema)` to create a new message.
 */
export const ExecStdinCloseSchema: GenMessage<ExecStdinClose> = /*@__PURE__*/
  messageDesc(file_guest_guest, 3);

/**
 * guestkit: see ExecRequest.signal.
 *
 * @generated from message guest.ExecSignal
 */
export type ExecSignal = Message<"guest.ExecSignal"> & {
  /**
   * A signal name, with or without the SIG prefix: "TERM", "SIGINT", "KILL"...
   *
   * @generated from field: string name = 1;
   */
  name: string;
};

/**
 * Describes the message guest.ExecSignal.
 * Use `create(ExecSignalSchema)` to create a new message.
 */
export const ExecSignalSchema: GenMessage<ExecSignal> = /*@__PURE__*/
  messageDesc(file_guest_guest, 4);

/**
 * @generated from message guest.ExecResponse
 */
export type ExecResponse = Message<"guest.ExecResponse"> & {
  /**
   * @generated from oneof guest.ExecResponse.response
   */
  response: {
    /**
     * @generated from field: bytes stdout = 1;
     */
    value: Uint8Array;
    case: "stdout";
  } | {
    /**
     * In TTY mode stderr is merged into stdout by the terminal, so this is never sent.
     *
     * @generated from field: bytes stderr = 2;
     */
    value: Uint8Array;
    case: "stderr";
  } | {
    /**
     * Always the final message of the stream, sent even when it is 0. It is the same
     * value as ExecExit.code.
     *
     * @generated from field: int32 exit_code = 3;
     */
    value: number;
    case: "exitCode";
  } | {
    /**
     * guestkit: the command has started; sent once, before any output.
     *
     * @generated from field: guest.ExecStarted started = 4;
     */
    value: ExecStarted;
    case: "started";
  } | {
    /**
     * guestkit: how the command ended; sent right before `exit_code`.
     *
     * @generated from field: guest.ExecExit exit = 5;
     */
    value: ExecExit;
    case: "exit";
  } | {
    /**
     * guestkit: stdin credit, from an agent that announces the capability
     * `exec-stdin-credit`. The number of stdin bytes the command has taken so far
     * (written into its pipe or terminal, or dropped once it had exited), counted from
     * the start of the call; sent each time another quarter of EXEC_STDIN_WINDOW_BYTES
     * (512 KiB) has been taken. Such an agent reads
     * every Exec message as it arrives and queues stdin itself, so `signal`, `resize`
     * and `stdin_close` are never held behind stdin the command has not read
     * (`stdin_close` still takes effect after the stdin sent before it). A client that
     * honours the credit sends a stdin message (at most CHUNK_SIZE) only while less than
     * EXEC_STDIN_WINDOW_BYTES is sent and not yet consumed. The agent stops reading a
     * stream only when more than that window and one message is queued: a client that
     * ignores the credit, as existing hosts do, is then held by HTTP/2 flow control, as
     * it always was.
     *
     * @generated from field: uint64 stdin_consumed = 6;
     */
    value: bigint;
    case: "stdinConsumed";
  } | {
    /**
     * guestkit: to a client that asked for a data connection (see "Data connections"
     * above), the ticket for it, as 64 hex digits; sent at most once.
     *
     * @generated from field: string data_ticket = 7;
     */
    value: string;
    case: "dataTicket";
  } | { case: undefined; value?: undefined };
};

/**
 * Describes the message guest.ExecResponse.
 * Use `create(ExecResponseSchema)` to create a new message.
 */
export const ExecResponseSchema: GenMessage<ExecResponse> = /*@__PURE__*/
  messageDesc(file_guest_guest, 5);

/**
 * @generated from message guest.ExecStarted
 */
export type ExecStarted = Message<"guest.ExecStarted"> & {
  /**
   * Process id (and process group id) of the command inside the guest.
   *
   * @generated from field: uint32 pid = 1;
   */
  pid: number;
};

/**
 * Describes the message guest.ExecStarted.
 * Use `create(ExecStartedSchema)` to create a new message.
 */
export const ExecStartedSchema: GenMessage<ExecStarted> = /*@__PURE__*/
  messageDesc(file_guest_guest, 6);

/**
 * @generated from message guest.ExecExit
 */
export type ExecExit = Message<"guest.ExecExit"> & {
  /**
   * The exit status a shell would report: the command's own code; 128+N for death by
   * signal N; 124 for a timeout; 127 when the command was not found; 126 when it could
   * not be started for another reason (not executable, bad cwd, unknown user).
   *
   * @generated from field: int32 code = 1;
   */
  code: number;

  /**
   * The signal that ended the command ("SIGKILL"), empty if it exited by itself.
   *
   * @generated from field: string signal = 2;
   */
  signal: string;

  /**
   * The timeout fired; the process group was killed.
   *
   * @generated from field: bool timed_out = 3;
   */
  timedOut: boolean;

  /**
   * The command exited but something it left behind (a background process) still held
   * its stdout or stderr open; the agent stopped reading after a bounded drain time, so
   * later output from that process was not sent.
   *
   * @generated from field: bool output_truncated = 4;
   */
  outputTruncated: boolean;

  /**
   * The command never ran: `code` is 126 or 127 and `start_error` says why. This tells a
   * failure to start apart from a command that itself exits 126 or 127.
   *
   * @generated from field: bool start_failed = 5;
   */
  startFailed: boolean;

  /**
   * @generated from field: string start_error = 6;
   */
  startError: string;
};

/**
 * Describes the message guest.ExecExit.
 * Use `create(ExecExitSchema)` to create a new message.
 */
export const ExecExitSchema: GenMessage<ExecExit> = /*@__PURE__*/
  messageDesc(file_guest_guest, 7);

/**
 * @generated from message guest.CopyToGuestRequest
 */
export type CopyToGuestRequest = Message<"guest.CopyToGuestRequest"> & {
  /**
   * @generated from oneof guest.CopyToGuestRequest.request
   */
  request: {
    /**
     * @generated from field: guest.CopyToGuestStart start = 1;
     */
    value: CopyToGuestStart;
    case: "start";
  } | {
    /**
     * @generated from field: bytes data = 2;
     */
    value: Uint8Array;
    case: "data";
  } | {
    /**
     * Empty, but it must be sent: a file is committed only when `end` arrives.
     *
     * @generated from field: guest.CopyToGuestEnd end = 3;
     */
    value: CopyToGuestEnd;
    case: "end";
  } | {
    /**
     * guestkit: many whole entries in one message, each exactly as if it had come as
     * start, data, end. Only for an agent that announced `copy-batch` (an agent that
     * does not know this field would silently drop it). Sent only between entries,
     * never inside one.
     *
     * @generated from field: guest.CopyToGuestBatch batch = 4;
     */
    value: CopyToGuestBatch;
    case: "batch";
  } | { case: undefined; value?: undefined };
};

/**
 * Describes the message guest.CopyToGuestRequest.
 * Use `create(CopyToGuestRequestSchema)` to create a new message.
 */
export const CopyToGuestRequestSchema: GenMessage<CopyToGuestRequest> = /*@__PURE__*/
  messageDesc(file_guest_guest, 8);

/**
 * guestkit: see CopyToGuestRequest.batch. At most MAX_BATCH_ENTRIES entries and
 * MAX_BATCH_BYTES of file data; each file in it at most SMALL_FILE_BYTES.
 *
 * @generated from message guest.CopyToGuestBatch
 */
export type CopyToGuestBatch = Message<"guest.CopyToGuestBatch"> & {
  /**
   * @generated from field: repeated guest.CopyToGuestBatchEntry entries = 1;
   */
  entries: CopyToGuestBatchEntry[];
};

/**
 * Describes the message guest.CopyToGuestBatch.
 * Use `create(CopyToGuestBatchSchema)` to create a new message.
 */
export const CopyToGuestBatchSchema: GenMessage<CopyToGuestBatch> = /*@__PURE__*/
  messageDesc(file_guest_guest, 9);

/**
 * guestkit: one whole entry of a CopyToGuestBatch.
 *
 * @generated from message guest.CopyToGuestBatchEntry
 */
export type CopyToGuestBatchEntry = Message<"guest.CopyToGuestBatchEntry"> & {
  /**
   * What `start` would carry; checked exactly as a `start` is.
   *
   * @generated from field: guest.CopyToGuestStart start = 1;
   */
  start?: CopyToGuestStart | undefined;

  /**
   * All of a file's data (exactly `start.size` bytes); empty for a directory or symlink.
   *
   * @generated from field: bytes data = 2;
   */
  data: Uint8Array;
};

/**
 * Describes the message guest.CopyToGuestBatchEntry.
 * Use `create(CopyToGuestBatchEntrySchema)` to create a new message.
 */
export const CopyToGuestBatchEntrySchema: GenMessage<CopyToGuestBatchEntry> = /*@__PURE__*/
  messageDesc(file_guest_guest, 10);

/**
 * @generated from message guest.CopyToGuestStart
 */
export type CopyToGuestStart = Message<"guest.CopyToGuestStart"> & {
  /**
   * Absolute path of the entry in the guest. Missing parent directories are created.
   *
   * @generated from field: string path = 1;
   */
  path: string;

  /**
   * Permission bits, setuid/setgid/sticky included, applied exactly (not through the
   * umask). 0 means the default: 0644 for files, 0755 for directories, ignored for symlinks.
   *
   * @generated from field: uint32 mode = 2;
   */
  mode: number;

  /**
   * @generated from field: bool is_dir = 3;
   */
  isDir: boolean;

  /**
   * Exact size of a file; the file is committed only if this many bytes arrived.
   *
   * @generated from field: int64 size = 4;
   */
  size: bigint;

  /**
   * Modification time, unix seconds; 0 together with mtime_nanos = 0 means "now".
   * guestkit's agent refuses the entry (error_code EINVAL) when the file system does not
   * keep the time (ext4 stops at 2446-05-10 and clamps later times without an error),
   * rather than report success for a time it did not apply. A directory's time is set
   * once its contents are in, so that refusal comes after them.
   *
   * @generated from field: int64 mtime = 5;
   */
  mtime: bigint;

  /**
   * Ownership. Without `chown`, it is applied when either is non-zero.
   *
   * @generated from field: uint32 uid = 6;
   */
  uid: number;

  /**
   * @generated from field: uint32 gid = 7;
   */
  gid: number;

  /**
   * guestkit: apply uid and gid exactly, even 0:0 (root:root).
   *
   * @generated from field: bool chown = 8;
   */
  chown: boolean;

  /**
   * guestkit: create a symlink at `path` pointing to `link_target` (no data follows).
   *
   * @generated from field: bool is_symlink = 9;
   */
  isSymlink: boolean;

  /**
   * @generated from field: string link_target = 10;
   */
  linkTarget: string;

  /**
   * guestkit: sub-second part of mtime, 0..999999999.
   *
   * @generated from field: uint32 mtime_nanos = 11;
   */
  mtimeNanos: number;
};

/**
 * Describes the message guest.CopyToGuestStart.
 * Use `create(CopyToGuestStartSchema)` to create a new message.
 */
export const CopyToGuestStartSchema: GenMessage<CopyToGuestStart> = /*@__PURE__*/
  messageDesc(file_guest_guest, 11);

/**
 * @generated from message guest.CopyToGuestEnd
 */
export type CopyToGuestEnd = Message<"guest.CopyToGuestEnd"> & {
};

/**
 * Describes the message guest.CopyToGuestEnd.
 * Use `create(CopyToGuestEndSchema)` to create a new message.
 */
export const CopyToGuestEndSchema: GenMessage<CopyToGuestEnd> = /*@__PURE__*/
  messageDesc(file_guest_guest, 12);

/**
 * @generated from message guest.CopyToGuestResponse
 */
export type CopyToGuestResponse = Message<"guest.CopyToGuestResponse"> & {
  /**
   * @generated from field: bool success = 1;
   */
  success: boolean;

  /**
   * @generated from field: string error = 2;
   */
  error: string;

  /**
   * Bytes of file data committed.
   *
   * @generated from field: int64 bytes_written = 3;
   */
  bytesWritten: bigint;

  /**
   * guestkit: entries committed (files, directories, symlinks).
   *
   * @generated from field: int64 entries_written = 4;
   */
  entriesWritten: bigint;

  /**
   * guestkit: the entry the error is about.
   *
   * @generated from field: string error_path = 5;
   */
  errorPath: string;

  /**
   * guestkit: a machine-readable cause: an errno name ("ENOSPC", "EACCES") or
   * "SIZE_MISMATCH", "PROTOCOL".
   *
   * @generated from field: string error_code = 6;
   */
  errorCode: string;
};

/**
 * Describes the message guest.CopyToGuestResponse.
 * Use `create(CopyToGuestResponseSchema)` to create a new message.
 */
export const CopyToGuestResponseSchema: GenMessage<CopyToGuestResponse> = /*@__PURE__*/
  messageDesc(file_guest_guest, 13);

/**
 * @generated from message guest.CopyFromGuestRequest
 */
export type CopyFromGuestRequest = Message<"guest.CopyFromGuestRequest"> & {
  /**
   * @generated from field: string path = 1;
   */
  path: string;

  /**
   * Follow symlinks: a link is copied as what it points to (a link to a directory as
   * that directory's contents).
   *
   * @generated from field: bool follow_links = 2;
   */
  followLinks: boolean;

  /**
   * guestkit: the client accepts `batch` responses. Sent only to an agent that announced
   * `copy-batch`; an agent that does not know this field ignores it and answers in the
   * original framing, which the client also reads.
   *
   * @generated from field: bool batch = 3;
   */
  batch: boolean;
};

/**
 * Describes the message guest.CopyFromGuestRequest.
 * Use `create(CopyFromGuestRequestSchema)` to create a new message.
 */
export const CopyFromGuestRequestSchema: GenMessage<CopyFromGuestRequest> = /*@__PURE__*/
  messageDesc(file_guest_guest, 14);

/**
 * @generated from message guest.CopyFromGuestResponse
 */
export type CopyFromGuestResponse = Message<"guest.CopyFromGuestResponse"> & {
  /**
   * @generated from oneof guest.CopyFromGuestResponse.response
   */
  response: {
    /**
     * @generated from field: guest.CopyFromGuestHeader header = 1;
     */
    value: CopyFromGuestHeader;
    case: "header";
  } | {
    /**
     * @generated from field: bytes data = 2;
     */
    value: Uint8Array;
    case: "data";
  } | {
    /**
     * @generated from field: guest.CopyFromGuestEnd end = 3;
     */
    value: CopyFromGuestEnd;
    case: "end";
  } | {
    /**
     * A problem with the source path itself; the transfer stops.
     *
     * @generated from field: guest.CopyFromGuestError error = 4;
     */
    value: CopyFromGuestError;
    case: "error";
  } | {
    /**
     * guestkit: an entry that was left out (a FIFO, socket or device, which are never
     * opened; or an entry that could not be read) while the rest goes on. The final
     * `end` then has `partial` set.
     *
     * @generated from field: guest.CopyFromGuestSkipped skipped = 5;
     */
    value: CopyFromGuestSkipped;
    case: "skipped";
  } | {
    /**
     * guestkit: many whole entries in one message, each as if it had come as header,
     * data, end (final=false). Sent only when the request asked for it, only between
     * entries; the transfer still finishes with an `end` that has final=true (with no
     * entry of its own when the last entry came in a batch).
     *
     * @generated from field: guest.CopyFromGuestBatch batch = 6;
     */
    value: CopyFromGuestBatch;
    case: "batch";
  } | { case: undefined; value?: undefined };
};

/**
 * Describes the message guest.CopyFromGuestResponse.
 * Use `create(CopyFromGuestResponseSchema)` to create a new message.
 */
export const CopyFromGuestResponseSchema: GenMessage<CopyFromGuestResponse> = /*@__PURE__*/
  messageDesc(file_guest_guest, 15);

/**
 * guestkit: see CopyFromGuestResponse.batch. At most MAX_BATCH_ENTRIES entries and
 * MAX_BATCH_BYTES of file data; each file in it at most SMALL_FILE_BYTES.
 *
 * @generated from message guest.CopyFromGuestBatch
 */
export type CopyFromGuestBatch = Message<"guest.CopyFromGuestBatch"> & {
  /**
   * @generated from field: repeated guest.CopyFromGuestBatchEntry entries = 1;
   */
  entries: CopyFromGuestBatchEntry[];
};

/**
 * Describes the message guest.CopyFromGuestBatch.
 * Use `create(CopyFromGuestBatchSchema)` to create a new message.
 */
export const CopyFromGuestBatchSchema: GenMessage<CopyFromGuestBatch> = /*@__PURE__*/
  messageDesc(file_guest_guest, 16);

/**
 * guestkit: one whole entry of a CopyFromGuestBatch.
 *
 * @generated from message guest.CopyFromGuestBatchEntry
 */
export type CopyFromGuestBatchEntry = Message<"guest.CopyFromGuestBatchEntry"> & {
  /**
   * @generated from field: guest.CopyFromGuestHeader header = 1;
   */
  header?: CopyFromGuestHeader | undefined;

  /**
   * All of a file's data (exactly `header.size` bytes); empty for a directory or symlink.
   *
   * @generated from field: bytes data = 2;
   */
  data: Uint8Array;
};

/**
 * Describes the message guest.CopyFromGuestBatchEntry.
 * Use `create(CopyFromGuestBatchEntrySchema)` to create a new message.
 */
export const CopyFromGuestBatchEntrySchema: GenMessage<CopyFromGuestBatchEntry> = /*@__PURE__*/
  messageDesc(file_guest_guest, 17);

/**
 * @generated from message guest.CopyFromGuestHeader
 */
export type CopyFromGuestHeader = Message<"guest.CopyFromGuestHeader"> & {
  /**
   * Relative to the copy root; the first element is the base name of the root.
   *
   * @generated from field: string path = 1;
   */
  path: string;

  /**
   * Permission bits including setuid/setgid/sticky (st_mode & 07777).
   *
   * @generated from field: uint32 mode = 2;
   */
  mode: number;

  /**
   * @generated from field: bool is_dir = 3;
   */
  isDir: boolean;

  /**
   * @generated from field: bool is_symlink = 4;
   */
  isSymlink: boolean;

  /**
   * @generated from field: string link_target = 5;
   */
  linkTarget: string;

  /**
   * Exactly this many data bytes follow for a file. For a file of a file system whose
   * sizes do not say what reading gives (procfs says 0, sysfs 4096 whatever an
   * attribute holds), guestkit's agent reads the whole file before its header and
   * sends the size of what it read.
   *
   * @generated from field: int64 size = 6;
   */
  size: bigint;

  /**
   * Unix seconds.
   *
   * @generated from field: int64 mtime = 7;
   */
  mtime: bigint;

  /**
   * @generated from field: uint32 uid = 8;
   */
  uid: number;

  /**
   * @generated from field: uint32 gid = 9;
   */
  gid: number;

  /**
   * guestkit: sub-second part of mtime, 0..999999999.
   *
   * @generated from field: uint32 mtime_nanos = 10;
   */
  mtimeNanos: number;
};

/**
 * Describes the message guest.CopyFromGuestHeader.
 * Use `create(CopyFromGuestHeaderSchema)` to create a new message.
 */
export const CopyFromGuestHeaderSchema: GenMessage<CopyFromGuestHeader> = /*@__PURE__*/
  messageDesc(file_guest_guest, 18);

/**
 * @generated from message guest.CopyFromGuestEnd
 */
export type CopyFromGuestEnd = Message<"guest.CopyFromGuestEnd"> & {
  /**
   * True on the last entry of the transfer. A stream that ends without it failed.
   *
   * @generated from field: bool final = 1;
   */
  final: boolean;

  /**
   * guestkit: on the final entry: some entries were skipped (see `skipped`).
   *
   * @generated from field: bool partial = 2;
   */
  partial: boolean;

  /**
   * guestkit: this entry's file changed while the agent read it (its size, mtime or
   * ctime after the read differed from before), as tar's "file changed as we read it":
   * the data sent is what the reads returned, which may mix old and new content. Sent
   * on the `end` of that file only, so a host that does not know the field keeps the
   * file as before; guestkit's host refuses it unless its caller accepts changing files.
   * A file that changed is never sent in a `batch`.
   *
   * @generated from field: bool changed = 3;
   */
  changed: boolean;
};

/**
 * Describes the message guest.CopyFromGuestEnd.
 * Use `create(CopyFromGuestEndSchema)` to create a new message.
 */
export const CopyFromGuestEndSchema: GenMessage<CopyFromGuestEnd> = /*@__PURE__*/
  messageDesc(file_guest_guest, 19);

/**
 * @generated from message guest.CopyFromGuestError
 */
export type CopyFromGuestError = Message<"guest.CopyFromGuestError"> & {
  /**
   * @generated from field: string message = 1;
   */
  message: string;

  /**
   * @generated from field: string path = 2;
   */
  path: string;

  /**
   * guestkit: errno name or other machine-readable cause.
   *
   * @generated from field: string code = 3;
   */
  code: string;
};

/**
 * Describes the message guest.CopyFromGuestError.
 * Use `create(CopyFromGuestErrorSchema)` to create a new message.
 */
export const CopyFromGuestErrorSchema: GenMessage<CopyFromGuestError> = /*@__PURE__*/
  messageDesc(file_guest_guest, 20);

/**
 * @generated from message guest.CopyFromGuestSkipped
 */
export type CopyFromGuestSkipped = Message<"guest.CopyFromGuestSkipped"> & {
  /**
   * @generated from field: string path = 1;
   */
  path: string;

  /**
   * @generated from field: string reason = 2;
   */
  reason: string;

  /**
   * Errno name, or "SPECIAL_FILE" for FIFOs, sockets and devices, "CHANGED" for an
   * entry replaced by another during the walk, "SIZE_MISMATCH" for a file that shrank
   * while it was read: its data stops short of its header's size, and this `skipped`
   * comes before its `end`. No copy of such a file exists, so guestkit's host fails the
   * transfer on it.
   *
   * @generated from field: string code = 3;
   */
  code: string;
};

/**
 * Describes the message guest.CopyFromGuestSkipped.
 * Use `create(CopyFromGuestSkippedSchema)` to create a new message.
 */
export const CopyFromGuestSkippedSchema: GenMessage<CopyFromGuestSkipped> = /*@__PURE__*/
  messageDesc(file_guest_guest, 21);

/**
 * @generated from message guest.StatPathRequest
 */
export type StatPathRequest = Message<"guest.StatPathRequest"> & {
  /**
   * @generated from field: string path = 1;
   */
  path: string;

  /**
   * @generated from field: bool follow_links = 2;
   */
  followLinks: boolean;
};

/**
 * Describes the message guest.StatPathRequest.
 * Use `create(StatPathRequestSchema)` to create a new message.
 */
export const StatPathRequestSchema: GenMessage<StatPathRequest> = /*@__PURE__*/
  messageDesc(file_guest_guest, 22);

/**
 * @generated from message guest.StatPathResponse
 */
export type StatPathResponse = Message<"guest.StatPathResponse"> & {
  /**
   * @generated from field: bool exists = 1;
   */
  exists: boolean;

  /**
   * @generated from field: bool is_dir = 2;
   */
  isDir: boolean;

  /**
   * A regular file.
   *
   * @generated from field: bool is_file = 3;
   */
  isFile: boolean;

  /**
   * @generated from field: bool is_symlink = 4;
   */
  isSymlink: boolean;

  /**
   * @generated from field: string link_target = 5;
   */
  linkTarget: string;

  /**
   * Permission bits including setuid/setgid/sticky (st_mode & 07777): /tmp is 01777.
   *
   * @generated from field: uint32 mode = 6;
   */
  mode: number;

  /**
   * @generated from field: int64 size = 7;
   */
  size: bigint;

  /**
   * Set when the path could not be examined (other than not existing).
   *
   * @generated from field: string error = 8;
   */
  error: string;

  /**
   * guestkit additions.
   *
   * @generated from field: int64 mtime = 9;
   */
  mtime: bigint;

  /**
   * @generated from field: uint32 mtime_nanos = 10;
   */
  mtimeNanos: number;

  /**
   * @generated from field: uint32 uid = 11;
   */
  uid: number;

  /**
   * @generated from field: uint32 gid = 12;
   */
  gid: number;

  /**
   * @generated from field: guest.FileType file_type = 13;
   */
  fileType: FileType;

  /**
   * Errno name when `error` is set.
   *
   * @generated from field: string error_code = 14;
   */
  errorCode: string;
};

/**
 * Describes the message guest.StatPathResponse.
 * Use `create(StatPathResponseSchema)` to create a new message.
 */
export const StatPathResponseSchema: GenMessage<StatPathResponse> = /*@__PURE__*/
  messageDesc(file_guest_guest, 23);

/**
 * guestkit: see ForwardPort.
 *
 * @generated from message guest.ForwardPortRequest
 */
export type ForwardPortRequest = Message<"guest.ForwardPortRequest"> & {
  /**
   * @generated from oneof guest.ForwardPortRequest.request
   */
  request: {
    /**
     * @generated from field: guest.ForwardPortStart start = 1;
     */
    value: ForwardPortStart;
    case: "start";
  } | {
    /**
     * Bytes for the guest side of the connection.
     *
     * @generated from field: bytes data = 2;
     */
    value: Uint8Array;
    case: "data";
  } | {
    /**
     * The host side will send nothing more: the agent shuts down its socket for writing.
     *
     * @generated from field: guest.ForwardPortEof eof = 3;
     */
    value: ForwardPortEof;
    case: "eof";
  } | { case: undefined; value?: undefined };
};

/**
 * Describes the message guest.ForwardPortRequest.
 * Use `create(ForwardPortRequestSchema)` to create a new message.
 */
export const ForwardPortRequestSchema: GenMessage<ForwardPortRequest> = /*@__PURE__*/
  messageDesc(file_guest_guest, 24);

/**
 * @generated from message guest.ForwardPortStart
 */
export type ForwardPortStart = Message<"guest.ForwardPortStart"> & {
  /**
   * Host name or address as seen from inside the guest; empty = 127.0.0.1.
   *
   * @generated from field: string host = 1;
   */
  host: string;

  /**
   * TCP port, 1-65535.
   *
   * @generated from field: uint32 port = 2;
   */
  port: number;
};

/**
 * Describes the message guest.ForwardPortStart.
 * Use `create(ForwardPortStartSchema)` to create a new message.
 */
export const ForwardPortStartSchema: GenMessage<ForwardPortStart> = /*@__PURE__*/
  messageDesc(file_guest_guest, 25);

/**
 * @generated from message guest.ForwardPortEof
 */
export type ForwardPortEof = Message<"guest.ForwardPortEof"> & {
};

/**
 * Describes the message guest.ForwardPortEof.
 * Use `create(ForwardPortEofSchema)` to create a new message.
 */
export const ForwardPortEofSchema: GenMessage<ForwardPortEof> = /*@__PURE__*/
  messageDesc(file_guest_guest, 26);

/**
 * @generated from message guest.ForwardPortResponse
 */
export type ForwardPortResponse = Message<"guest.ForwardPortResponse"> & {
  /**
   * @generated from oneof guest.ForwardPortResponse.response
   */
  response: {
    /**
     * @generated from field: guest.ForwardPortConnected connected = 1;
     */
    value: ForwardPortConnected;
    case: "connected";
  } | {
    /**
     * Bytes the guest side of the connection sent.
     *
     * @generated from field: bytes data = 2;
     */
    value: Uint8Array;
    case: "data";
  } | {
    /**
     * The guest side will send nothing more.
     *
     * @generated from field: guest.ForwardPortEof eof = 3;
     */
    value: ForwardPortEof;
    case: "eof";
  } | {
    /**
     * @generated from field: guest.ForwardPortConnectError connect_error = 4;
     */
    value: ForwardPortConnectError;
    case: "connectError";
  } | { case: undefined; value?: undefined };
};

/**
 * Describes the message guest.ForwardPortResponse.
 * Use `create(ForwardPortResponseSchema)` to create a new message.
 */
export const ForwardPortResponseSchema: GenMessage<ForwardPortResponse> = /*@__PURE__*/
  messageDesc(file_guest_guest, 27);

/**
 * @generated from message guest.ForwardPortConnected
 */
export type ForwardPortConnected = Message<"guest.ForwardPortConnected"> & {
  /**
   * The address the agent connected to (after name resolution).
   *
   * @generated from field: string address = 1;
   */
  address: string;
};

/**
 * Describes the message guest.ForwardPortConnected.
 * Use `create(ForwardPortConnectedSchema)` to create a new message.
 */
export const ForwardPortConnectedSchema: GenMessage<ForwardPortConnected> = /*@__PURE__*/
  messageDesc(file_guest_guest, 28);

/**
 * @generated from message guest.ForwardPortConnectError
 */
export type ForwardPortConnectError = Message<"guest.ForwardPortConnectError"> & {
  /**
   * Errno name: ECONNREFUSED, EHOSTUNREACH, ETIMEDOUT, ENOTFOUND (name not resolved),
   * EACCES (the agent's own listener: refused so that the forward cannot reach the agent
   * itself), EINVAL (a bad port).
   *
   * @generated from field: string code = 1;
   */
  code: string;

  /**
   * @generated from field: string message = 2;
   */
  message: string;
};

/**
 * Describes the message guest.ForwardPortConnectError.
 * Use `create(ForwardPortConnectErrorSchema)` to create a new message.
 */
export const ForwardPortConnectErrorSchema: GenMessage<ForwardPortConnectError> = /*@__PURE__*/
  messageDesc(file_guest_guest, 29);

/**
 * guestkit: see StartDetached.
 *
 * @generated from message guest.StartDetachedRequest
 */
export type StartDetachedRequest = Message<"guest.StartDetachedRequest"> & {
  /**
   * As for Exec (command, tty, env, cwd, timeout, size, user).
   *
   * @generated from field: guest.ExecStart start = 1;
   */
  start?: ExecStart | undefined;

  /**
   * Unique among the agent's detached commands (ALREADY_EXISTS if taken); empty = the
   * agent makes one. Letters, digits, and . _ - only, at most 64.
   *
   * @generated from field: string name = 2;
   */
  name: string;

  /**
   * Keep stdin open for input sent through AttachDetached; otherwise EOF at once.
   *
   * @generated from field: bool stdin = 3;
   */
  stdin: boolean;
};

/**
 * Describes the message guest.StartDetachedRequest.
 * Use `create(StartDetachedRequestSchema)` to create a new message.
 */
export const StartDetachedRequestSchema: GenMessage<StartDetachedRequest> = /*@__PURE__*/
  messageDesc(file_guest_guest, 30);

/**
 * @generated from message guest.StartDetachedResponse
 */
export type StartDetachedResponse = Message<"guest.StartDetachedResponse"> & {
  /**
   * @generated from field: string id = 1;
   */
  id: string;

  /**
   * 0 when the command could not start: `exit` then says why (start_failed).
   *
   * @generated from field: uint32 pid = 2;
   */
  pid: number;

  /**
   * @generated from field: guest.ExecExit exit = 3;
   */
  exit?: ExecExit | undefined;
};

/**
 * Describes the message guest.StartDetachedResponse.
 * Use `create(StartDetachedResponseSchema)` to create a new message.
 */
export const StartDetachedResponseSchema: GenMessage<StartDetachedResponse> = /*@__PURE__*/
  messageDesc(file_guest_guest, 31);

/**
 * @generated from message guest.ListDetachedRequest
 */
export type ListDetachedRequest = Message<"guest.ListDetachedRequest"> & {
};

/**
 * Describes the message guest.ListDetachedRequest.
 * Use `create(ListDetachedRequestSchema)` to create a new message.
 */
export const ListDetachedRequestSchema: GenMessage<ListDetachedRequest> = /*@__PURE__*/
  messageDesc(file_guest_guest, 32);

/**
 * @generated from message guest.ListDetachedResponse
 */
export type ListDetachedResponse = Message<"guest.ListDetachedResponse"> & {
  /**
   * @generated from field: repeated guest.DetachedCommand commands = 1;
   */
  commands: DetachedCommand[];
};

/**
 * Describes the message guest.ListDetachedResponse.
 * Use `create(ListDetachedResponseSchema)` to create a new message.
 */
export const ListDetachedResponseSchema: GenMessage<ListDetachedResponse> = /*@__PURE__*/
  messageDesc(file_guest_guest, 33);

/**
 * @generated from message guest.DetachedCommand
 */
export type DetachedCommand = Message<"guest.DetachedCommand"> & {
  /**
   * @generated from field: string id = 1;
   */
  id: string;

  /**
   * @generated from field: uint32 pid = 2;
   */
  pid: number;

  /**
   * The program's name only (argv[0]): arguments and environment may hold secrets.
   *
   * @generated from field: string command = 3;
   */
  command: string;

  /**
   * @generated from field: bool running = 4;
   */
  running: boolean;

  /**
   * Milliseconds since the epoch.
   *
   * @generated from field: int64 started_at_ms = 5;
   */
  startedAtMs: bigint;

  /**
   * @generated from field: int64 exited_at_ms = 6;
   */
  exitedAtMs: bigint;

  /**
   * Set once it exited.
   *
   * @generated from field: guest.ExecExit exit = 7;
   */
  exit?: ExecExit | undefined;

  /**
   * Output older than what is kept was dropped.
   *
   * @generated from field: bool output_dropped = 8;
   */
  outputDropped: boolean;

  /**
   * @generated from field: bool tty = 9;
   */
  tty: boolean;
};

/**
 * Describes the message guest.DetachedCommand.
 * Use `create(DetachedCommandSchema)` to create a new message.
 */
export const DetachedCommandSchema: GenMessage<DetachedCommand> = /*@__PURE__*/
  messageDesc(file_guest_guest, 34);

/**
 * @generated from message guest.AttachDetachedRequest
 */
export type AttachDetachedRequest = Message<"guest.AttachDetachedRequest"> & {
  /**
   * @generated from oneof guest.AttachDetachedRequest.request
   */
  request: {
    /**
     * First message, and only the first.
     *
     * @generated from field: guest.AttachDetachedStart attach = 1;
     */
    value: AttachDetachedStart;
    case: "attach";
  } | {
    /**
     * @generated from field: bytes stdin = 2;
     */
    value: Uint8Array;
    case: "stdin";
  } | {
    /**
     * @generated from field: guest.ExecStdinClose stdin_close = 3;
     */
    value: ExecStdinClose;
    case: "stdinClose";
  } | {
    /**
     * @generated from field: guest.ExecSignal signal = 4;
     */
    value: ExecSignal;
    case: "signal";
  } | {
    /**
     * @generated from field: guest.WindowSize resize = 5;
     */
    value: WindowSize;
    case: "resize";
  } | { case: undefined; value?: undefined };
};

/**
 * Describes the message guest.AttachDetachedRequest.
 * Use `create(AttachDetachedRequestSchema)` to create a new message.
 */
export const AttachDetachedRequestSchema: GenMessage<AttachDetachedRequest> = /*@__PURE__*/
  messageDesc(file_guest_guest, 35);

/**
 * @generated from message guest.AttachDetachedStart
 */
export type AttachDetachedStart = Message<"guest.AttachDetachedStart"> & {
  /**
   * @generated from field: string id = 1;
   */
  id: string;

  /**
   * false: send what is kept (and the exit, if any) and end; true: then live output too.
   *
   * @generated from field: bool follow = 2;
   */
  follow: boolean;
};

/**
 * Describes the message guest.AttachDetachedStart.
 * Use `create(AttachDetachedStartSchema)` to create a new message.
 */
export const AttachDetachedStartSchema: GenMessage<AttachDetachedStart> = /*@__PURE__*/
  messageDesc(file_guest_guest, 36);

/**
 * @generated from message guest.AttachDetachedResponse
 */
export type AttachDetachedResponse = Message<"guest.AttachDetachedResponse"> & {
  /**
   * @generated from oneof guest.AttachDetachedResponse.response
   */
  response: {
    /**
     * @generated from field: bytes stdout = 1;
     */
    value: Uint8Array;
    case: "stdout";
  } | {
    /**
     * @generated from field: bytes stderr = 2;
     */
    value: Uint8Array;
    case: "stderr";
  } | {
    /**
     * Output was dropped here: older than the ring kept, or more than this client read.
     *
     * @generated from field: guest.DetachedOutputDropped dropped = 3;
     */
    value: DetachedOutputDropped;
    case: "dropped";
  } | {
    /**
     * The command ended; the last message.
     *
     * @generated from field: guest.ExecExit exit = 4;
     */
    value: ExecExit;
    case: "exit";
  } | { case: undefined; value?: undefined };
};

/**
 * Describes the message guest.AttachDetachedResponse.
 * Use `create(AttachDetachedResponseSchema)` to create a new message.
 */
export const AttachDetachedResponseSchema: GenMessage<AttachDetachedResponse> = /*@__PURE__*/
  messageDesc(file_guest_guest, 37);

/**
 * @generated from message guest.DetachedOutputDropped
 */
export type DetachedOutputDropped = Message<"guest.DetachedOutputDropped"> & {
};

/**
 * Describes the message guest.DetachedOutputDropped.
 * Use `create(DetachedOutputDroppedSchema)` to create a new message.
 */
export const DetachedOutputDroppedSchema: GenMessage<DetachedOutputDropped> = /*@__PURE__*/
  messageDesc(file_guest_guest, 38);

/**
 * @generated from message guest.ControlDetachedRequest
 */
export type ControlDetachedRequest = Message<"guest.ControlDetachedRequest"> & {
  /**
   * @generated from field: string id = 1;
   */
  id: string;

  /**
   * @generated from oneof guest.ControlDetachedRequest.action
   */
  action: {
    /**
     * A signal name, as ExecSignal.
     *
     * @generated from field: string signal = 2;
     */
    value: string;
    case: "signal";
  } | {
    /**
     * TERM, then KILL after a grace, to everything the command started.
     *
     * @generated from field: bool kill = 3;
     */
    value: boolean;
    case: "kill";
  } | {
    /**
     * Forget an exited command (FAILED_PRECONDITION while it runs).
     *
     * @generated from field: bool remove = 4;
     */
    value: boolean;
    case: "remove";
  } | { case: undefined; value?: undefined };
};

/**
 * Describes the message guest.ControlDetachedRequest.
 * Use `create(ControlDetachedRequestSchema)` to create a new message.
 */
export const ControlDetachedRequestSchema: GenMessage<ControlDetachedRequest> = /*@__PURE__*/
  messageDesc(file_guest_guest, 39);

/**
 * @generated from message guest.ControlDetachedResponse
 */
export type ControlDetachedResponse = Message<"guest.ControlDetachedResponse"> & {
};

/**
 * Describes the message guest.ControlDetachedResponse.
 * Use `create(ControlDetachedResponseSchema)` to create a new message.
 */
export const ControlDetachedResponseSchema: GenMessage<ControlDetachedResponse> = /*@__PURE__*/
  messageDesc(file_guest_guest, 40);

/**
 * guestkit: the kind of a file system entry.
 *
 * @generated from enum guest.FileType
 */
export enum FileType {
  /**
   * @generated from enum value: FILE_TYPE_UNSPECIFIED = 0;
   */
  UNSPECIFIED = 0,

  /**
   * @generated from enum value: FILE_TYPE_REGULAR = 1;
   */
  REGULAR = 1,

  /**
   * @generated from enum value: FILE_TYPE_DIRECTORY = 2;
   */
  DIRECTORY = 2,

  /**
   * @generated from enum value: FILE_TYPE_SYMLINK = 3;
   */
  SYMLINK = 3,

  /**
   * @generated from enum value: FILE_TYPE_FIFO = 4;
   */
  FIFO = 4,

  /**
   * @generated from enum value: FILE_TYPE_SOCKET = 5;
   */
  SOCKET = 5,

  /**
   * @generated from enum value: FILE_TYPE_CHAR_DEVICE = 6;
   */
  CHAR_DEVICE = 6,

  /**
   * @generated from enum value: FILE_TYPE_BLOCK_DEVICE = 7;
   */
  BLOCK_DEVICE = 7,
}

/**
 * Describes the enum guest.FileType.
 */
export const FileTypeSchema: GenEnum<FileType> = /*@__PURE__*/
  enumDesc(file_guest_guest, 0);

/**
 * GuestService runs inside the guest and listens on vsock port DEFAULT_PORT (2222).
 *
 * @generated from service guest.GuestService
 */
export const GuestService: GenService<{
  /**
   * Exec runs one command. The first request must be `start`; the last response is
   * always `exit_code`.
   *
   * @generated from rpc guest.GuestService.Exec
   */
  exec: {
    methodKind: "bidi_streaming";
    input: typeof ExecRequestSchema;
    output: typeof ExecResponseSchema;
  },
  /**
   * CopyToGuest writes files, directories and symlinks.
   *
   * Framing: each entry is `start`, then `data` (files only; exactly `start.size` bytes
   * in all), then `end`. The original framing is one entry per stream; with
   * `copy-multi-entry` a stream carries many entries one after another (start, data...,
   * end, start, ...), and with `copy-batch` whole small entries may also come packed in a
   * `batch`, only between entries, each exactly as if it had come as start, data, end.
   * The agent reads one message at a time, the next only once the previous one is
   * written, so flow control holds a fast sender.
   *
   * Each entry takes effect when its `end` arrives: a file is staged under a temporary
   * name beside its target, synced, given its owner, exact mode and mtime, and renamed
   * over the target only if exactly `size` bytes arrived; a symlink is renamed over the
   * target the same way; a directory is created or updated, and its mtime is set when the
   * stream ends, deepest directories first (writing into a directory changes its mtime).
   * Missing parents are created with mode 0755.
   *
   * Failure: the stream stops at the first entry that fails: a bad start, a file system
   * error (errno), an mtime the file system does not keep (EINVAL), SIZE_MISMATCH when
   * more or fewer than `size` bytes arrive, PROTOCOL for data before a start, a start or
   * a batch before the previous entry's end, or a batch beyond its limits. That entry's
   * target is left as it was; entries committed before it stay, with their directory
   * times. The response has success=false, `error`, `error_path`, `error_code`, and counts
   * only what was committed (`entries_written`, `bytes_written`); the rest of the stream
   * is not read. Otherwise the response comes once the client half-closes its stream (an
   * agent without `copy-multi-entry` answers after the first `end`): a success that
   * arrives before the last entry's `end` was sent is a protocol error.
   *
   * @generated from rpc guest.GuestService.CopyToGuest
   */
  copyToGuest: {
    methodKind: "client_streaming";
    input: typeof CopyToGuestRequestSchema;
    output: typeof CopyToGuestResponseSchema;
  },
  /**
   * CopyFromGuest streams a file or a whole tree out of the guest.
   *
   * Framing: for each entry a `header`, then `data` (files only; at most CHUNK_SIZE
   * each, exactly `header.size` bytes in all), then `end`; the last entry's `end` has
   * final=true, and a stream that ends without it is a failed transfer. A tree is sent
   * depth-first, each directory before its contents; header paths are relative to the
   * copy root and start with the root's base name ("." when the root is "/"). Symlinks
   * are sent as links unless `follow_links`; a directory met again on its own path is
   * skipped with ELOOP. With `batch` set (only to an agent that announced `copy-batch`),
   * directories, symlinks and files of at most SMALL_FILE_BYTES may travel as entries of
   * `batch` messages instead, only between entries; the transfer still ends with a final
   * `end`, bare when the last entry came in a batch.
   *
   * `skipped` reports an entry left out while the rest goes on (see
   * CopyFromGuestSkipped); it may come between an entry's data and its `end`, and the
   * final `end` then has partial=true. A file that shrank while it was read is sent as
   * far as it went, then a `skipped` for that path with SIZE_MISMATCH, then its `end`:
   * no copy of it exists, and the receiver must not keep it. A problem with the root
   * itself (bad path, missing, unreadable, a special file) is one `error` message and a
   * normal end of the call.
   *
   * @generated from rpc guest.GuestService.CopyFromGuest
   */
  copyFromGuest: {
    methodKind: "server_streaming";
    input: typeof CopyFromGuestRequestSchema;
    output: typeof CopyFromGuestResponseSchema;
  },
  /**
   * StatPath describes one path.
   *
   * @generated from rpc guest.GuestService.StatPath
   */
  statPath: {
    methodKind: "unary";
    input: typeof StatPathRequestSchema;
    output: typeof StatPathResponseSchema;
  },
  /**
   * guestkit (capability `port-forward`): one TCP connection from inside the guest,
   * relayed both ways. The first request is `start`; the agent connects to host:port as
   * seen from inside the guest and answers `connected`, or `connect_error` and ends the
   * call (status OK). Then `data` flows both ways, each direction ending with its own
   * `eof` (a half-close passed on to the other side); the call ends when both directions
   * have ended, or at once when either side cancels (the TCP connection is then reset).
   * Flow control is the call's: each side reads no more than it can pass on.
   *
   * @generated from rpc guest.GuestService.ForwardPort
   */
  forwardPort: {
    methodKind: "bidi_streaming";
    input: typeof ForwardPortRequestSchema;
    output: typeof ForwardPortResponseSchema;
  },
  /**
   * guestkit (capability `detached`): commands that outlive the call that started them.
   * StartDetached returns at once with the command's id and pid; the command runs on when
   * the client goes away (its timeout still applies) and is ended, with everything it
   * started, by KillDetached, its timeout, or the agent's stop. The agent keeps the most
   * recent output of each (a ring of DETACHED_OUTPUT_BYTES (1 MiB) per command, oldest
   * dropped first) and, once it exited, its exit, for an hour. At most
   * MAX_DETACHED_COMMANDS (64) are held: past it the oldest exited one is forgotten, and
   * while all of them run a new one is refused (RESOURCE_EXHAUSTED).
   * AttachDetached replays what is kept, then streams live output (unless `follow` is
   * false: the logs) and the exit; input, signals and resizes go through the same stream. Detaching never stops the command. Several clients may attach at once.
   *
   * @generated from rpc guest.GuestService.StartDetached
   */
  startDetached: {
    methodKind: "unary";
    input: typeof StartDetachedRequestSchema;
    output: typeof StartDetachedResponseSchema;
  },
  /**
   * @generated from rpc guest.GuestService.ListDetached
   */
  listDetached: {
    methodKind: "unary";
    input: typeof ListDetachedRequestSchema;
    output: typeof ListDetachedResponseSchema;
  },
  /**
   * @generated from rpc guest.GuestService.AttachDetached
   */
  attachDetached: {
    methodKind: "bidi_streaming";
    input: typeof AttachDetachedRequestSchema;
    output: typeof AttachDetachedResponseSchema;
  },
  /**
   * Sends a signal, or with `kill` ends the command and everything it started (TERM,
   * then KILL), or with `remove` forgets an exited command. NOT_FOUND for an unknown id.
   *
   * @generated from rpc guest.GuestService.ControlDetached
   */
  controlDetached: {
    methodKind: "unary";
    input: typeof ControlDetachedRequestSchema;
    output: typeof ControlDetachedResponseSchema;
  },
}> = /*@__PURE__*/
  serviceDesc(file_guest_guest, 0);


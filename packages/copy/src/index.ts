// @guestkit/copy: the one copy engine. The agent and the host library both move trees
// with it; only the path policy differs between them (absolute paths in the guest,
// relative names under a destination with no link traversal on the host).

// Receiving: decode, stage, commit.
export { MAX_STAGED_FILES } from "./commit-queue.js";
// Sending: walk, safe open, encode.
export { type DownloadRequest, encodeDownload } from "./download-encoder.js";
export { EntryBatch } from "./entry-batch.js";
export { type BatchEntry, boundedBatch, checkHeader, type EntryHeader, type EntryKind } from "./entry-decode.js";
export { EntryError, type EntryErrorReason } from "./entry-error.js";
export { type EntryMetadata, entryMetadata, fileTypeOf, permissionBits, specialFileKind } from "./file-metadata.js";
export {
  changedWhileRead,
  readSource,
  type Source,
  type StreamOutcome,
  shrankReason,
  streamSource,
} from "./source-file.js";
export { type EntryAttributes, TEMP_MARKER, temporaryNameFor } from "./staged-file.js";
export {
  createSyntheticFileCheck,
  readWholeFile,
  type SyntheticFileCheck,
  type WholeFile,
} from "./synthetic-files.js";
export {
  checkTimeKept,
  MAX_TIME_SECONDS,
  nowArgument,
  splitNanoseconds,
  type Timestamp,
  timeArgument,
  timeMayBeClamped,
  timeProblem,
} from "./timestamp.js";
export { sameFile, type WalkEntry, type WalkItem, type WalkPolicy, walkTree } from "./tree-walk.js";
export { type EntryLocation, type OpenDirectory, type PathPolicy, TreeWriter } from "./tree-writer.js";
export { UploadEncoder } from "./upload-encoder.js";

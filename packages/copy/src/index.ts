// @guestkit/copy: the one copy engine. The agent and the host library both move trees
// with it; only the path policy differs between them (absolute paths in the guest,
// relative names under a destination with no link traversal on the host).

export { type DownloadRequest, encodeDownload, SHRANK_CODE } from "./download-encoder.js";
export { EntryBatch } from "./entry-batch.js";
export {
  type EntryMetadata,
  entryMetadata,
  fileTypeOf,
  permissionBits,
  specialFileKind,
  splitNanoseconds,
  type Timestamp,
} from "./file-metadata.js";
export {
  CHANGED_CODE,
  changedWhileRead,
  readSource,
  type Source,
  type StreamOutcome,
  shrankReason,
  streamSource,
  TOO_LARGE_CODE,
} from "./source-file.js";
export {
  createSyntheticFileCheck,
  readWholeFile,
  type SyntheticFileCheck,
  type WholeFile,
} from "./synthetic-files.js";
export { describeError, errnoCode } from "./system-error.js";
export {
  SPECIAL_FILE_CODE,
  sameFile,
  type WalkEntry,
  type WalkItem,
  type WalkPolicy,
  walkTree,
} from "./tree-walk.js";
export { UploadEncoder } from "./upload-encoder.js";

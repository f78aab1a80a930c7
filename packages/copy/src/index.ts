// @guestkit/copy: the one copy engine. The agent and the host library both move trees
// with it; only the path policy differs between them (absolute paths in the guest,
// relative names under a destination with no link traversal on the host).
export { MAX_STAGED_FILES } from "./commit-queue.js";
export { type BatchEntry, boundedBatch, checkHeader, type EntryHeader, type EntryKind } from "./entry-decode.js";
export { EntryError, type EntryErrorReason } from "./entry-error.js";
export { type EntryAttributes, TEMP_MARKER, temporaryNameFor } from "./staged-file.js";
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
export { type EntryLocation, type OpenDirectory, type PathPolicy, TreeWriter } from "./tree-writer.js";

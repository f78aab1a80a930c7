// The wire metadata of entries lives in the copy engine; the agent's other users (StatPath,
// the upload receiver) take it from here until they import it from there.
export { fileTypeOf, permissionBits, specialFileKind, splitNanoseconds, type Timestamp } from "@guestkit/copy";

// The bearer token lives in a file on both sides: the agent requires it (`guest-agent
// --token-file`) and guestctl sends it (`--token-file`, $GUESTCTL_TOKEN_FILE). Whoever can
// read that file can run commands as root in the guest, and whoever can write it (or owns
// it, and so can chmod it) can set the token to one they know. So both sides refuse, as
// ssh refuses such a private key, a file that its owner's group or others can read or
// write, and a file owned by another user than the reader or root.
import { closeSync, constants, fstatSync, openSync, readFileSync } from "node:fs";

/** Why a token file was refused; the message names the file and the fix. */
export class TokenFileError extends Error {
  override readonly name = "TokenFileError";
}

/** Reads and trims the token in `path`; throws a TokenFileError unless only its owner can use it. */
export function readTokenFile(path: string): string {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO at the path must not hang the start; it is refused below.
    fd = openSync(path, constants.O_RDONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
  } catch (error) {
    throw new TokenFileError(`cannot read the token file ${path}: ${(error as Error).message}`);
  }
  try {
    // The checks are on the open file itself, so the file read is the file checked.
    const info = fstatSync(fd);
    if (!info.isFile()) throw new TokenFileError(`the token file ${path} is not a regular file`);
    const uid = process.getuid?.();
    if (uid !== undefined && info.uid !== uid && info.uid !== 0) {
      throw new TokenFileError(
        `the token file ${path} belongs to uid ${info.uid}, who can change it or let others read it; it must belong to this user (uid ${uid}) or root (chown ${uid} ${path})`,
      );
    }
    if ((info.mode & 0o077) !== 0) {
      const mode = (info.mode & 0o777).toString(8).padStart(4, "0");
      throw new TokenFileError(
        `the token file ${path} has mode ${mode}: users other than its owner can read or change it, and the token lets whoever holds it run commands as root in the guest; make it private with: chmod 600 ${path}`,
      );
    }
    const token = readFileSync(fd, "utf8").trim();
    if (token === "") throw new TokenFileError(`the token file ${path} is empty`);
    return token;
  } finally {
    closeSync(fd);
  }
}

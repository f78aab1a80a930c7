// guestctl and the library run on Node 22 and 24 (the LTS lines still maintained; both
// are tested). On an older Node it stops at once with one line saying what it needs,
// rather than failing later on some API that Node lacks. main.ts imports this first,
// so it runs before any other module of guestctl is evaluated.

/** The oldest Node major version guestctl runs on. */
export const NEEDED_NODE_MAJOR = 22;

if (Number(process.versions.node.split(".")[0]) < NEEDED_NODE_MAJOR) {
  process.stderr.write(
    `guestctl: needs Node ${NEEDED_NODE_MAJOR} or newer; this is Node ${process.versions.node} (${process.execPath})\n`,
  );
  process.exit(1);
}

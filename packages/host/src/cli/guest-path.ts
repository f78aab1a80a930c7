// How the command line names a path in the guest: `guest:/etc/hosts`, as `docker cp`
// writes `CONTAINER:PATH`.

/** The prefix that marks a guest path. */
export const GUEST_PREFIX = "guest:";

/** The guest path of an operand written `guest:PATH`, or undefined for a local path. */
export function guestPathOf(operand: string): string | undefined {
  return operand.startsWith(GUEST_PREFIX) ? operand.slice(GUEST_PREFIX.length) : undefined;
}

// @guestkit/copy: the one copy engine. The agent and the host library both move trees
// with it; only the path policy differs between them (absolute paths in the guest,
// relative names under a destination with no link traversal on the host).
export {};

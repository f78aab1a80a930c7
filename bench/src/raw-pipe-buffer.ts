// Shared by both ends of the raw-socket reference (a module of its own, because the
// peer's module starts a server when it is loaded).

/** Read and write size of the raw reference: large, so it shows the socket's limit. */
export const RAW_BUFFER_BYTES = 1024 * 1024;

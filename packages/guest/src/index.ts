export { type AgentServer, type AgentServerOptions, createAgentServer } from "./server.js";
export { type ListenAddress, parseListenAddress } from "./transport/listen-address.js";

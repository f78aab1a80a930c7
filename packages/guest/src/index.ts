export { type ListenAddress, parseListenAddress } from "./listen-address.js";
export { type AgentServer, type AgentServerOptions, createAgentServer } from "./server.js";

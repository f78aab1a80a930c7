export { type AgentProcess, GUEST_AGENT_BIN, type StartAgentOptions, startAgent } from "./agent-process.js";

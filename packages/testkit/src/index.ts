export {
  type AgentInspector,
  type AgentMemory,
  connectInspector,
  INSPECTOR_NODE_OPTIONS,
} from "./agent-inspector.js";
export {
  type AgentProcess,
  GUEST_AGENT_BIN,
  GUESTCTL_BIN,
  type StartAgentOptions,
  startAgent,
} from "./agent-process.js";
export {
  C_CORE_LEGACY_AGENT_SCRIPT,
  type CCoreLegacyAgent,
  type CCoreLegacyAgentOptions,
  startCCoreLegacyAgent,
} from "./c-core-legacy-agent.js";
export { runHeapProbe } from "./heap-probe.js";
export {
  HOSTILE_SCENARIOS,
  type HostileAgent,
  type HostileAgentOptions,
  type HostileScenario,
  startHostileAgent,
} from "./hostile-agent.js";
export {
  type HybridVsockEndpoint,
  type HybridVsockEndpointOptions,
  type HybridVsockEndpointStats,
  type HybridVsockFault,
  startHybridVsockEndpoint,
} from "./hybrid-vsock-endpoint.js";
export { type LegacyAgent, startLegacyAgent } from "./legacy-agent.js";
export {
  type DescendantProcess,
  descendantsOf,
  describeFds,
  type ProcessStats,
  rssBytesOf,
  sampleProcess,
  sampleRss,
} from "./process-stats.js";
export {
  decodeResponse,
  encodeRequest,
  GUEST_METHODS,
  type GuestMethod,
  grpcFrame,
  type RawCallOptions,
  type RawCallResult,
  RawGrpcConnection,
  type RequestInit,
} from "./raw-grpc.js";
export {
  ROGUE_SCENARIOS,
  type RogueAgent,
  type RogueAgentOptions,
  type RogueScenario,
  startRogueAgent,
} from "./rogue-agent.js";
export { sendWhenWritable } from "./script-agent.js";
export {
  formatReport,
  runSoak,
  type SoakOperation,
  type SoakOptions,
  type SoakReport,
  type SoakSnapshot,
} from "./soak.js";

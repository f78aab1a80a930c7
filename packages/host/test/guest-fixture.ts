// A real agent behind the Cloud Hypervisor stand-in, as a host sees a microVM: the
// client dials `hvsock:<endpoint>:2222`, the endpoint joins it to the agent's socket.
import { type AgentProcess, type HybridVsockEndpoint, startAgent, startHybridVsockEndpoint } from "@guestkit/testkit";
import { createGuestClient, type GuestClient } from "../src/guest-client.js";
import type { GuestConnectionOptions } from "../src/guest-connection.js";

/** An agent, the endpoint in front of it, and the clients made on it (closed by stop()). */
export interface GuestFixture {
  readonly agent: AgentProcess;
  readonly endpoint: HybridVsockEndpoint;
  /** A new client of the agent through the endpoint. */
  client(options?: GuestConnectionOptions): GuestClient;
  /** Closes the clients made so far (between tests). */
  closeClients(): Promise<void>;
  /** Closes everything: clients, endpoint, agent. */
  stop(): Promise<void>;
}

/** Starts an agent and an endpoint that routes port 2222 to it. */
export async function startGuestFixture(): Promise<GuestFixture> {
  const agent = await startAgent();
  const endpoint = await startHybridVsockEndpoint();
  endpoint.register(2222, agent.socketPath);
  const clients: GuestClient[] = [];
  const closeClients = async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
  };
  return {
    agent,
    endpoint,
    client(options = {}) {
      const client = createGuestClient(endpoint.target(2222), options);
      clients.push(client);
      return client;
    },
    closeClients,
    async stop() {
      await closeClients();
      await endpoint.close();
      await agent.stop();
    },
  };
}

/** Whether a process exists (the agent runs on this machine, so guest pids are ours to check). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `condition` every 10 ms until it holds; the test's own timeout bounds it. */
export async function waitFor(condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 10));
}

// A look inside a running agent through Node's inspector (the Chrome DevTools Protocol
// over a WebSocket on loopback): force a full garbage collection and read the JS heap.
// RSS alone cannot tell a leak from memory that V8 and malloc keep for reuse after a
// load; the heap after a full GC can. Only for agents the tests start themselves with
// INSPECTOR_NODE_OPTIONS; a production agent never opens an inspector.

/** NODE_OPTIONS that make an agent open its inspector on a free loopback port. */
export const INSPECTOR_NODE_OPTIONS = "--inspect=127.0.0.1:0";

/** What process.memoryUsage() says inside the agent. */
export interface AgentMemory {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/** A DevTools session on an agent. */
export interface AgentInspector {
  /** Runs a full, synchronous garbage collection in the agent. */
  collectGarbage(): Promise<void>;
  /** process.memoryUsage() in the agent. */
  memoryUsage(): Promise<AgentMemory>;
  close(): void;
}

/**
 * Connects to the inspector of an agent started with INSPECTOR_NODE_OPTIONS, whose
 * stderr (where Node announces the inspector's address) is `stderr`.
 */
export async function connectInspector(stderr: () => string, timeoutMs = 10_000): Promise<AgentInspector> {
  const deadline = Date.now() + timeoutMs;
  const announced = () => /ws:\/\/127\.0\.0\.1:\d+\/[0-9a-f-]+/.exec(stderr())?.[0];
  let url = announced();
  while (url === undefined) {
    if (Date.now() > deadline) {
      throw new Error("the agent did not announce an inspector (started without INSPECTOR_NODE_OPTIONS?)");
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    url = announced();
  }
  const socket = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    socket.onopen = () => resolve();
    socket.onerror = () => reject(new Error(`cannot connect to the agent's inspector at ${url}`));
  });
  let nextId = 0;
  const pending = new Map<number, { resolve: (result: unknown) => void; reject: (error: Error) => void }>();
  socket.onmessage = (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } };
    const waiter = message.id === undefined ? undefined : pending.get(message.id);
    if (!waiter || message.id === undefined) return;
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(`inspector: ${message.error.message}`));
    else waiter.resolve(message.result);
  };
  socket.onclose = () => {
    for (const waiter of pending.values()) waiter.reject(new Error("the inspector connection closed"));
    pending.clear();
  };
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve, reject) => {
      nextId += 1;
      pending.set(nextId, { resolve, reject });
      socket.send(JSON.stringify({ id: nextId, method, params }));
    });
  return {
    async collectGarbage() {
      await send("HeapProfiler.collectGarbage");
    },
    async memoryUsage() {
      const reply = (await send("Runtime.evaluate", {
        expression: "JSON.stringify(process.memoryUsage())",
        returnByValue: true,
      })) as { result: { value: string } };
      return JSON.parse(reply.result.value) as AgentMemory;
    },
    close() {
      socket.close();
    },
  };
}

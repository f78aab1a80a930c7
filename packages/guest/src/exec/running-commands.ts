// Every command the agent has started and not yet reaped, so shutdown can end them all.

/** What the registry needs from a running command. */
export interface RunningCommand {
  /** Ends the command's whole process group (TERM, then KILL) and resolves once it is gone. */
  terminate(): Promise<void>;
}

export class RunningCommands {
  readonly #commands = new Set<RunningCommand>();

  /** Registers a command; call the returned function once it has been reaped. */
  add(command: RunningCommand): () => void {
    this.#commands.add(command);
    return () => this.#commands.delete(command);
  }

  get size(): number {
    return this.#commands.size;
  }

  /** Terminates every registered command and waits for all of them. */
  async terminateAll(): Promise<void> {
    await Promise.allSettled([...this.#commands].map((command) => command.terminate()));
  }
}

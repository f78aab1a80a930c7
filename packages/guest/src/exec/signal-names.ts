// Signal names as clients send them ("TERM", "SIGINT", "kill") and as ExecExit reports them.
import { constants } from "node:os";

const numberByName = constants.signals as Readonly<Record<string, number>>;

/** A signal the agent knows by name and number. */
export interface SignalSpec {
  /** Canonical name with the SIG prefix: "SIGTERM". */
  readonly name: NodeJS.Signals;
  readonly number: number;
}

/**
 * Parses a signal name, with or without the SIG prefix and in any case. Only names
 * this platform defines are accepted, so a typo fails loudly instead of sending nothing;
 * returns undefined for an unknown name.
 */
export function parseSignalName(text: string): SignalSpec | undefined {
  const upper = text.trim().toUpperCase();
  const name = upper.startsWith("SIG") ? upper : `SIG${upper}`;
  const number = Object.hasOwn(numberByName, name) ? numberByName[name] : undefined;
  return number === undefined ? undefined : { name: name as NodeJS.Signals, number };
}

/** The canonical name of a signal number ("SIGKILL" for 9), or "SIG<n>" if it has none. */
export function signalNameOf(signal: number): string {
  for (const [name, number] of Object.entries(numberByName)) {
    if (number === signal) return name;
  }
  return `SIG${signal}`;
}

/** The number of a signal name Node reports ("SIGKILL" -> 9); 0 if unknown. */
export function signalNumberOf(name: string): number {
  return Object.hasOwn(numberByName, name) ? (numberByName[name] ?? 0) : 0;
}

export {
  type PosixSpawnOptions,
  posixSpawn,
  posixSpawnOnTerminal,
  posixSpawnUnavailable,
  type SpawnedExit,
  type SpawnedProcess,
  type StartedProcess,
} from "./posix-spawn.js";

export { type PosixSpawnOptions, posixSpawn, posixSpawnUnavailable, type SpawnedProcess } from "./posix-spawn.js";

{
  "targets": [
    {
      "target_name": "posix_spawn",
      "sources": ["native/posix_spawn.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"],
      "defines": ["NAPI_VERSION=8"],
      # Every symbol bound at load time: the spawned child runs in the agent's memory,
      # where the lazy-binding resolver must not run.
      "ldflags": ["-Wl,-z,now"]
    }
  ]
}

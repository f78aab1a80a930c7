{
  "targets": [
    {
      "target_name": "posix_spawn",
      "sources": ["native/posix_spawn.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}

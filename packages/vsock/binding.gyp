{
  "targets": [
    {
      "target_name": "vsock",
      "sources": ["native/vsock.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}

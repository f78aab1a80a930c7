#!/bin/sh
# Added to /etc/guestkit/once.d by the QEMU test's extra initramfs archive: runs the
# in-guest checks and hands the verdict to QEMU through isa-debug-exit
# (PASS: 32 -> QEMU exits 65; FAIL: 33 -> QEMU exits 67).
if /usr/bin/node /opt/guestkit-e2e/e2e/e2e.ts; then
  /opt/guestkit-e2e/debug-exit 32
else
  /opt/guestkit-e2e/debug-exit 33
fi
poweroff -f

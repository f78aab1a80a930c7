// `pnpm guest-image`: builds .guest-image/vmlinux and .guest-image/initramfs.cpio
// (see README.md). Rebuilds only when an input changed.
import { buildGuestImage } from "./guest-image.ts";

try {
  const kernelMetapackage = process.env.GUESTKIT_KERNEL_PACKAGE;
  await buildGuestImage(kernelMetapackage ? { kernelMetapackage } : {});
} catch (error) {
  process.stderr.write(`guest-image: ${(error as Error).message}\n`);
  process.exitCode = 1;
}

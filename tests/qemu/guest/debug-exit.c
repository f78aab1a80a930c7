// debug-exit VALUE: writes VALUE to QEMU's isa-debug-exit port (0xf4), which ends QEMU
// with exit status (VALUE << 1) | 1. That is how the guest's verdict becomes the
// status the host test sees. Static, without libc: the test guest has no C library
// of its own beyond what Node needs, and this must work even if that is broken.
#define SYS_write 1
#define SYS_ioperm 173
#define SYS_exit 60

static long syscall3(long number, long a, long b, long c) {
  long result;
  __asm__ volatile("syscall" : "=a"(result) : "a"(number), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return result;
}

static void fail(const char* text, long length) {
  syscall3(SYS_write, 2, (long)text, length);
  syscall3(SYS_exit, 1, 0, 0);
}

__attribute__((used)) void start(long* stack) {
  long argc = stack[0];
  char** argv = (char**)(stack + 1);
  if (argc != 2) fail("usage: debug-exit VALUE\n", 24);
  long value = 0;
  for (const char* p = argv[1]; *p; p++) {
    if (*p < '0' || *p > '9') fail("debug-exit: VALUE must be decimal\n", 34);
    value = value * 10 + (*p - '0');
  }
  if (value > 255) fail("debug-exit: VALUE must be 0..255\n", 33);
  if (syscall3(SYS_ioperm, 0xf4, 4, 1) != 0) fail("debug-exit: ioperm failed\n", 26);
  __asm__ volatile("outb %0, %1" : : "a"((unsigned char)value), "Nd"((unsigned short)0xf4));
  // Still running: there is no isa-debug-exit device.
  fail("debug-exit: no isa-debug-exit device at 0xf4\n", 46);
}

__asm__(".globl _start\n_start:\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call start\n  hlt\n");

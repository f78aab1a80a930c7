// posix_spawn for Node, with the child's exit reported through a pidfd.
//
// Node's child_process.spawn forks: the kernel copies the page tables of the whole
// agent (tens of MiB of heap) and write-protects every page of it, only for the child
// to exec a moment later. That copy was most of the agent's time per exec and grows
// with its memory. Like glibc's posix_spawn, this clones with CLONE_VM | CLONE_VFORK
// instead: nothing is copied, so a spawn costs the same whatever the agent's size.
//
// It does the clone itself rather than call posix_spawn for what posix_spawn cannot do
// between clone and exec: join the command's cgroup first of all (glibc has a way only
// since 2.39, and Debian 12 has 2.36), so that nothing the command starts can leave
// it; and switch to the user the command runs as.
//
// libuv does not know these children, so their exits are watched here: a pidfd
// (Linux 5.3) becomes readable when the child exits, a uv_poll_t on the loop sees it,
// and waitid() reaps the child and gives its status. libuv's own SIGCHLD handling only
// waits for the pids it spawned, so it never takes these.
//
// Every function reports failure as a negative errno (spawn also names the step that
// failed), so the JavaScript side has one place that turns them into errors.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <uv.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define CHECK(call)                                                                                                    \
  do {                                                                                                                 \
    if ((call) != napi_ok) return NULL;                                                                                \
  } while (0)

static napi_value make_number(napi_env env, double value) {
  napi_value result;
  if (napi_create_double(env, value, &result) != napi_ok) return NULL;
  return result;
}

static int pidfd_open(pid_t pid) {
  return (int)syscall(SYS_pidfd_open, pid, 0);
}

// A NULL-terminated copy of a JavaScript string array (argv, envp); NULL on failure.
static char** string_array(napi_env env, napi_value array) {
  uint32_t length;
  if (napi_get_array_length(env, array, &length) != napi_ok) return NULL;
  char** strings = calloc((size_t)length + 1, sizeof *strings);
  if (strings == NULL) return NULL;
  for (uint32_t i = 0; i < length; i++) {
    napi_value element;
    size_t size;
    if (napi_get_element(env, array, i, &element) != napi_ok ||
        napi_get_value_string_utf8(env, element, NULL, 0, &size) != napi_ok || (strings[i] = malloc(size + 1)) == NULL ||
        napi_get_value_string_utf8(env, element, strings[i], size + 1, &size) != napi_ok) {
      for (uint32_t j = 0; j <= i; j++) free(strings[j]);
      free(strings);
      return NULL;
    }
  }
  return strings;
}

static void free_string_array(char** strings) {
  if (strings == NULL) return;
  for (char** s = strings; *s != NULL; s++) free(*s);
  free(strings);
}

static char* string_arg(napi_env env, napi_value value) {
  size_t size;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &size) != napi_ok) return NULL;
  char* string = malloc(size + 1);
  if (string != NULL && napi_get_value_string_utf8(env, value, string, size + 1, &size) != napi_ok) {
    free(string);
    return NULL;
  }
  return string;
}

// A running child: its pidfd watched on the loop until it exits.
typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
  int pidfd;
} child_watch;

static void on_watch_closed(uv_handle_t* handle) {
  free(handle->data);
}

static void on_child_exit(uv_poll_t* handle, int status, int events) {
  (void)status;
  (void)events;
  child_watch* watch = handle->data;
  siginfo_t info;
  memset(&info, 0, sizeof info);
  // WNOHANG: a spurious wake-up (it should not happen) must not block the loop.
  int waited = waitid(P_PIDFD, (id_t)watch->pidfd, &info, WEXITED | WNOHANG);
  if (waited < 0 && errno == EINTR) return;
  if (waited == 0 && info.si_pid == 0) return;
  // A failed waitid (nothing left to wait for) still ends the watch: code -1, signal 0.
  int code = -1, signal_number = 0;
  if (waited == 0 && info.si_code == CLD_EXITED) code = info.si_status;
  else if (waited == 0) signal_number = info.si_status;
  uv_poll_stop(&watch->poll);
  close(watch->pidfd);
  napi_env env = watch->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value callback, global, argv[2];
    napi_get_reference_value(env, watch->callback, &callback);
    napi_get_global(env, &global);
    argv[0] = make_number(env, code);
    argv[1] = make_number(env, signal_number);
    // make_callback (not call_function): this runs straight from the event loop, so
    // microtasks must be drained and async hooks see a proper callback scope.
    napi_make_callback(env, watch->context, global, callback, 2, argv, NULL);
    napi_close_handle_scope(env, scope);
  }
  napi_delete_reference(env, watch->callback);
  napi_async_destroy(env, watch->context);
  uv_close((uv_handle_t*)&watch->poll, on_watch_closed);
}

// Starts watching `pid`; 0, or -errno with the child killed and reaped.
static int watch_child(napi_env env, pid_t pid, napi_value callback) {
  int error = 0;
  child_watch* watch = calloc(1, sizeof *watch);
  uv_loop_t* loop;
  napi_value name;
  if (watch == NULL) {
    error = -ENOMEM;
  } else if ((watch->pidfd = pidfd_open(pid)) < 0) {
    error = -errno;
  } else if (napi_get_uv_event_loop(env, &loop) != napi_ok ||
             napi_create_string_utf8(env, "guestkit.posixSpawn", NAPI_AUTO_LENGTH, &name) != napi_ok) {
    error = -ENOMEM;
  } else if ((error = uv_poll_init(loop, &watch->poll, watch->pidfd)) == 0) {
    watch->poll.data = watch;
    watch->env = env;
    if (napi_create_reference(env, callback, 1, &watch->callback) != napi_ok ||
        napi_async_init(env, NULL, name, &watch->context) != napi_ok) {
      error = -ENOMEM;
    } else if ((error = uv_poll_start(&watch->poll, UV_READABLE, on_child_exit)) == 0) {
      return 0;
    }
    // The handle is initialized: it must be closed through the loop, which frees it.
    close(watch->pidfd);
    uv_close((uv_handle_t*)&watch->poll, on_watch_closed);
    watch = NULL;
  }
  if (watch != NULL) {
    if (watch->pidfd >= 0) close(watch->pidfd);
    free(watch);
  }
  // A child nobody can wait for must not run on unseen.
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return error;
}

// What the child needs, prepared by the parent: the child shares the parent's memory
// (CLONE_VM) and must not allocate, lock or touch libc state, so everything is ready
// before the clone, and the child reports a failure by writing `error` and `step` here.
typedef struct {
  const char* file;
  char** argv;
  char** envp;
  // {"/bin/sh", file, argv[1]...}: what execvp runs when execve says ENOEXEC.
  char** shell_argv;
  const char* cwd;
  int fds[3];
  // fds[0..2] are one terminal's slave side, to become the controlling terminal.
  int terminal;
  // cgroup.procs of the cgroup the child must join before anything else, or -1.
  int cgroup_procs;
  // -1: keep the agent's.
  int uid, gid;
  int error;
  const char* step;
} child_args;

// The kernel's sigaction with SIG_DFL, no flags and an empty mask is all zeros,
// whatever the architecture's layout; 64 bytes covers every layout.
static const unsigned long default_action[8];

// The child: runs on its own stack in the parent's memory while the parent thread waits
// (CLONE_VFORK) until it has exec'd or exited. System calls only, nothing that
// allocates or locks; raw ones where glibc's wrapper does more: its setuid and setgid
// would signal the agent's threads to change their ids too, and its sigaction refuses
// the two signals glibc keeps for itself.
static int spawn_child(void* data) {
  child_args* args = data;
  // First of all, before the command can run, let alone fork: whatever it starts is
  // then inside its cgroup, and a kill of the cgroup reaches it wherever it goes.
  if (args->cgroup_procs >= 0 && write(args->cgroup_procs, "0", 1) != 1) {
    args->step = "cgroup";
    goto fail;
  }
  if (setsid() < 0) {
    args->step = "setsid";
    goto fail;
  }
  // Node ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec: the command
  // starts with every disposition at its default, as it does under a shell.
  for (int sig = 1; sig < 65; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP) syscall(SYS_rt_sigaction, sig, default_action, NULL, 8);
  }
  for (int i = 0; i < 3; i++) {
    if (dup2(args->fds[i], i) < 0) {
      args->step = "dup2";
      goto fail;
    }
  }
  // A session leader with no controlling terminal takes this one: ^C then signals the
  // command's foreground group, a resize sends SIGWINCH, and /dev/tty works.
  if (args->terminal && ioctl(0, TIOCSCTTY, 0) < 0) {
    args->step = "tiocsctty";
    goto fail;
  }
  // Before dropping to the user, as Node's spawn does.
  if (args->cwd[0] != '\0' && chdir(args->cwd) < 0) {
    args->step = "chdir";
    goto fail;
  }
  if (args->uid >= 0) {
    gid_t groups[1] = {(gid_t)args->gid};
    // GID as the only group. EPERM: an agent that is not root keeps its own groups,
    // which are already the user's (the agent refuses any other user then).
    if (syscall(SYS_setgroups, 1, groups) < 0 && errno != EPERM) {
      args->step = "setgroups";
      goto fail;
    }
    if (syscall(SYS_setgid, args->gid) < 0) {
      args->step = "setgid";
      goto fail;
    }
    if (syscall(SYS_setuid, args->uid) < 0) {
      args->step = "setuid";
      goto fail;
    }
  }
  // Descriptors Node opened without O_CLOEXEC (node-pty's terminal masters) too.
  // glibc's closefrom allocates nothing (close_range, else a walk of /proc/self/fd).
  closefrom(3);
  uint64_t none = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);
  execve(args->file, args->argv, args->envp);
  if (errno == ENOEXEC) execve(args->shell_argv[0], args->shell_argv, args->envp);
  args->step = "execve";
fail:
  args->error = errno;
  _exit(127);
}

// Room for the child's few calls; pages are only touched as used.
#define CHILD_STACK_BYTES (64 * 1024)

// Starts the child; its pid, or -errno with args->step naming what failed.
static pid_t clone_child(child_args* args) {
  void* stack = mmap(NULL, CHILD_STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    args->step = "mmap";
    return -errno;
  }
  // Every signal blocked while the child runs in our memory: a handler of the agent's
  // must not run there. The child sets its own mask before exec.
  uint64_t all = ~(uint64_t)0, previous;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &previous, 8);
  // Stacks grow down on every architecture Node runs on.
  pid_t pid = clone(spawn_child, (char*)stack + CHILD_STACK_BYTES, CLONE_VM | CLONE_VFORK | SIGCHLD, args);
  int clone_error = errno;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &previous, NULL, 8);
  munmap(stack, CHILD_STACK_BYTES);
  if (pid < 0) {
    args->step = "clone";
    return -clone_error;
  }
  if (args->error != 0) {
    // It exited (127) without exec'ing; reap it.
    waitpid(pid, NULL, 0);
    return -args->error;
  }
  return pid;
}

// The line discipline node-pty's fork gives its terminals (node-pty 1.1, pty.cc), so
// that a command sees the same terminal however it was started: canonical mode with
// UTF-8 erase, echo, the signal keys (^C, ^Z, quit), output in CR LF.
static int set_terminal_modes(int fd) {
  struct termios t;
  memset(&t, 0, sizeof t);
  t.c_iflag = ICRNL | IXON | IXANY | IMAXBEL | BRKINT | IUTF8;
  t.c_oflag = OPOST | ONLCR;
  t.c_cflag = CREAD | CS8 | HUPCL;
  t.c_lflag = ICANON | ISIG | IEXTEN | ECHO | ECHOE | ECHOK | ECHOKE | ECHOCTL;
  t.c_cc[VEOF] = 4;
  t.c_cc[VEOL] = (cc_t)-1;
  t.c_cc[VEOL2] = (cc_t)-1;
  t.c_cc[VERASE] = 0x7f;
  t.c_cc[VWERASE] = 23;
  t.c_cc[VKILL] = 21;
  t.c_cc[VREPRINT] = 18;
  t.c_cc[VINTR] = 3;
  t.c_cc[VQUIT] = 0x1c;
  t.c_cc[VSUSP] = 26;
  t.c_cc[VSTART] = 17;
  t.c_cc[VSTOP] = 19;
  t.c_cc[VLNEXT] = 22;
  t.c_cc[VDISCARD] = 15;
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  cfsetispeed(&t, B38400);
  cfsetospeed(&t, B38400);
  // The command reads and writes it blocking, whatever the opener chose.
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) return -errno;
  return tcsetattr(fd, TCSANOW, &t) < 0 ? -errno : 0;
}

static napi_value make_failure(napi_env env, int negative_errno, const char* step) {
  napi_value result, value;
  if (napi_create_object(env, &result) != napi_ok || (value = make_number(env, negative_errno)) == NULL ||
      napi_set_named_property(env, result, "errno", value) != napi_ok ||
      napi_create_string_utf8(env, step, NAPI_AUTO_LENGTH, &value) != napi_ok ||
      napi_set_named_property(env, result, "step", value) != napi_ok)
    return NULL;
  return result;
}

// spawn(file, argv, envp, cwd, stdin, stdout, stderr, uid, gid, cgroup, terminal, onExit) -> pid,
// or {errno (negative), step} naming what failed ("execve", "chdir", "cgroup"...).
// `file` is a path (the caller has searched PATH); cwd "" keeps the agent's; uid and gid
// -1 keep the agent's; cgroup "" leaves the child in the agent's cgroup, else it is a
// cgroup v2 directory the child joins before anything else. The child gets its own
// session (setsid), default dispositions for every signal and an empty signal mask, the
// three fds as 0, 1 and 2, and no other descriptor of the agent's. With `terminal`, the
// three fds are a terminal's slave side: it gets node-pty's modes and becomes the
// child's controlling terminal. A file execve refuses
// with ENOEXEC runs with /bin/sh, as execvp does. onExit(code, signal) runs once: code -1
// when a signal ended it.
static napi_value posix_spawn_spawn(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value args[12];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  if (argc < 12) return make_failure(env, -EINVAL, "arguments");
  child_args child;
  memset(&child, 0, sizeof child);
  child.cgroup_procs = -1;
  for (int i = 0; i < 3; i++) {
    if (napi_get_value_int32(env, args[4 + i], &child.fds[i]) != napi_ok || child.fds[i] < 3)
      return make_failure(env, -EINVAL, "arguments");
  }
  if (napi_get_value_int32(env, args[7], &child.uid) != napi_ok ||
      napi_get_value_int32(env, args[8], &child.gid) != napi_ok || (child.uid < 0) != (child.gid < 0))
    return make_failure(env, -EINVAL, "arguments");
  bool terminal;
  if (napi_get_value_bool(env, args[10], &terminal) != napi_ok) return make_failure(env, -EINVAL, "arguments");
  child.terminal = terminal;
  if (terminal) {
    int modes = set_terminal_modes(child.fds[0]);
    if (modes < 0) return make_failure(env, modes, "tcsetattr");
  }
  char* file = string_arg(env, args[0]);
  char* cwd = string_arg(env, args[3]);
  char* cgroup = string_arg(env, args[9]);
  char** argv = string_array(env, args[1]);
  char** envp = string_array(env, args[2]);
  char** shell_argv = NULL;
  napi_value result = NULL;
  int error = -ENOMEM;
  const char* step = "arguments";
  if (file == NULL || cwd == NULL || cgroup == NULL || argv == NULL || envp == NULL) goto done;
  size_t count = 0;
  while (argv[count] != NULL) count++;
  if ((shell_argv = calloc(count + 2, sizeof *shell_argv)) == NULL) goto done;
  shell_argv[0] = "/bin/sh";
  shell_argv[1] = file;
  for (size_t i = 1; i < count; i++) shell_argv[i + 1] = argv[i];
  if (cgroup[0] != '\0') {
    size_t length = strlen(cgroup);
    char* procs = malloc(length + sizeof "/cgroup.procs");
    if (procs == NULL) goto done;
    memcpy(procs, cgroup, length);
    memcpy(procs + length, "/cgroup.procs", sizeof "/cgroup.procs");
    child.cgroup_procs = open(procs, O_WRONLY | O_CLOEXEC);
    free(procs);
    if (child.cgroup_procs < 0) {
      error = -errno;
      step = "cgroup";
      goto done;
    }
  }
  child.file = file;
  child.argv = argv;
  child.envp = envp;
  child.shell_argv = shell_argv;
  child.cwd = cwd;
  pid_t pid = clone_child(&child);
  if (pid < 0) {
    error = pid;
    step = child.step;
    goto done;
  }
  error = watch_child(env, pid, args[11]);
  if (error < 0) step = "pidfd_open";
  else result = make_number(env, pid);
done:
  if (child.cgroup_procs >= 0) close(child.cgroup_procs);
  free(file);
  free(cwd);
  free(cgroup);
  free(shell_argv);
  free_string_array(argv);
  free_string_array(envp);
  return result != NULL ? result : make_failure(env, error, step);
}

// pipe() -> [readFd, writeFd], both close-on-exec, or -errno.
static napi_value posix_spawn_pipe(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return make_number(env, -errno);
  napi_value result;
  CHECK(napi_create_array_with_length(env, 2, &result));
  CHECK(napi_set_element(env, result, 0, make_number(env, fds[0])));
  CHECK(napi_set_element(env, result, 1, make_number(env, fds[1])));
  return result;
}

// closeFd(fd) -> 0 or -errno: the child's ends of the pipes, once it has its copies.
static napi_value posix_spawn_close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) return make_number(env, -EINVAL);
  return make_number(env, close(fd) < 0 ? -errno : 0);
}

// supported() -> 0 when this kernel has pidfds (Linux 5.3), else -errno.
static napi_value posix_spawn_supported(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = pidfd_open(getpid());
  if (fd < 0) return make_number(env, -errno);
  close(fd);
  return make_number(env, 0);
}

// Bumped whenever a function's arguments change: the loader refuses a stale build.
#define INTERFACE_VERSION 3

static napi_value init(napi_env env, napi_value exports) {
  napi_value version = make_number(env, INTERFACE_VERSION);
  if (version == NULL) return NULL;
  napi_property_descriptor properties[] = {
      {"interfaceVersion", NULL, NULL, NULL, NULL, version, napi_enumerable, NULL},
      {"spawn", NULL, posix_spawn_spawn, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pipe", NULL, posix_spawn_pipe, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, posix_spawn_close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"supported", NULL, posix_spawn_supported, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

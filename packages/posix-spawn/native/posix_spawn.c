// posix_spawn for Node, with the child's exit reported through a pidfd.
//
// Node's child_process.spawn forks: the kernel copies the page tables of the whole
// agent (tens of MiB of heap) and write-protects every page of it, only for the child
// to exec a moment later. That copy was most of the agent's time per exec and grows
// with its memory. glibc's posix_spawn clones with CLONE_VM | CLONE_VFORK instead:
// nothing is copied, so a spawn costs the same whatever the agent's size.
//
// libuv does not know these children, so their exits are watched here: a pidfd
// (Linux 5.3) becomes readable when the child exits, a uv_poll_t on the loop sees it,
// and waitid() reaps the child and gives its status. libuv's own SIGCHLD handling only
// waits for the pids it spawned, so it never takes these.
//
// Every function reports failure as a negative errno, so the JavaScript side has one
// place that turns them into errors.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

// glibc's sigfillset leaves out its two internal signals (SIGCANCEL and SIGSETXID, 32
// and 33), and its posix_spawn then leaves them ignored in the child, which execve keeps.
// Set by hand, so the command starts with every disposition at the default, as it does
// under Node's spawn.
static void add_glibc_internal_signals(sigset_t* set) {
  unsigned long* words = (unsigned long*)set;
  const unsigned bits = 8 * sizeof *words;
  for (unsigned sig = 32; sig <= 33; sig++) words[(sig - 1) / bits] |= 1UL << ((sig - 1) % bits);
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

// spawn(file, argv, envp, cwd, stdin, stdout, stderr, onExit) -> pid, or -errno.
// `file` is a path (the caller has searched PATH); cwd "" keeps the agent's. The child
// gets its own session (setsid), default dispositions for every signal and an empty
// signal mask, the three fds as 0, 1 and 2, and no other descriptor of the agent's:
// closefrom(3) also covers descriptors Node opened without O_CLOEXEC (node-pty's
// terminal masters). onExit(code, signal) runs once: code -1 when a signal ended it.
static napi_value posix_spawn_spawn(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value args[8];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  if (argc < 8) return make_number(env, -EINVAL);
  int32_t fds[3];
  for (int i = 0; i < 3; i++) {
    if (napi_get_value_int32(env, args[4 + i], &fds[i]) != napi_ok || fds[i] < 3) return make_number(env, -EINVAL);
  }
  char* file = string_arg(env, args[0]);
  char* cwd = string_arg(env, args[3]);
  char** argv = string_array(env, args[1]);
  char** envp = string_array(env, args[2]);
  int result = -ENOMEM;
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  int have_actions = 0, have_attributes = 0;
  if (file == NULL || cwd == NULL || argv == NULL || envp == NULL) goto done;
  if ((result = -posix_spawn_file_actions_init(&actions)) != 0) goto done;
  have_actions = 1;
  if ((result = -posix_spawnattr_init(&attributes)) != 0) goto done;
  have_attributes = 1;
  sigset_t all, none;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  add_glibc_internal_signals(&all);
  sigemptyset(&none);
  // Node ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec: the command
  // must start with the defaults, as it does under a shell.
  if ((result = -posix_spawnattr_setsigdefault(&attributes, &all)) != 0 ||
      (result = -posix_spawnattr_setsigmask(&attributes, &none)) != 0 ||
      (result = -posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF |
                                                           POSIX_SPAWN_SETSIGMASK)) != 0)
    goto done;
  for (int i = 0; i < 3; i++) {
    if ((result = -posix_spawn_file_actions_adddup2(&actions, fds[i], i)) != 0) goto done;
  }
  if (cwd[0] != '\0' && (result = -posix_spawn_file_actions_addchdir_np(&actions, cwd)) != 0) goto done;
  if ((result = -posix_spawn_file_actions_addclosefrom_np(&actions, 3)) != 0) goto done;
  pid_t pid;
  int error = posix_spawn(&pid, file, &actions, &attributes, argv, envp);
  if (error != 0) {
    result = -error;
    goto done;
  }
  error = watch_child(env, pid, args[7]);
  result = error < 0 ? error : pid;
done:
  if (have_actions) posix_spawn_file_actions_destroy(&actions);
  if (have_attributes) posix_spawnattr_destroy(&attributes);
  free(file);
  free(cwd);
  free_string_array(argv);
  free_string_array(envp);
  return make_number(env, result);
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"spawn", NULL, posix_spawn_spawn, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pipe", NULL, posix_spawn_pipe, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, posix_spawn_close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"supported", NULL, posix_spawn_supported, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

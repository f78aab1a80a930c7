// AF_VSOCK for Node: the few system calls libuv cannot make for us.
//
// Node cannot wrap an AF_VSOCK fd in net.Socket (uv_guess_handle knows only TCP and
// Unix sockets), but libuv's pipe handle reads, writes, listens and accepts on any
// stream socket fd. So this addon only creates, binds, listens and connects; the
// JavaScript side wraps the resulting fds in pipe handles and gets real net.Socket
// streams. Every function reports failure as a negative errno (libuv's convention),
// so the JavaScript side has one place that turns errno values into Error objects.
//
// The one asynchronous step is waiting for a non-blocking connect() to finish: a
// uv_poll_t on the loop, so the event loop never blocks and no threadpool thread is
// tied up while a peer is slow.
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define CHECK(call)                                                                                                    \
  do {                                                                                                                 \
    if ((call) != napi_ok) return NULL;                                                                                \
  } while (0)

static napi_value make_number(napi_env env, double value) {
  napi_value result;
  if (napi_create_double(env, value, &result) != napi_ok) return NULL;
  return result;
}

// JavaScript validates every argument before calling in; these only convert.
static int get_uint32_arg(napi_env env, napi_value value, uint32_t* out) {
  return napi_get_value_uint32(env, value, out) == napi_ok ? 0 : -EINVAL;
}

static int get_int32_arg(napi_env env, napi_value value, int32_t* out) {
  return napi_get_value_int32(env, value, out) == napi_ok ? 0 : -EINVAL;
}

static int open_vsock_socket(void) {
  // CLOEXEC: the agent spawns commands, and they must not inherit its connections.
  return socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
}

// listen(port, backlog) -> fd, or -errno. Binds VMADDR_CID_ANY so the agent answers
// on whichever CID the guest has, loopback (CID 1) included.
static napi_value vsock_listen(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t port;
  int32_t backlog;
  if (argc < 2 || get_uint32_arg(env, argv[0], &port) || get_int32_arg(env, argv[1], &backlog)) {
    return make_number(env, -EINVAL);
  }
  int fd = open_vsock_socket();
  if (fd < 0) return make_number(env, -errno);
  struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
  if (bind(fd, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(fd, backlog) < 0) {
    int error = errno;
    close(fd);
    return make_number(env, -error);
  }
  return make_number(env, fd);
}

// localPort(fd) -> the port the socket is bound to (useful after binding VMADDR_PORT_ANY), or -errno.
static napi_value vsock_local_port(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || get_int32_arg(env, argv[0], &fd)) return make_number(env, -EINVAL);
  struct sockaddr_vm addr;
  socklen_t length = sizeof addr;
  if (getsockname(fd, (struct sockaddr*)&addr, &length) < 0) return make_number(env, -errno);
  return make_number(env, addr.svm_port);
}

// connectStart(cid, port) -> [fd, inProgress], or -errno. A connect that cannot finish
// at once (the usual case: vsock connects through the transport) is finished by waitConnected().
static napi_value vsock_connect_start(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t cid, port;
  if (argc < 2 || get_uint32_arg(env, argv[0], &cid) || get_uint32_arg(env, argv[1], &port)) {
    return make_number(env, -EINVAL);
  }
  int fd = open_vsock_socket();
  if (fd < 0) return make_number(env, -errno);
  struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
  int in_progress = 0;
  if (connect(fd, (struct sockaddr*)&addr, sizeof addr) < 0) {
    if (errno == EINPROGRESS) {
      in_progress = 1;
    } else {
      int error = errno;
      close(fd);
      return make_number(env, -error);
    }
  }
  napi_value result;
  CHECK(napi_create_array_with_length(env, 2, &result));
  CHECK(napi_set_element(env, result, 0, make_number(env, fd)));
  napi_value flag;
  CHECK(napi_get_boolean(env, in_progress, &flag));
  CHECK(napi_set_element(env, result, 1, flag));
  return result;
}

// A pending connect. Owned jointly by libuv (until the poll handle's close callback)
// and by the JavaScript external (until it is garbage collected): freed when both let go.
typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
  int fd;
  int owners;
  int closed;
} pending_connect;

static void release(pending_connect* pending) {
  if (--pending->owners == 0) free(pending);
}

static void on_poll_closed(uv_handle_t* handle) {
  release((pending_connect*)handle->data);
}

// Stops watching the fd (before JavaScript hands it to a pipe handle) and drops the
// references to JavaScript. The fd itself stays open: the caller owns it.
static void finish(pending_connect* pending) {
  if (pending->closed) return;
  pending->closed = 1;
  uv_poll_stop(&pending->poll);
  uv_close((uv_handle_t*)&pending->poll, on_poll_closed);
  napi_delete_reference(pending->env, pending->callback);
  napi_async_destroy(pending->env, pending->context);
}

static void on_writable(uv_poll_t* handle, int status, int events) {
  (void)events;
  pending_connect* pending = handle->data;
  // libuv reports POLLERR as UV_EBADF; the real reason (ECONNRESET when nobody listens)
  // is the socket's pending error, so that is read whatever the poll status says.
  int error = 0;
  socklen_t length = sizeof error;
  if (getsockopt(pending->fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0) error = errno;
  int result = error != 0 ? -error : status;
  napi_env env = pending->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, resource, argv[1];
  napi_get_reference_value(env, pending->callback, &callback);
  napi_get_undefined(env, &resource);
  napi_async_context context = pending->context;
  pending->context = NULL;
  pending->closed = 1;
  uv_poll_stop(&pending->poll);
  uv_close((uv_handle_t*)&pending->poll, on_poll_closed);
  argv[0] = make_number(env, result);
  napi_value global;
  napi_get_global(env, &global);
  // make_callback (not call_function): this runs straight from the event loop, so
  // microtasks must be drained and async hooks see a proper callback scope.
  napi_make_callback(env, context, global, callback, 1, argv, NULL);
  napi_delete_reference(env, pending->callback);
  napi_async_destroy(env, context);
  napi_close_handle_scope(env, scope);
}

static void finalize_pending(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  release((pending_connect*)data);
}

// waitConnected(fd, callback) -> an opaque request for cancelConnect(), or -errno.
// callback(result) runs once: 0 when connected, -errno when the connect failed.
static napi_value vsock_wait_connected(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 2 || get_int32_arg(env, argv[0], &fd)) return make_number(env, -EINVAL);
  uv_loop_t* loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  pending_connect* pending = calloc(1, sizeof *pending);
  if (pending == NULL) return make_number(env, -ENOMEM);
  pending->env = env;
  pending->fd = fd;
  int error = uv_poll_init_socket(loop, &pending->poll, fd);
  if (error == 0) {
    pending->poll.data = pending;
    error = uv_poll_start(&pending->poll, UV_WRITABLE, on_writable);
    if (error != 0) {
      pending->owners = 1;
      pending->closed = 1;
      uv_close((uv_handle_t*)&pending->poll, on_poll_closed);
      return make_number(env, error);
    }
  } else {
    free(pending);
    return make_number(env, error);
  }
  napi_value name, external;
  if (napi_create_reference(env, argv[1], 1, &pending->callback) != napi_ok ||
      napi_create_string_utf8(env, "guestkit.vsockConnect", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &pending->context) != napi_ok) {
    pending->owners = 1;
    pending->closed = 1;
    uv_poll_stop(&pending->poll);
    uv_close((uv_handle_t*)&pending->poll, on_poll_closed);
    return make_number(env, -ENOMEM);
  }
  pending->owners = 2;
  if (napi_create_external(env, pending, finalize_pending, NULL, &external) != napi_ok) {
    pending->owners = 1;
    finish(pending);
    return make_number(env, -ENOMEM);
  }
  return external;
}

// cancelConnect(request): stops waiting (timeout or abort). The callback will not run;
// the caller closes the fd.
static napi_value vsock_cancel_connect(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void* data;
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok) return make_number(env, -EINVAL);
  finish((pending_connect*)data);
  return make_number(env, 0);
}

// closeFd(fd): for fds that never reached a pipe handle (a failed or cancelled connect).
static napi_value vsock_close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || get_int32_arg(env, argv[0], &fd)) return make_number(env, -EINVAL);
  return make_number(env, close(fd) < 0 ? -errno : 0);
}

// peerCid(fd) -> the CID of the peer of a connected socket, or -errno. The agent decides
// who may connect by it: the VMM's host side is always CID 2, a process inside the guest
// reaches the listener from CID 1 (loopback) or the guest's own CID.
static napi_value vsock_peer_cid(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || get_int32_arg(env, argv[0], &fd)) return make_number(env, -EINVAL);
  struct sockaddr_vm peer = {0};
  socklen_t length = sizeof peer;
  if (getpeername(fd, (struct sockaddr*)&peer, &length) < 0) return make_number(env, -errno);
  if (peer.svm_family != AF_VSOCK) return make_number(env, -EAFNOSUPPORT);
  return make_number(env, (double)peer.svm_cid);
}

// localCid() -> this machine's CID, or -errno (ENOENT when there is no /dev/vsock).
static napi_value vsock_local_cid(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_number(env, -errno);
  unsigned int cid = 0;
  int result = ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid);
  int error = errno;
  close(fd);
  return make_number(env, result < 0 ? -error : (double)cid);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"listen", NULL, vsock_listen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"localPort", NULL, vsock_local_port, NULL, NULL, NULL, napi_enumerable, NULL},
      {"connectStart", NULL, vsock_connect_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"waitConnected", NULL, vsock_wait_connected, NULL, NULL, NULL, napi_enumerable, NULL},
      {"cancelConnect", NULL, vsock_cancel_connect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, vsock_close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"localCid", NULL, vsock_local_cid, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerCid", NULL, vsock_peer_cid, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

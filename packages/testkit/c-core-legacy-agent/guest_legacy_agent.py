#!/usr/bin/python3
"""A stand-in for the existing Go guest agent, on gRPC C-core (Debian's python3-grpcio).

It serves guest.GuestService the way the existing agent behaves on the wire, quirks
included, so the host client can be tested against it: see README.md beside this file.
Its server is C-core with no options, so it enforces gRPC's default keepalive policy
exactly as a stock grpc-go server does, which the grpc-js test agents do not.

Usage: guest_legacy_agent.py unix:PATH
Prints "listening unix:PATH" once serving; exits 0 on SIGTERM or SIGINT.
"""

import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import termios
import threading
import types
from concurrent import futures

try:
    import fcntl

    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
except ImportError as error:
    sys.stderr.write(
        "guest_legacy_agent: needs python3-grpcio and python3-protobuf "
        f"(apt-get install python3-grpcio python3-protobuf): {error}\n"
    )
    sys.exit(3)

# What the existing agent sends and reads per data message.
CHUNK = 32 * 1024
# Every call holds a worker for as long as it runs (an Exec until its command exits), so
# this bounds the calls served at once; tests run up to about 40 streams together.
MAX_WORKERS = 64


# --- The protocol: only what the existing agent's .proto has ------------------------
#
# The original `guest` messages and nothing later: no rows, cols or resize (that agent's
# proto never had them), none of guestkit's additions. Built from a descriptor written
# here rather than generated, so every field guestkit added later arrives as an unknown
# field and is ignored, exactly as the Go agent ignores it.

_F = descriptor_pb2.FieldDescriptorProto
_TYPES = {
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "bool": _F.TYPE_BOOL,
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
    "uint32": _F.TYPE_UINT32,
}

# message name -> [(field, number, type, flags)]; a type that is not scalar is a message
# of this package. Flags: "repeated", "map" (map<string,string>), "oneof:NAME".
_MESSAGES = {
    "ExecRequest": [
        ("start", 1, "ExecStart", "oneof:request"),
        ("stdin", 2, "bytes", "oneof:request"),
    ],
    "ExecStart": [
        ("command", 1, "string", "repeated"),
        ("tty", 2, "bool", ""),
        ("env", 3, "string", "map"),
        ("cwd", 4, "string", ""),
        ("timeout_seconds", 5, "int32", ""),
    ],
    "ExecResponse": [
        ("stdout", 1, "bytes", "oneof:response"),
        ("stderr", 2, "bytes", "oneof:response"),
        ("exit_code", 3, "int32", "oneof:response"),
    ],
    "CopyToGuestRequest": [
        ("start", 1, "CopyToGuestStart", "oneof:request"),
        ("data", 2, "bytes", "oneof:request"),
        ("end", 3, "CopyToGuestEnd", "oneof:request"),
    ],
    "CopyToGuestStart": [
        ("path", 1, "string", ""),
        ("mode", 2, "uint32", ""),
        ("is_dir", 3, "bool", ""),
        ("size", 4, "int64", ""),
        ("mtime", 5, "int64", ""),
        ("uid", 6, "uint32", ""),
        ("gid", 7, "uint32", ""),
    ],
    "CopyToGuestEnd": [],
    "CopyToGuestResponse": [
        ("success", 1, "bool", ""),
        ("error", 2, "string", ""),
        ("bytes_written", 3, "int64", ""),
    ],
    "CopyFromGuestRequest": [
        ("path", 1, "string", ""),
        ("follow_links", 2, "bool", ""),
    ],
    "CopyFromGuestResponse": [
        ("header", 1, "CopyFromGuestHeader", "oneof:response"),
        ("data", 2, "bytes", "oneof:response"),
        ("end", 3, "CopyFromGuestEnd", "oneof:response"),
        ("error", 4, "CopyFromGuestError", "oneof:response"),
    ],
    "CopyFromGuestHeader": [
        ("path", 1, "string", ""),
        ("mode", 2, "uint32", ""),
        ("is_dir", 3, "bool", ""),
        ("is_symlink", 4, "bool", ""),
        ("link_target", 5, "string", ""),
        ("size", 6, "int64", ""),
        ("mtime", 7, "int64", ""),
        ("uid", 8, "uint32", ""),
        ("gid", 9, "uint32", ""),
    ],
    "CopyFromGuestEnd": [("final", 1, "bool", "")],
    "CopyFromGuestError": [
        ("message", 1, "string", ""),
        ("path", 2, "string", ""),
    ],
    "StatPathRequest": [
        ("path", 1, "string", ""),
        ("follow_links", 2, "bool", ""),
    ],
    "StatPathResponse": [
        ("exists", 1, "bool", ""),
        ("is_dir", 2, "bool", ""),
        ("is_file", 3, "bool", ""),
        ("is_symlink", 4, "bool", ""),
        ("link_target", 5, "string", ""),
        ("mode", 6, "uint32", ""),
        ("size", 7, "int64", ""),
        ("error", 8, "string", ""),
    ],
}


def _build_messages():
    file = descriptor_pb2.FileDescriptorProto(name="guest_legacy.proto", package="guest", syntax="proto3")
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        oneofs = []
        for field_name, number, type_name, flags in fields:
            field = message.field.add(name=field_name, number=number, label=_F.LABEL_OPTIONAL)
            if flags == "map":
                # A map is a repeated nested entry message marked map_entry.
                entry = message.nested_type.add(name="EnvEntry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
                entry.field.add(name="value", number=2, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
                field.label = _F.LABEL_REPEATED
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".guest.{name}.EnvEntry"
                continue
            if type_name in _TYPES:
                field.type = _TYPES[type_name]
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".guest.{type_name}"
            if flags == "repeated":
                field.label = _F.LABEL_REPEATED
            elif flags.startswith("oneof:"):
                oneof = flags[len("oneof:") :]
                if oneof not in oneofs:
                    oneofs.append(oneof)
                    message.oneof_decl.add(name=oneof)
                field.oneof_index = oneofs.index(oneof)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    # protobuf 4.21 (Debian 12) has MessageFactory.GetPrototype; later versions replace it.
    get_class = getattr(message_factory, "GetMessageClass", None) or message_factory.MessageFactory(pool).GetPrototype
    return {name: get_class(pool.FindMessageTypeByName(f"guest.{name}")) for name in _MESSAGES}


pb = types.SimpleNamespace(**_build_messages())


# --- Go's wording -------------------------------------------------------------------
#
# Hosts see the Go agent's error strings (Go's os and exec packages), so they are
# reproduced: "open /x: no such file or directory".


def _errno_text(code):
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


def _go_error(op, path, error):
    return f"{op} {path}: {_errno_text(error.errno)}"


def log(text):
    sys.stderr.write(f"[guest-legacy-agent] {text}\n")
    sys.stderr.flush()


# --- Exec ---------------------------------------------------------------------------


class StartError(Exception):
    """The command could not be started; the message is what Go's cmd.Start says."""


def _executable(name):
    # Go's exec.Command resolves a bare name in the agent's own PATH (not the command's env).
    if "/" in name:
        return name
    found = shutil.which(name, path=os.environ.get("PATH", ""))
    if found is None:
        raise StartError(f'exec: "{name}": executable file not found in $PATH')
    return found


def _exit_code(returncode):
    # Go's ProcessState.ExitCode(): -1 for any death by signal, a timeout's SIGKILL included.
    return -1 if returncode < 0 else returncode


def _kill_on_timeout(process, seconds):
    if seconds <= 0:
        return None
    # Like exec.CommandContext: SIGKILL to the direct child only, never its group.
    timer = threading.Timer(seconds, process.kill)
    timer.daemon = True
    timer.start()
    return timer


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _SharedFd:
    """A descriptor several threads use, closed when the last of them lets go of it, so
    that none can read or write the number after it was closed and reused."""

    def __init__(self, fd, users):
        self.fd = fd
        self._users = users
        self._lock = threading.Lock()

    def release(self):
        with self._lock:
            self._users -= 1
            if self._users == 0:
                os.close(self.fd)


def _feed_stdin(requests, fd, on_end):
    """Copies stdin messages to `fd` until the client half-closes or the call ends."""
    try:
        for request in requests:
            if request.WhichOneof("request") == "stdin":
                try:
                    _write_all(fd, request.stdin)
                except OSError:
                    pass  # The command stopped reading; Go drops the write error too.
    except Exception:
        pass  # The call was cancelled or the client went away.
    finally:
        on_end()


def _spawn(start, **popen):
    argv = list(start.command)
    if not argv:
        raise StartError("empty command")
    path = _executable(argv[0])
    env = dict(os.environ)
    env.update(start.env)
    try:
        return subprocess.Popen(argv, executable=path, env=env, cwd=start.cwd or None, **popen)
    except OSError as error:
        # Go reports every failure of the child's set-up (a bad cwd too) against the program.
        raise StartError(f"fork/exec {path}: {_errno_text(error.errno)}") from None


def _exec_pipes(start, requests):
    process = _spawn(start, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    timer = _kill_on_timeout(process, start.timeout_seconds)
    # Stdin EOF is the end of the client's stream: the half-close (or the call's end).
    feed = (requests, process.stdin.fileno(), process.stdin.close)
    threading.Thread(target=_feed_stdin, args=feed, daemon=True).start()
    # Everything the command writes is held until it exits (and until every holder of its
    # pipes has closed them): the existing agent buffers output, then sends stdout whole,
    # then stderr whole.
    output = {"stdout": [], "stderr": []}

    def drain(stream, into):
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            into.append(chunk)

    readers = [
        threading.Thread(target=drain, args=(process.stdout, output["stdout"]), daemon=True),
        threading.Thread(target=drain, args=(process.stderr, output["stderr"]), daemon=True),
    ]
    for reader in readers:
        reader.start()
    process.wait()
    for reader in readers:
        reader.join()
    process.stdout.close()
    process.stderr.close()
    if timer:
        timer.cancel()
    for kind in ("stdout", "stderr"):
        data = b"".join(output[kind])
        for offset in range(0, len(data), CHUNK):
            yield pb.ExecResponse(**{kind: data[offset : offset + CHUNK]})
    yield pb.ExecResponse(exit_code=_exit_code(process.returncode))


def _become_controlling_tty():
    # Runs in the child after setsid (start_new_session), with the pty on fd 0.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _exec_tty(start, requests, context):
    # A new pty is 0x0 and the existing agent never sizes it (its proto has no rows,
    # cols or resize).
    master_fd, slave = os.openpty()
    try:
        process = _spawn(
            start,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_become_controlling_tty,
        )
    except StartError:
        os.close(master_fd)
        raise
    finally:
        os.close(slave)
    timer = _kill_on_timeout(process, start.timeout_seconds)
    # Used by the stdin thread and the reader, which may end in either order.
    master = _SharedFd(master_fd, users=2)
    # Stdin goes to the terminal; the end of the client's stream is not passed on (no EOF
    # in TTY mode).
    threading.Thread(target=_feed_stdin, args=(requests, master_fd, master.release), daemon=True).start()
    # The pty is read by a thread of its own so that a client that disconnects does not
    # stop the command: the terminal keeps being drained (into nothing) until it closes.
    chunks = []
    ready = threading.Condition()
    done = []

    def read_terminal():
        while True:
            try:
                chunk = os.read(master_fd, CHUNK)
            except OSError:
                chunk = b""  # EIO: every holder of the terminal's other side has closed it.
            if not chunk:
                break
            if context.is_active():
                with ready:
                    chunks.append(chunk)
                    ready.notify()
        master.release()
        process.wait()
        if timer:
            timer.cancel()
        with ready:
            done.append(_exit_code(process.returncode))
            ready.notify()

    threading.Thread(target=read_terminal, daemon=True).start()
    while True:
        with ready:
            ready.wait_for(lambda: chunks or done)
            pending, chunks[:] = list(chunks), []
            finished = bool(done)
        for chunk in pending:
            yield pb.ExecResponse(stdout=chunk)
        if finished and not pending:
            yield pb.ExecResponse(exit_code=done[0])
            return


def exec_command(requests, context):
    first = next(requests, None)
    if first is None:
        context.abort(grpc.StatusCode.UNKNOWN, "receive start request: EOF")
    if first.WhichOneof("request") != "start":
        context.abort(grpc.StatusCode.UNKNOWN, "first message must be ExecStart")
    start = first.start
    log(f"exec: tty={start.tty} argv0={start.command[0] if start.command else ''!r}")
    try:
        if start.tty:
            yield from _exec_tty(start, requests, context)
        else:
            yield from _exec_pipes(start, requests)
    except StartError as error:
        # grpc-go turns a handler's plain error into UNKNOWN with the error text.
        context.abort(grpc.StatusCode.UNKNOWN, f"start command: {error}")


# --- CopyToGuest --------------------------------------------------------------------


def _copy_failed(text):
    return pb.CopyToGuestResponse(success=False, error=text)


def _until_end(requests, on_data=None):
    """Reads the entry's messages up to its `end`; False if the stream ended first."""
    for request in requests:
        kind = request.WhichOneof("request")
        if kind == "end":
            return True
        if kind == "data" and on_data:
            on_data(request.data)
    return False


def copy_to_guest(requests, context):
    # One entry per stream: after the first `end` the answer goes out and nothing more is
    # read, so anything else the client sent on this stream is lost.
    first = next(requests, None)
    if first is None:
        return _copy_failed("receive start request: EOF")
    if first.WhichOneof("request") != "start":
        return _copy_failed("first message must be CopyToGuestStart")
    start = first.start
    path = start.path
    # Modes go through the umask and lose setuid/setgid/sticky; parents are not created.
    mode = start.mode & 0o777
    log(f"copy-to-guest: path={path!r} is_dir={start.is_dir}")
    if start.is_dir:
        if os.path.exists(path) and not os.path.isdir(path):
            return _copy_failed(f"cannot create directory: {path} is a file")
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass  # An existing directory keeps its mode.
        except OSError as error:
            return _copy_failed(f"create directory: {_go_error('mkdir', path, error)}")
        # Directories get no mtime and no owner.
        if not _until_end(requests):
            return _copy_failed("receive: stream ended before end")
        return pb.CopyToGuestResponse(success=True, bytes_written=0)

    if os.path.isdir(path):
        return _copy_failed(f"cannot copy file: {path} is a directory")
    try:
        # Written in place, not atomically; an existing file keeps its mode.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    except OSError as error:
        return _copy_failed(f"create file: {_go_error('open', path, error)}")
    written = [0]

    def write(data):
        _write_all(fd, data)
        written[0] += len(data)

    try:
        # `size` is not checked: whatever arrived is what the file holds.
        ended = _until_end(requests, write)
    except OSError as error:
        return _copy_failed(f"write: {_go_error('write', path, error)}")
    finally:
        os.close(fd)
    if not ended:
        return _copy_failed("receive: stream ended before end")
    if start.mtime > 0:
        os.utime(path, (start.mtime, start.mtime))
    # Ownership only when both ids are non-zero, so root:root can never be asked for.
    if start.uid > 0 and start.gid > 0:
        try:
            os.chown(path, start.uid, start.gid)
        except OSError as error:
            log(f"warning: chown {path}: {_errno_text(error.errno)}")
    return pb.CopyToGuestResponse(success=True, bytes_written=written[0])


# --- CopyFromGuest ------------------------------------------------------------------


def _copy_error(message, path):
    return pb.CopyFromGuestResponse(error=pb.CopyFromGuestError(message=message, path=path))


def _info(path, follow):
    return os.stat(path) if follow else os.lstat(path)


def _walk(root, follow, errors):
    """Every entry under `root`, root first, names in byte order, like Go's WalkDir."""
    base = os.path.basename(root.rstrip("/")) or "/"
    entries = []

    def visit(path, relative, info):
        entries.append((path, relative, info))
        # Never descends through a link, even when following links (WalkDir does not).
        if not stat.S_ISDIR(info.st_mode) or (path != root and os.path.islink(path)):
            return
        try:
            names = sorted(os.listdir(path), key=os.fsencode)
        except OSError as error:
            errors.append(_copy_error(f"walk: {_go_error('open', path, error)}", path))
            return
        for name in names:
            child = os.path.join(path, name)
            try:
                child_info = _info(child, follow)
            except OSError as error:
                errors.append(_copy_error(f"info: {_go_error('stat' if follow else 'lstat', child, error)}", child))
                continue
            visit(child, f"{relative}/{name}", child_info)

    visit(root, base, _info(root, follow))
    return entries


def _entry_messages(path, relative, info, follow, final):
    mode = info.st_mode
    is_link = stat.S_ISLNK(mode)
    header = pb.CopyFromGuestHeader(
        path=relative,
        mode=stat.S_IMODE(mode) & 0o777,
        is_dir=stat.S_ISDIR(mode),
        is_symlink=is_link,
        mtime=info.st_mtime_ns // 1_000_000_000,
        uid=info.st_uid,
        gid=info.st_gid,
    )
    if is_link:
        try:
            header.link_target = os.readlink(path)
        except OSError as error:
            yield _copy_error(f"readlink: {_go_error('readlink', path, error)}", path)
            return
    if not header.is_dir:
        # For a link too: its lstat size, the length of its target.
        header.size = info.st_size
    yield pb.CopyFromGuestResponse(header=header)
    if stat.S_ISREG(mode):
        try:
            file = open(path, "rb", buffering=0)
        except OSError as error:
            yield _copy_error(f"open: {_go_error('open', path, error)}", path)
            return
        with file:
            for chunk in iter(lambda: file.read(CHUNK), b""):
                yield pb.CopyFromGuestResponse(data=chunk)
    yield pb.CopyFromGuestResponse(end=pb.CopyFromGuestEnd(final=final))


def copy_from_guest(request, context):
    root, follow = request.path, request.follow_links
    log(f"copy-from-guest: path={root!r} follow_links={follow}")
    try:
        _info(root, follow)
    except OSError as error:
        yield _copy_error(f"stat: {_go_error('stat' if follow else 'lstat', root, error)}", root)
        return
    # The whole tree is walked before the first byte is sent.
    errors = []
    entries = _walk(root, follow, errors)
    yield from errors
    # FIFOs, sockets and devices are left out (the tests never copy them).
    entries = [e for e in entries if stat.S_ISDIR(e[2].st_mode) or stat.S_ISREG(e[2].st_mode) or stat.S_ISLNK(e[2].st_mode)]
    if not entries:
        yield _copy_error("not a regular file, directory or symlink", root)
        return
    for index, (path, relative, info) in enumerate(entries):
        for message in _entry_messages(path, relative, info, follow, index == len(entries) - 1):
            yield message
            if message.WhichOneof("response") == "error":
                return


# --- StatPath -----------------------------------------------------------------------


def stat_path(request, context):
    try:
        info = _info(request.path, request.follow_links)
    except FileNotFoundError:
        return pb.StatPathResponse(exists=False)
    except OSError as error:
        op = "stat" if request.follow_links else "lstat"
        return pb.StatPathResponse(exists=False, error=_go_error(op, request.path, error))
    response = pb.StatPathResponse(
        exists=True,
        is_dir=stat.S_ISDIR(info.st_mode),
        is_file=stat.S_ISREG(info.st_mode),
        # Permission bits only: /tmp is 0777.
        mode=stat.S_IMODE(info.st_mode) & 0o777,
        size=info.st_size,
    )
    if stat.S_ISLNK(info.st_mode):
        response.is_symlink = True
        try:
            response.link_target = os.readlink(request.path)
        except OSError:
            pass
    return response


# --- Server -------------------------------------------------------------------------


def _handler():
    def codec(request, response):
        return {"request_deserializer": request.FromString, "response_serializer": response.SerializeToString}

    return grpc.method_handlers_generic_handler(
        "guest.GuestService",
        {
            "Exec": grpc.stream_stream_rpc_method_handler(exec_command, **codec(pb.ExecRequest, pb.ExecResponse)),
            "CopyToGuest": grpc.stream_unary_rpc_method_handler(
                copy_to_guest, **codec(pb.CopyToGuestRequest, pb.CopyToGuestResponse)
            ),
            "CopyFromGuest": grpc.unary_stream_rpc_method_handler(
                copy_from_guest, **codec(pb.CopyFromGuestRequest, pb.CopyFromGuestResponse)
            ),
            "StatPath": grpc.unary_unary_rpc_method_handler(stat_path, **codec(pb.StatPathRequest, pb.StatPathResponse)),
        },
    )


def main():
    if len(sys.argv) != 2 or not sys.argv[1].startswith("unix:"):
        sys.stderr.write("usage: guest_legacy_agent.py unix:PATH\n")
        return 2
    address = sys.argv[1]
    # The umask the existing agent runs under (its init's): an upload's 0666 lands as 0644.
    os.umask(0o022)
    # No options: C-core's defaults are the point (keepalive enforcement included: pings
    # more often than every 5 minutes earn strikes, and past 2 strikes the server sends
    # GOAWAY ENHANCE_YOUR_CALM "too_many_pings"), as grpc-go's grpc.NewServer() has them.
    # No health or reflection service: those methods are UNIMPLEMENTED.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS))
    server.add_generic_rpc_handlers((_handler(),))
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as error:
        bound, reason = 0, error
    else:
        reason = "bind failed"
    if not bound:
        sys.stderr.write(f"guest_legacy_agent: cannot listen on {address}: {reason}\n")
        return 1
    stopping = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopping.set())
    server.start()
    print(f"listening {address}", flush=True)
    stopping.wait()
    server.stop(grace=None).wait(timeout=2)
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: a worker still waiting for a command must not hold the exit. The
    # commands themselves go on running, as they would when the Go agent is stopped.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())

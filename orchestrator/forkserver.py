"""The build workers' fork server: a process that imports TensorFlow and the converter while a
fresh local Ray starts, and forks, for each build worker, a builder that has them imported, so
that even the first sweep of a fresh Ray builds at once.

TensorFlow's import takes 2.5 s of one core (3 s when two workers import side by side), and a
fresh Python process pays it again. Ray starts its workers only about 0.5 s before `ray.init`
returns, so a worker's own import lands in the sweep; the server's import runs beside Ray's
start instead (3-4 s), and a forked builder has it for free (its pages shared with the server's
until written). Ray's workers themselves are started by Ray as fresh processes, which is what
makes them Ray's to schedule, retry and stop; the builder is a child of the server, not of Ray.

How a build runs: a build-pool task calls `call(fn, ...)` in its Ray worker. The first call in a
worker connects to the server, which forks a builder for it; the call, and every later one from
that worker, is pickled to the builder, run there with the worker's environment, working
directory and import path, and its result (or exception) pickled back. A builder serves one
worker, and ends when that worker disconnects or ends (the server kills it then, even in the
middle of a call); a builder that dies (a segfault in the converter) takes its worker along
(SIGKILL), so Ray sees the worker die and retries the task as it would have. Where no server is
reachable (an existing cluster's nodes: `start` runs only beside a local Ray) the call runs in
the worker itself.

One server per driver process, started by `fanout.connect` before it starts a local Ray and
reused by later ones; it ends when the driver does (its standard input is a pipe from the
driver). Workers find it through `ENV_VAR` in the environment Ray gives them. The socket is a
file in a directory only this user can open; it never touches the network.
"""
from __future__ import annotations

import importlib
import os
import signal
import socket
import sys
from multiprocessing.connection import Connection

ENV_VAR = "MVPFARM_FORKSERVER"       # the server's socket, for the workers of a local Ray

_server = None                       # (Popen, socket dir, socket path) of this process's server
_builder: Connection | None = None   # this worker's builder, once attached
_no_server = False                   # this worker found no server: calls run in it


def start(verbose: bool = False) -> str:
    """Starts this process's fork server (once; later calls return the same) and returns its
    socket's path, for `ENV_VAR`; OSError if it cannot (no socket, no process). The socket
    listens before this returns, so a worker that connects at once waits in its backlog while the
    server imports TensorFlow. The server says nothing unless `verbose` (TensorFlow's C++
    start-up lines)."""
    global _server
    if _server is None or _server[0].poll() is not None:
        import atexit
        import subprocess
        from pathlib import Path
        if _server is None:
            atexit.register(stop)
        else:
            stop()
        sock_dir = _socket_dir()
        path = os.path.join(sock_dir, "s")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(64)
        # the server imports the orchestrator this driver runs, wherever that was imported from
        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])]))
        quiet = None if verbose else subprocess.DEVNULL
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.forkserver", str(listener.fileno())],
                                stdin=subprocess.PIPE, stdout=quiet, stderr=quiet, pass_fds=[listener.fileno()],
                                env=env, cwd=os.getcwd(), start_new_session=True)   # no Ctrl-C from the terminal
        listener.close()
        _server = (proc, sock_dir, path)
    return _server[2]


# A Unix socket's path holds at most 107 bytes: a deep TMPDIR (a CI runner's, a macOS one; Ray's
# own advice for one is RAY_TMPDIR) would leave no room, so /tmp is the second choice.
_MAX_SOCKET_PATH_BYTES = 100


def _socket_dir() -> str:
    """A new directory (mode 0700) for the socket: in the temp directory, or /tmp."""
    import tempfile
    sock_dir = tempfile.mkdtemp(prefix="mvpfarm-fork-")
    if len(os.path.join(sock_dir, "s").encode()) > _MAX_SOCKET_PATH_BYTES:
        os.rmdir(sock_dir)
        sock_dir = tempfile.mkdtemp(prefix="mvpfarm-fork-", dir="/tmp")
    return sock_dir


def stop() -> None:
    """Ends this process's server (a builder ends with its worker)."""
    global _server
    if _server is None:
        return
    import shutil
    proc, sock_dir, _ = _server
    _server = None
    proc.kill()                        # nothing in it to keep: it may still be importing
    proc.wait()
    shutil.rmtree(sock_dir, ignore_errors=True)


def server_pid() -> int | None:
    """The pid of this process's running server: every builder's parent."""
    return _server[0].pid if _server is not None and _server[0].poll() is None else None


# --- in a Ray worker ---------------------------------------------------------------------------
def _attach() -> Connection | None:
    global _builder, _no_server
    if _builder is None and not _no_server:
        path = os.environ.get(ENV_VAR)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if not path:
                raise FileNotFoundError(ENV_VAR)
            sock.connect(path)
        except OSError:
            sock.close()
            _no_server = True          # an existing cluster's node, or the server has gone
            return None
        _builder = Connection(sock.detach())
        _builder.send({"env": dict(os.environ), "cwd": os.getcwd(), "path": list(sys.path)})
    return _builder


def call(fn, *args, on_event=None, **kwargs):
    """fn(*args, **kwargs) in this worker's builder (in this process where there is none).
    With `on_event`, fn gets an `on_event` keyword too, which runs `on_event` here, in the
    worker: a builder has no Ray connection (e.g. training counts its epochs through it)."""
    conn = _attach()
    if conn is None:
        return fn(*args, **kwargs, **({"on_event": on_event} if on_event is not None else {}))
    conn.send((fn.__module__, fn.__qualname__, args, kwargs, on_event is not None))
    while True:
        try:
            kind, value = conn.recv()
        except (EOFError, OSError):
            # the builder died in the middle of fn (TensorFlow's converter segfaults on some
            # graphs): die with it, so that Ray retries the task as it retries a worker's crash
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "event":
            on_event(*value)
        elif kind == "error":
            raise value
        else:
            return value


# --- the server and its builders -------------------------------------------------------------------
def _serve(listen_fd: int) -> None:
    import selectors
    import struct
    listener = socket.socket(fileno=listen_fd)
    from orchestrator import build_pool
    build_pool.warm_up_imports()              # what a warm-up task imports where there is no server
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)           # builders are reaped as they end
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(sys.stdin, selectors.EVENT_READ, "driver")
    watched: dict[int, int] = {}        # a worker's pidfd: its builder's pidfd
    while True:
        for key, _ in sel.select():
            if key.data == "driver":
                if not os.read(sys.stdin.fileno(), 4096):
                    return                              # the driver has gone, or `stop`
            elif key.data == "accept":
                sock, _ = listener.accept()
                worker_pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                 struct.calcsize("3i")))[0]
                builder = os.fork()
                if builder == 0:
                    sel.close()
                    for fd in [listen_fd, sys.stdin.fileno(), *watched, *watched.values()]:
                        os.close(fd)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    _build_for(Connection(sock.detach()))       # never returns
                sock.close()
                try:
                    worker = os.pidfd_open(worker_pid)
                except ProcessLookupError:
                    worker = None
                if worker is not None:
                    watched[worker] = os.pidfd_open(builder)     # pidfds: no pid reused by then
                    sel.register(worker, selectors.EVENT_READ, "worker")
            else:
                # a worker has ended: so does its builder, even in the middle of a call (a
                # conversion left running for a worker that Ray stopped holds a core for nothing)
                builder = watched.pop(key.fd)
                sel.unregister(key.fd)
                try:
                    signal.pidfd_send_signal(builder, signal.SIGKILL)
                except ProcessLookupError:
                    pass                                # it had ended already
                os.close(builder)
                os.close(key.fd)


def _build_for(conn: Connection) -> None:
    """A builder: takes on its worker's environment, then runs its calls until it disconnects."""
    try:
        worker = conn.recv()
    except (EOFError, OSError):
        os._exit(0)
    os.environ.clear()
    os.environ.update(worker["env"])
    os.chdir(worker["cwd"])
    sys.path[:] = worker["path"]
    import random

    import numpy as np
    random.seed()                                  # a fresh process's seeds, not the server's
    np.random.seed()
    while True:
        try:
            module, name, args, kwargs, events = conn.recv()
        except (EOFError, OSError):
            os._exit(0)                            # the worker has gone
        if events:
            kwargs["on_event"] = lambda *a: conn.send(("event", a))
        try:
            fn = importlib.import_module(module)
            for part in name.split("."):
                fn = getattr(fn, part)
            reply = ("ok", fn(*args, **kwargs))
        except Exception as e:                     # the worker raises it, as fn would have
            reply = ("error", e)
        try:
            conn.send(reply)
        except Exception as e:                     # a result or an exception that does not pickle
            conn.send(("error", RuntimeError(f"{type(e).__name__}: {e} (sending {module}.{name}'s result)")))


if __name__ == "__main__":
    _serve(int(sys.argv[1]))

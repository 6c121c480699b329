"""Test servers forked from a process that has already imported Tether.

Importing `tether.cli` (FastAPI, SQLAlchemy, DBOS, pydantic, the providers...) costs about
1.5 s of CPU, most of what starting a test server costs; the suite starts hundreds of them
on two cores. A zygote (one per test process, started on first use) imports it once; each
server is then `os.fork()` of the zygote running `tether.cli`'s main as `python -m
tether.cli ARGS` would, in a process of its own: its own pid, environment, working
directory, stdout and stderr (the log file), stdin /dev/null, nothing else open. It is
killed, signalled and waited for by pid, and its exit status is what `subprocess.Popen`
would report (`ZygoteProcess` stands in for the Popen object). One-shot commands (`tether
users add`) run the same way (`run`), with their stdin, stdout and stderr as files.

What the zygote imports is what every server imports before reading its arguments or
environment (nothing of Tether reads either at import), and the model layer (`tether.llm.
turn`, pydantic-ai and both providers' SDKs: ~2.5 s more of CPU) that a server loads, on a
thread, at its first model turn (it sets no logger, warning filter, signal or thread at
import). A server forked from it runs the same code on the same settings as one started
from scratch; its first model turn finds the model layer loaded, as every later turn of a
server does. (benchmarks/first_turn measures that first load, in a server of its own.)
TETHER_TEST_ZYGOTE=0 starts every server from scratch instead.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def enabled() -> bool:
    return os.environ.get("TETHER_TEST_ZYGOTE", "1") != "0"


class ZygoteProcess:
    """The part of `subprocess.Popen` the tests use, for a process forked by the zygote.
    Its exit status comes over `conn` (the zygote reaps it)."""

    def __init__(self, pid: int, conn: socket.socket) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._conn = conn
        self._buf = b""

    def _read_status(self, timeout: float | None) -> None:
        if self.returncode is not None:
            return
        self._conn.settimeout(timeout)
        while b"\n" not in self._buf:
            try:
                chunk = self._conn.recv(4096)
            except (TimeoutError, BlockingIOError):
                return
            if not chunk:
                raise RuntimeError(f"the zygote went away before process {self.pid} ended")
            self._buf += chunk
        self.returncode = int(json.loads(self._buf.split(b"\n", 1)[0])["status"])
        self._conn.close()

    def poll(self) -> int | None:
        self._read_status(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._read_status(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired([f"pid {self.pid}"], timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass  # ended meanwhile: its status is on its way

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _Zygote:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tether-zygote-")
        self.path = os.path.join(self.dir, "sock")
        self.log = Path(self.dir) / "zygote.log"
        # stdin is a pipe from this process: the zygote ends when this process does.
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.helpers.zygote", self.path],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.proc.stdout.close()
        if line.strip() != b"ready":
            raise RuntimeError(f"the test zygote did not start:\n{self.log.read_text()}")

    def spawn(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        log: Path,
        stderr: Path | None = None,
        stdin: Path | None = None,
    ) -> ZygoteProcess:
        for out in (log, stderr):
            if out is not None:
                out.open("wb").close()  # there from the start, as Popen's stdout file is
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.path)
        req = {
            "args": args,
            "env": env,
            "cwd": str(cwd),
            "log": str(log),
            "stderr": str(stderr or log),
            "stdin": str(stdin or os.devnull),
        }
        conn.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = conn.recv(4096)
            if not chunk:
                raise RuntimeError(f"the test zygote did not fork:\n{self.log.read_text()}")
            buf += chunk
        first, rest = buf.split(b"\n", 1)
        p = ZygoteProcess(int(json.loads(first)["pid"]), conn)
        p._buf = rest
        return p

    def close(self) -> None:
        """End the zygote (its running children go on until the tests stop them)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for path in (self.path, self.log):
            try:
                os.unlink(path)
            except OSError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass


_zygote: _Zygote | None = None
_lock = threading.Lock()


@atexit.register
def _close() -> None:
    if _zygote is not None:
        _zygote.close()


def spawn(
    args: list[str],
    env: dict[str, str],
    cwd: Path,
    log: Path,
    stderr: Path | None = None,
    stdin: Path | None = None,
) -> ZygoteProcess:
    """`python -m tether.cli ARGS` with `env`, in `cwd`: stdout to `log`, stderr to
    `stderr` (or `log`), stdin from `stdin` (or /dev/null)."""
    global _zygote
    with _lock:
        if _zygote is None or _zygote.proc.poll() is not None:
            _zygote = _Zygote()
        z = _zygote
    return z.spawn(args, env, cwd, log, stderr, stdin)


def run(
    args: list[str], env: dict[str, str], cwd: Path, input: str = ""
) -> subprocess.CompletedProcess[str]:
    """As `subprocess.run([python, -m, tether.cli, *args], input=input, capture_output=True,
    text=True, env=env, cwd=cwd)`."""
    with tempfile.TemporaryDirectory(prefix="tether-run-") as d:
        files = [Path(d) / name for name in ("stdin", "stdout", "stderr")]
        files[0].write_text(input)
        p = spawn(args, env, cwd, files[1], stderr=files[2], stdin=files[0])
        code = p.wait()
        out, err = (f.read_text() for f in files[1:])
    return subprocess.CompletedProcess(["tether.cli", *args], code, out, err)


# --- the zygote itself ---------------------------------------------------------------


def _read_line(conn: socket.socket) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0]


def _serve(path: str) -> tuple[dict[str, Any], list[int]]:
    """Fork a child per request; report each child's exit status on its connection.
    Returns only in a child: its request, and the descriptors it must close."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wake_r, selectors.EVENT_READ, "reap")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "parent")
    children: dict[int, socket.socket] = {}
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "parent":
                if not os.read(sys.stdin.fileno(), 4096):
                    sys.exit(0)  # the test process ended
            elif key.data == "accept":
                conn, _ = listener.accept()
                req = json.loads(_read_line(conn))
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    fds = [listener.fileno(), wake_r, wake_w, conn.fileno()]
                    fds += [c.fileno() for c in children.values()]
                    sel.close()
                    return req, fds
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                children[pid] = conn
            else:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                while children:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    conn = children.pop(pid, None)
                    if conn is not None:
                        try:
                            code = os.waitstatus_to_exitcode(status)
                            conn.sendall(json.dumps({"status": code}).encode() + b"\n")
                        except OSError:
                            pass  # nobody is waiting for it any more
                        conn.close()


def _main(path: str) -> None:
    import runpy

    import tether.cli  # the imports every server would otherwise repeat (the command line,
    import tether.launch  # and the server, which only serve and worker import)
    import tether.llm.turn  # noqa: F401 - and the model layer, which a first turn loads
    from tether.llm import providers

    for provider in ("anthropic", "openai"):
        providers.load_sdk(provider)

    req, fds = _serve(path)
    # In the child: as `subprocess.Popen([python, -m, tether.cli, *args], env=..., cwd=...,
    # stdin=..., stdout=log, stderr=...)` would have started it.
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    fds = [
        os.open(req["stdin"], os.O_RDONLY),
        os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    if req["stderr"] != req["log"]:
        fds.append(os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
    else:
        fds.append(fds[1])
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds):
        os.close(fd)
    sys.path[0] = os.getcwd()  # as `python -m` puts it
    sys.argv = ["tether.cli", *req["args"]]
    # Run as `__main__` only, as `python -m` does (its modules stay imported).
    del sys.modules["tether.cli"]
    runpy.run_module("tether.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main(sys.argv[1])

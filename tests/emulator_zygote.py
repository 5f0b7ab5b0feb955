"""A process that has imported what `dasctl serve` needs and forks one emulator per request (a zygote).

A `dasctl serve` spends about 0.4 s of CPU importing socketio, aiohttp and numpy before it listens, and a
run of the suite starts about a hundred of them. Here the imports happen once per xdist worker; each fork
then runs dasctl's own entry point, `dasctl.cli.main()`, with `serve` and the test's flags, exactly as
`python -m dasctl serve ...` does after its imports: same code, real sockets on 127.0.0.1, its own log.

Protocol (one JSON object a line): the worker writes {"args": [...], "log": PATH, "env": {...},
"cwd": PATH, "umask": N} on stdin; the zygote answers {"started": PID} for each, and {"exited": PID,
"code": N} when one ends (N as subprocess gives it: -SIGNAL for a death by a signal). stdin's end ends the
zygote, not the emulators (the suite's check for processes that outlive it names any left).

The zygote runs as `python tests/emulator_zygote.py` (it imports dasctl's emulator then); the worker side,
Zygote and ForkedProcess, imports nothing heavy. tests/conftest.py starts one per worker (launch_emulator).
"""

from __future__ import annotations

import json
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

MAIN = str(Path(__file__).resolve().parent.parent / "dasctl" / "__main__.py")  # argv[0] of `-m dasctl`


# --- the worker's side ----------------------------------------------------------------------------------
class ForkedProcess:
    """What the tests do with an emulator's subprocess.Popen (pid, poll, wait, send_signal, terminate, kill,
    returncode), for one the zygote forked: its exit code comes from the zygote, which reaps it."""

    def __init__(self, zygote: Zygote, pid: int, args: list[str]) -> None:
        self.zygote, self.pid, self.args = zygote, pid, args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.exit_code(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.zygote.exit_code(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # as Popen: never a signal to a pid that may have been reused
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The worker's handle on its zygote: spawn() an emulator, learn when one exits, close() at the end."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self._started: queue.Queue[int | None] = queue.Queue()
        self._exits: dict[int, int] = {}
        self._changed = threading.Condition()
        self._lock = threading.Lock()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), name="emulator-zygote",
                         daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            message = json.loads(line)
            if "started" in message:
                self._started.put(message["started"])
            else:
                with self._changed:
                    self._exits[message["exited"]] = message["code"]
                    self._changed.notify_all()
        self._started.put(None)  # the zygote is gone

    def spawn(self, args: list[str], log: Path) -> ForkedProcess:
        """`python -m dasctl ARGS` with stdout and stderr to log, this process's environment, working
        directory and umask."""
        log.write_bytes(b"")  # there before the emulator runs, as with Popen(stdout=open(log, "wb"))
        umask = os.umask(0o022)
        os.umask(umask)
        request = {"args": args, "log": str(log), "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask}
        with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            pid = self._started.get(timeout=60)
        if pid is None:
            raise RuntimeError(f"the emulator zygote ended with {self.proc.wait()}")
        return ForkedProcess(self, pid, args)

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits or self.proc.poll() is not None, timeout)
            return self._exits.get(pid)

    def close(self) -> None:
        """End the zygote (the emulators it started are the tests' to stop)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_running: list[Zygote] = []  # here, not in conftest: tests that import tests.conftest get a second copy of it


def started() -> Zygote:
    """This process's zygote, started with its first emulator."""
    if not _running:
        _running.append(Zygote())
    return _running[0]


def close() -> None:
    """End this process's zygote, if it has one (at the end of the session)."""
    while _running:
        _running.pop().close()


# --- the zygote -----------------------------------------------------------------------------------------
def _preload() -> None:
    """What `python -m dasctl serve` imports before it listens (the fork skips all of it)."""
    import dasctl.cli
    import dasctl.cli.app
    import dasctl.cli.common
    import dasctl.cli.serve
    import dasctl.emulator.app
    import dasctl.emulator.options
    import dasctl.logs  # noqa: F401


def _become_emulator(request: dict[str, Any], inherited: list[int]) -> None:
    """In the forked child: the process `python -m dasctl serve ARGS >LOG 2>&1 </dev/null` would be."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in inherited:
            os.close(fd)
        log = os.open(request["log"], os.O_WRONLY)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        # the standard streams as a new interpreter opens them on a file and /dev/null
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        sys.argv = [MAIN, *request["args"]]
        from dasctl.cli import main

        main()  # ends the process with the command's exit code
    finally:
        os._exit(1)


def _report(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _report({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def main() -> None:
    from dasctl.cli import BLAS_THREADS

    os.environ.setdefault(*BLAS_THREADS)  # as dasctl.cli.main() does before the imports the forks skip
    _preload()
    wakeup = os.pipe()
    for fd in wakeup:
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wakeup[1])
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the selector through the pipe
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, "requests")
    selector.register(wakeup[0], selectors.EVENT_READ, "children")
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.data == "children":
                try:
                    os.read(wakeup[0], 4096)
                except BlockingIOError:
                    pass
                _reap()
                continue
            chunk = os.read(0, 65536)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                pid = os.fork()
                if pid == 0:
                    _become_emulator(json.loads(line), [*wakeup, selector.fileno()])
                _report({"started": pid})


if __name__ == "__main__":
    main()

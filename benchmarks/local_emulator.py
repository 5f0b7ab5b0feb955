"""A `dasctl serve` on a free loopback port for the length of a benchmark, always stopped afterwards."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunningEmulator:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_emulator(*serve_flags: str, log: Path | None = None, quiet: bool = True,
                     receipts: Path | None = None) -> Iterator[RunningEmulator]:
    """Start `dasctl -q serve` with these flags, wait until it listens; stop it (TERM, then KILL) at exit.
    quiet=False: without -q, so that LOG gets the session log (one line per terminal event).
    receipts: through receiving_emulator.py, which notes there when each call's audio arrived."""
    port = free_port()
    command = [sys.executable, "-m", "dasctl", *(["-q"] if quiet else []), "serve", "--host", "127.0.0.1",
               "--port", str(port), *serve_flags]
    if receipts is not None:
        command[1:3] = [str(Path(__file__).with_name("receiving_emulator.py")), str(receipts), "--"]
    if log is None:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    else:
        with log.open("wb") as out:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                where = f"; see {log}" if log else ""
                raise SystemExit(f"the emulator exited with {proc.returncode}{where}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the emulator did not listen on {port} within 20 s") from None
                time.sleep(0.05)
        yield RunningEmulator(port, proc)
    finally:
        stop(proc, 10)


def stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """TERM, then KILL when it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

"""Shared test fixtures: an isolated config dir for every test, the real emulator, the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent

#: The emulator's documented demo client (the built-in `local` profile uses it).
DEMO_CLIENT_ID = "dasctl-demo"
DEMO_CLIENT_SECRET = "dasctl-demo-secret"


@pytest.fixture(autouse=True)
def isolated_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test can touch the real home: every test gets its own DASCTL_CONFIG_DIR and no DASCTL_* leaks in."""
    for name in list(os.environ):
        if name.startswith("DASCTL_"):
            monkeypatch.delenv(name)
    config_dir = tmp_path_factory.mktemp("dasctl-config")
    monkeypatch.setenv("DASCTL_CONFIG_DIR", str(config_dir))
    # No keyring daemon on test machines; tests that want a keyring choose one explicitly.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("NO_COLOR", "1")
    return config_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"emulator did not listen on {port} within {timeout}s")


@dataclass
class Emulator:
    """A `dasctl serve` process on 127.0.0.1."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/socket.io/oauth2/token"

    @property
    def twilio_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/audio/twilio"

    @property
    def audiohook_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/audio/audiohook"

    def client_env(self) -> dict[str, str]:
        """Environment that points the built-in `local` profile at this emulator."""
        return {"DASCTL_PROFILE": "local", "DASCTL_URL": self.url}

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def start_emulator(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    """Factory: start `dasctl serve` with extra flags (fault injection, TTLs) on a free port."""
    started: list[Emulator] = []

    def start(*args: str) -> Emulator:
        port = free_port()
        log = tmp_path / f"emulator-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dasctl", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        emulator = Emulator(port, proc, log, list(args))
        started.append(emulator)
        wait_for_port(port, proc)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One plain emulator shared by the tests that need no special flags."""
    port = free_port()
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dasctl", "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    emulator = Emulator(port, proc, log)
    wait_for_port(port, proc)
    yield emulator
    emulator.stop()


@pytest.fixture
def dasctl(isolated_config: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `dasctl` in a subprocess: (args..., env=, input=, timeout=) -> CompletedProcess."""

    def run(
        *args: str,
        env: dict[str, str] | None = None,
        input: str | bytes | None = None,
        timeout: float = 60,
        text: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "dasctl", *args],
            env=full_env,
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    return run

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
#: the credential store key every test runs with (base64 of 32 bytes; see isolated_config)
TEST_STORE_KEY = "dGVzdC1zdG9yZS1rZXktMzItYnl0ZXMtZXhhY3RseSE="


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
    # Every store is encrypted (a team store needs a key): one fixed test key, also as the local key file
    # (so that a dasctl started with only DASCTL_CONFIG_DIR, in tmux, finds it), so that tests about other
    # things see no "key kept in FILE" warning; tests/test_vault*.py remove both to test the implicit key.
    monkeypatch.setenv("DASCTL_STORE_KEY", TEST_STORE_KEY)
    key_file = config_dir / "store.key"
    key_file.write_text(TEST_STORE_KEY + "\n")
    key_file.chmod(0o600)
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


def launch_emulator(log_dir: Path, *args: str) -> Emulator:
    """Start `dasctl serve` with these flags on a free port of 127.0.0.1, its log in log_dir; ready."""
    port = free_port()
    log = log_dir / f"emulator-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dasctl", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    emulator = Emulator(port, proc, log, list(args))
    try:
        wait_for_port(port, proc)
    except BaseException:
        emulator.stop()
        raise
    return emulator


@pytest.fixture
def start_emulator(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    """Factory: start `dasctl serve` with extra flags (fault injection, TTLs) on a free port."""
    started: list[Emulator] = []

    def start(*args: str) -> Emulator:
        emulator = launch_emulator(tmp_path, *args)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One plain emulator shared by the tests that need no special flags."""
    emulator = launch_emulator(tmp_path_factory.mktemp("emulator"))
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """An emulator that has both an old and a new model (as during a model migration): verify, reenroll."""
    models = ("--model-hash", "old", "--model-hash", "new")
    emulator = launch_emulator(tmp_path_factory.mktemp("emulator"), *models)
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


# --- a real PostgreSQL server for the store tests (Debian's binaries, a throwaway cluster) -------------
def _postgres_bindir() -> Path | None:
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL cluster on a free 127.0.0.1 port under a temp dir, removed afterwards (also on failure);
    yields its base URL (with a password in it, which trust auth ignores: the tests check it is masked).

    PostgreSQL refuses to run as root, so as root the cluster runs as Debian's `postgres` user. Missing
    binaries are installed by scripts/system-deps.sh; if they still are missing the tests FAIL (never skip).
    """
    import shutil
    import tempfile

    bindir = _postgres_bindir()
    if bindir is None:
        subprocess.run(["bash", str(ROOT / "scripts" / "system-deps.sh")], check=False)
        bindir = _postgres_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb) and "
                    "scripts/system-deps.sh could not install it: `apt-get install -y postgresql`")
    as_postgres: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="dasctl-pg-"))
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres", "postgres")
    data, log = base / "data", base / "server.log"
    port = free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*as_postgres, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}{server_log}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "dasctl", "--auth=trust", "-E", "UTF8",
            "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            "start")
        yield f"postgresql://dasctl:pg-test-password@127.0.0.1:{port}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_store_url(postgres_server: str) -> str:
    """A new, empty database on the test server: one per test."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"

"""Shared test fixtures: an isolated config dir for every test, the real emulator, the real CLI."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import emulator_zygote
from tests.emulator_zygote import ForkedProcess
from tests.tmux_server import TmuxServer

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
    proc: subprocess.Popen[bytes] | ForkedProcess
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

    def output(self, since: int = 0) -> str:
        """The log, or what it gained after `mark()` returned `since`."""
        return self.log.read_text(errors="replace")[since:]

    def mark(self) -> int:
        """Where the log ends now: `output(since=mark)` is what came after."""
        return len(self.output())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _announced_port(log: Path, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """The port `dasctl serve --port 0` chose, read from its banner (flushed as soon as it listens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {proc.returncode}: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    raise RuntimeError(f"emulator did not say where it listens within {timeout}s")


def launch_emulator(log_dir: Path, *args: str) -> Emulator:
    """Start `dasctl serve` with these flags on 127.0.0.1, its log in log_dir; ready.

    The kernel picks the port (`--port 0`, read back from the banner) unless the flags name one: a port
    probed free and bound later could be taken meanwhile by another xdist worker's emulator. The process is
    forked by the worker's zygote (tests/emulator_zygote.py), which has done `dasctl serve`'s imports once.
    """
    log = log_dir / f"emulator-{uuid.uuid4().hex[:8]}.log"
    port_args = [] if "--port" in args else ["--port", "0"]
    proc = emulator_zygote.started().spawn(["serve", "--host", "127.0.0.1", *port_args, *args], log)
    emulator = Emulator(0, proc, log, list(args))
    try:
        emulator.port = _announced_port(log, proc) if port_args else int(args[args.index("--port") + 1])
        wait_for_port(emulator.port, proc)
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
def module_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A plain emulator for one module's tests alone, for tests that count the sessions it ran.

    Its log holds only that module's sessions (tests of a worker run one after another), so a test counts
    from `mark()` taken at its start, as strong as an emulator of its own and one start-up instead of one
    per test. Not `emulator`: a session another module's test left running could still end in its log.
    """
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


@dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster: where it lives, how to reach it, how to run its tools."""

    base: Path
    port: int
    bindir: Path
    as_postgres: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://dasctl:pg-test-password@127.0.0.1:{self.port}"

    def record(self) -> str:
        return json.dumps({"base": str(self.base), "port": self.port, "bindir": str(self.bindir),
                           "as_postgres": self.as_postgres})

    @classmethod
    def recorded(cls, text: str) -> PostgresCluster:
        known = json.loads(text)
        return cls(Path(known["base"]), known["port"], Path(known["bindir"]), known["as_postgres"])

    def stop(self) -> None:
        import shutil

        if (self.base / "data" / "postmaster.pid").exists():
            subprocess.run([*self.as_postgres, str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"),
                            "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


#: Stops a cluster whose run died without stopping it (pytest killed by a timeout, a CI job cancelled): it
#: polls the run's root process and, once that is gone and the cluster still there, stops and removes it.
_CLUSTER_WATCHDOG = """
import os, shutil, subprocess, sys, time
owner, base, *stop = sys.argv[1:]
while os.path.isdir(base):
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
        break
    except PermissionError:
        pass
    time.sleep(1)
"""


#: The run's root process: the xdist controller (set before it starts the workers, which inherit it), or
#: the one pytest process without xdist. (A worker's parent process is not it: execnet's workers are
#: adopted by init.)
RUN_ROOT = "PYTEST_RUN_ROOT_PID"  # not DASCTL_*: isolated_config clears those
os.environ.setdefault(RUN_ROOT, str(os.getpid()))


def _watch_cluster(cluster: PostgresCluster, owner: int) -> None:
    """Start the watchdog of a cluster (a new session, its own environment: not one of the run's dasctl
    processes, and gone a second after the cluster is removed normally)."""
    stop = [*cluster.as_postgres, str(cluster.bindir / "pg_ctl"), "-D", str(cluster.base / "data"),
            "-m", "immediate", "stop"]
    # sh starts it in the background and exits at once: reaped here, the watchdog left to init
    subprocess.run(["sh", "-c", '"$@" &', "sh", sys.executable, "-c", _CLUSTER_WATCHDOG, str(owner),
                    str(cluster.base), *stop],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   start_new_session=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, timeout=30)


def _start_postgres() -> PostgresCluster:
    """initdb and start a cluster on a free 127.0.0.1 port under a temp dir (TCP only: no socket path,
    whose length limit a long TMPDIR would pass); removed again if it does not come up."""
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
    cluster = PostgresCluster(base, free_port(), bindir, as_postgres)
    data, log = base / "data", base / "server.log"

    def run(*command: str) -> None:
        done = subprocess.run([*as_postgres, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}{server_log}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "dasctl", "--auth=trust", "-E", "UTF8",
            "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
            f"-p {cluster.port} -c unix_socket_directories= -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=400", "start")
        _watch_cluster(cluster, int(os.environ.get(RUN_ROOT, os.getpid())))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every xdist worker of this run sees (the controller's basetemp); basetemp without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL cluster on a free 127.0.0.1 port under a temp dir, removed afterwards (also on failure);
    yields its base URL (with a password in it, which trust auth ignores: the tests check it is masked).

    One cluster per run: the first xdist worker that needs it starts it (under a file lock) and the
    controller stops it when every worker is done (pytest_sessionfinish below); each test still gets a
    database of its own (postgres_store_url). Without xdist the fixture stops it itself.

    PostgreSQL refuses to run as root, so as root the cluster runs as Debian's `postgres` user. Missing
    binaries are installed by scripts/system-deps.sh; if they still are missing the tests FAIL (never skip).
    """
    from filelock import FileLock

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        cluster = _start_postgres()
        try:
            yield cluster.url
        finally:
            cluster.stop()
        return
    record = _shared_dir(tmp_path_factory) / "postgres-cluster.json"
    with FileLock(str(record) + ".lock", timeout=180):
        if not record.exists():
            cluster = _start_postgres()
            record.write_text(cluster.record())
        url = PostgresCluster.recorded(record.read_text()).url
    yield url


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The xdist controller stops the cluster its workers shared (they are all done by now)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    factory: pytest.TempPathFactory | None = getattr(session.config, "_tmp_path_factory", None)
    record = factory.getbasetemp() / "postgres-cluster.json" if factory is not None else None
    if record is not None and record.exists():
        PostgresCluster.recorded(record.read_text()).stop()
        record.unlink()


@pytest.fixture
def postgres_store_url(postgres_server: str) -> str:
    """A new, empty database on the test server: one per test."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


# --- hermetic: signals as a terminal gives them, private tmux servers, no process outlives the run --------
#: Every process a test starts inherits this variable (tmux panes too: the private servers are started
#: from the test process), so the check below finds the run's processes even once they are orphaned.
RUN_MARKER = "PYTEST_DASCTL_RUN"
#: `python -m dasctl ...`, `.venv/bin/dasctl ...`, the shells of tmux panes that run them, and emulators
#: forked by tests/emulator_zygote.py
DASCTL_COMMAND = re.compile(r"(-m dasctl|/dasctl|/tests/emulator_zygote\.py)( |$)")


def _ignore_signal(signum: int, frame: object) -> None:
    """Keeps the test process immune where it was (nohup, `cmd &`), while its children start with the
    default disposition: a caught signal is reset to SIG_DFL on exec, an ignored one stays ignored."""


@pytest.fixture(scope="session", autouse=True)
def _signals_as_on_a_terminal() -> Iterator[None]:
    """Under `nohup make test` SIGHUP is ignored, under `make test &` in a script SIGINT is, and children
    inherit both: the tests that send dasctl those signals would test nohup instead of a terminal. Tests
    that want a signal ignored say so (preexec_fn). Blocked signals are unblocked for the same reason."""
    import signal

    previous = {}
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is signal.SIG_IGN:
            previous[signum] = signal.signal(signum, _ignore_signal)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP, signal.SIGINT, signal.SIGTERM})
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@pytest.fixture(scope="session", autouse=True)
def _no_terminal_size_from_the_runner() -> Iterator[None]:
    """pytest-xdist's workers run with COLUMNS=80, and a developer's shell may export COLUMNS and LINES:
    help text would wrap at the runner's width, and rich in a tmux pane would believe them over the pane's
    real size. Tests see no such variables; one that wants a width sets it."""
    saved = {name: os.environ.pop(name) for name in ("COLUMNS", "LINES") if name in os.environ}
    yield
    os.environ.update(saved)


def _processes_of_this_run(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of live dasctl processes that carry this run's marker or descend from us."""
    me = os.getpid()
    parents: dict[int, int] = {}
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
            if state in ("Z", "X"):
                continue  # already dead, only not yet reaped
            parents[pid] = int(ppid)
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            if not DASCTL_COMMAND.search(command):
                continue
            environ = (entry / "environ").read_bytes()
        except (OSError, ValueError):
            continue
        if f"{RUN_MARKER}={marker}".encode() in environ.split(b"\0"):
            found[pid] = command
        else:
            found.setdefault(-pid, command)  # a candidate: kept only if it descends from this process
    for pid in [key for key in found if key < 0]:
        command = found.pop(pid)
        ancestor, seen = -pid, 0
        while ancestor > 1 and seen < 64:
            ancestor, seen = parents.get(ancestor, 0), seen + 1
            if ancestor == me:
                found[-pid] = command
                break
    return sorted(found.items())


@pytest.fixture(scope="session", autouse=True)
def _no_dasctl_outlives_the_run() -> Iterator[None]:
    """Fail the run, naming them, if dasctl processes a test started are still alive at its end (then
    kill them: a stray `dasctl watch` must not keep running after the suite)."""
    import signal

    marker = uuid.uuid4().hex
    os.environ[RUN_MARKER] = marker  # per xdist worker: workers never see each other's processes
    yield
    emulator_zygote.close()  # the emulators it forked carry its command line: only they may be left to name
    deadline = time.monotonic() + 10  # an emulator or a watch told to stop may still be closing
    left = _processes_of_this_run(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _processes_of_this_run(marker)
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if left:
        named = "\n".join(f"  pid {pid}: {command}" for pid, command in left)
        pytest.fail(f"{len(left)} dasctl process(es) outlived the tests (killed now):\n{named}",
                    pytrace=False)


@pytest.fixture
def tmux_server() -> Iterator[TmuxServer]:
    """A private tmux server (`tmux -L <unique>`, no ~/.tmux.conf) for one test; killed at teardown."""
    import shutil

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    server = TmuxServer()
    try:
        yield server
    finally:
        server.kill()


# --- start-up: the suite starts about 1,200 dasctl processes, and each xdist worker imports every test ----
def pytest_configure(config: pytest.Config) -> None:
    """Bytecode is written and read as in a default Python set-up, whatever PYTHONDONTWRITEBYTECODE says
    (some CI and sandbox environments set it): without it every `python -m dasctl` a test starts compiled
    its ~100 modules from source again (about 0.1 s of CPU each time), and every worker rewrote and compiled
    all the test modules again (about 2 s each). The bytecode goes where a normal run puts it
    (`__pycache__/`, ignored by git); the controller compiles dasctl once, before any worker starts, since
    the processes the tests start keep the variable and only read it."""
    sys.dont_write_bytecode = False  # pytest then caches the rewritten test modules too
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller has compiled dasctl
    import compileall

    compileall.compile_dir(str(ROOT / "dasctl"), quiet=2)


# --- long tests first: under xdist a long test that starts late sets the end of the run -----------------
@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(xdist, on the controller) Tell each worker how the run is scheduled: a worker's own `--dist` is
    always `no`."""
    node.workerinput["dasctl_dist"] = node.config.getvalue("dist")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist worksteal`, put the tests marked `slow` at the head of each worker's first share.

    The scheduler hands every worker one contiguous share of the collection at the start, the shares cut
    as below, and later moves tests from the end of a busy worker's queue to an idle one
    (xdist/scheduler/worksteal.py): a slow test at the head of a share starts at once, where one late in
    the collection could start in the run's last minute and end it alone. The slow tests are dealt to the
    shares in turn; every other test keeps its place in the order, so modules stay together."""
    worker: dict[str, Any] = getattr(config, "workerinput", {})
    workers = int(worker.get("workercount", 0))
    if workers < 2 or worker.get("dasctl_dist") != "worksteal":
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if not slow:
        return
    others = iter([item for item in items if not item.get_closest_marker("slow")])
    ordered: list[pytest.Item] = []
    remaining = len(items)
    for share in range(workers):
        size = remaining // (workers - share)  # as check_schedule() cuts them, the first share first
        remaining -= size
        heads = slow[share::workers]
        ordered += heads
        ordered += itertools.islice(others, max(0, size - len(heads)))
    ordered += others
    items[:] = ordered

"""End to end: `dasctl login`, `auth status|token`, `logout` against the emulator's real token endpoint."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Emulator

CI_CLIENT = "ci-client"
CI_SECRET = "ci-secret-Vq8xZ2-never-printed"

Run = Callable[..., subprocess.CompletedProcess[str]]


def accepted(emulator: Emulator, access_token: str) -> bool:
    """Whether the emulator's signalling accepts this token (a Socket.IO connect to /socket.io/alive)."""
    import socketio

    from tests.emulator_client import socketio_client

    client = socketio_client()
    try:
        client.connect(emulator.url, headers={"Authorization": f"Bearer {access_token}"},
                       namespaces=["/socket.io/alive"], transports=["websocket"], wait_timeout=5)
    except socketio.exceptions.ConnectionError:
        return False
    finally:
        client.disconnect()
    return True


@pytest.fixture
def ci_emulator(start_emulator: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """An emulator that accepts only CI_CLIENT / CI_SECRET (the secret reaches it through its environment)."""
    monkeypatch.setenv("DASCTL_SERVE_CLIENT_SECRET", CI_SECRET)
    emulator = start_emulator("--client-id", CI_CLIENT)
    monkeypatch.delenv("DASCTL_SERVE_CLIENT_SECRET")
    return emulator


def test_login_local_needs_no_input(dasctl: Run, emulator: Emulator, isolated_config: Path) -> None:
    result = dasctl("login", env=emulator.client_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"Logged in to profile 'local' (client dasctl-demo) at {emulator.url}; token valid for 60 min.")
    # the demo secret is built in: nothing secret is stored
    assert not (isolated_config / "secrets").exists()

    status = dasctl("auth", "status", env=emulator.client_env())
    assert status.returncode == 0, status.stderr
    assert "credentials  built-in demo secret" in status.stdout
    assert "from cache" in status.stdout
    token = dasctl("auth", "token", env=emulator.client_env()).stdout.strip()
    assert token and token not in status.stdout and token[:4] + "…" in status.stdout
    assert accepted(emulator, token)

    document = json.loads(dasctl("auth", "status", "--json", env=emulator.client_env()).stdout)
    assert document["schema"] == "dasctl.auth-status/1"
    assert (document["profile"], document["client_id"]) == ("local", "dasctl-demo")
    assert document["logged_in"] is True
    assert document["token"]["source"] == "cache" and 3500 < document["token"]["expires_in"] <= 3600
    assert token not in json.dumps(document)


def test_wrong_credentials_exit_4_and_store_nothing(dasctl: Run, ci_emulator: Emulator,
                                                    isolated_config: Path) -> None:
    result = dasctl("login", "--profile", "ci", "--client-id", CI_CLIENT, "--url", ci_emulator.url,
                    "--client-secret-stdin", input="not-the-secret\n")
    assert result.returncode == 4
    assert result.stderr.splitlines() == [
        "dasctl: error: the token endpoint refused client 'ci-client': HTTP 401 (invalid_client)",
        "  Check the client id and secret, and run `dasctl login --profile ci` again.",
    ]
    assert not (isolated_config / "config.toml").exists()
    assert not (isolated_config / "secrets").exists()

    from_env = dasctl("login", "--profile", "ci", "--url", ci_emulator.url,
                      env={"DASCTL_CLIENT_ID": CI_CLIENT, "DASCTL_CLIENT_SECRET": "wrong"})
    assert from_env.returncode == 4
    assert "Check DASCTL_CLIENT_SECRET and DASCTL_CLIENT_ID." in from_env.stderr


def test_login_stores_the_secret_in_a_private_file_and_never_shows_it(
        dasctl: Run, ci_emulator: Emulator, isolated_config: Path) -> None:
    result = dasctl("-vv", "login", "--profile", "ci", "--client-id", CI_CLIENT, "--url", ci_emulator.url,
                    "--client-secret-stdin", input=CI_SECRET + "\n")
    assert result.returncode == 0, result.stderr
    secret_file = isolated_config / "secrets" / "ci.json"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("dasctl: warning:")]
    assert len(warnings) == 1 and str(secret_file) in warnings[0] and "0600" in warnings[0]
    assert "Profile 'ci' is now the default" in result.stderr

    modes = {path.relative_to(isolated_config).as_posix(): stat.S_IMODE(path.stat().st_mode)
             for path in [isolated_config, *isolated_config.rglob("*")] if not path.name.endswith(".lock")}
    assert modes["secrets"] == modes["tokens"] == 0o700
    assert modes["secrets/ci.json"] == modes["config.toml"] == 0o600
    assert [mode for name, mode in modes.items() if name.startswith("tokens/")] == [0o600]
    assert CI_SECRET not in (isolated_config / "config.toml").read_text()

    # the default profile now is `ci`; everything works, and neither secret nor token shows at -vv
    outputs = [result.stdout + result.stderr]
    for args in (("-vv", "auth", "status"), ("-vv", "auth", "status", "--json"), ("-vv", "config", "show")):
        run = dasctl(*args)
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout + run.stderr)
    token = dasctl("auth", "token").stdout.strip()
    assert accepted(ci_emulator, token)
    refresh = dasctl("-vv", "auth", "status", env={"DASCTL_CONFIG_DIR": str(isolated_config)})
    outputs.append(refresh.stdout + refresh.stderr)
    for output in outputs:
        assert CI_SECRET not in output
        assert token not in output

    # a failure at -vv prints a traceback: still masked
    failing = dasctl("-vv", "login", "--profile", "ci", env={"DASCTL_CLIENT_SECRET": CI_SECRET + "-wrong"})
    assert failing.returncode == 4
    assert CI_SECRET not in failing.stdout + failing.stderr


def test_no_prompt_without_a_terminal(dasctl: Run, ci_emulator: Emulator) -> None:
    started = time.monotonic()
    no_secret = dasctl("login", "--profile", "ci", "--client-id", CI_CLIENT, "--url", ci_emulator.url,
                       timeout=20)
    assert no_secret.returncode == 2
    assert "stdin is not a terminal" in no_secret.stderr
    assert "--client-secret-stdin" in no_secret.stderr and "DASCTL_CLIENT_SECRET" in no_secret.stderr
    no_id = dasctl("login", "--profile", "ci", "--url", ci_emulator.url, timeout=20)
    assert no_id.returncode == 2
    assert "--client-id" in no_id.stderr and "DASCTL_CLIENT_ID" in no_id.stderr
    assert time.monotonic() - started < 20  # failed fast, nothing waited for input


def test_hidden_prompt_on_a_terminal(ci_emulator: Emulator, isolated_config: Path) -> None:
    import pty

    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dasctl", "login", "--profile", "ci", "--client-id", CI_CLIENT,
         "--url", ci_emulator.url],
        stdin=terminal, stdout=subprocess.PIPE, stderr=terminal, start_new_session=True,
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 20
    while b"(hidden):" not in seen and time.monotonic() < deadline:
        seen += os.read(controller, 1024)
    os.write(controller, CI_SECRET.encode() + b"\n")
    stdout, _ = proc.communicate(timeout=30)
    try:
        while chunk := os.read(controller, 1024):
            seen += chunk
    except OSError:  # the terminal closes when the child exits
        pass
    os.close(controller)
    assert proc.returncode == 0, seen
    assert b"Client secret for ci-client (hidden):" in seen
    assert CI_SECRET.encode() not in seen + stdout  # not echoed
    assert b"Logged in to profile 'ci'" in seen


#: the emulator's token lifetime where a test waits for expiry: long enough that a loaded machine still
#: uses a fresh token within it (dasctl's own start and the test's check), short enough to wait out
SHORT_TTL = "12"


def until_refused(emulator: Emulator, access_token: str, seconds: float = 60) -> None:
    """Wait until the emulator refuses this token (it expired), bounded: the event, not a guessed time."""
    deadline = time.monotonic() + seconds
    while accepted(emulator, access_token):
        assert time.monotonic() < deadline, f"the token was still accepted after {seconds} s"
        time.sleep(0.5)


@pytest.mark.slow
def test_expired_token_is_refreshed_without_the_user_noticing(
        dasctl: Run, start_emulator: Callable[..., Emulator]) -> None:
    emulator = start_emulator("--token-ttl", SHORT_TTL)
    assert dasctl("login", env=emulator.client_env()).returncode == 0
    first = dasctl("auth", "token", env=emulator.client_env())
    assert first.returncode == 0 and accepted(emulator, first.stdout.strip())
    until_refused(emulator, first.stdout.strip())  # the first one really has expired
    second = dasctl("auth", "token", env=emulator.client_env())
    assert second.returncode == 0 and second.stderr == ""
    assert second.stdout != first.stdout
    assert accepted(emulator, second.stdout.strip())


def test_eight_processes_at_once_share_one_token(emulator: Emulator, isolated_config: Path) -> None:
    env = {**os.environ, **emulator.client_env()}
    command = [sys.executable, "-m", "dasctl", "auth", "token"]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True) for _ in range(8)]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8, [err for _, err in outputs]
    tokens = {out.strip() for out, _ in outputs}
    # every fetch issues a new random token, so distinct tokens bound the requests from below
    assert len(tokens) <= 2
    (cache_file,) = (isolated_config / "tokens").glob("*.json")
    cached = json.loads(cache_file.read_text())
    assert cached["access_token"] in tokens and accepted(emulator, cached["access_token"])


def test_corrupt_cache_is_replaced_with_a_warning(dasctl: Run, emulator: Emulator,
                                                  isolated_config: Path) -> None:
    assert dasctl("login", env=emulator.client_env()).returncode == 0
    (cache_file,) = (isolated_config / "tokens").glob("*.json")
    cache_file.write_text('{"access_token": "half-writ')
    result = dasctl("auth", "token", env=emulator.client_env())
    assert result.returncode == 0
    assert "discarded a corrupt token cache" in result.stderr and "Traceback" not in result.stderr
    assert json.loads(cache_file.read_text())["access_token"] == result.stdout.strip()


def test_token_endpoint_failures_exit_6(dasctl: Run, start_emulator: Callable[..., Emulator]) -> None:
    failing = start_emulator("--fault-token-5xx")
    result = dasctl("login", env=failing.client_env())
    assert result.returncode == 6
    assert "failed: HTTP 503" in result.stderr
    failing.stop()
    gone = dasctl("auth", "token", env=failing.client_env())
    assert gone.returncode == 6
    assert "cannot reach the token endpoint" in gone.stderr and "dasctl serve" in gone.stderr


def test_no_expires_in_means_a_conservative_lifetime(dasctl: Run,
                                                     start_emulator: Callable[..., Emulator]) -> None:
    emulator = start_emulator("--no-expires-in")
    result = dasctl("login", env=emulator.client_env())
    assert result.returncode == 0 and "token valid for 5 min" in result.stderr


def test_dasctl_token_overrides_and_status_says_so(dasctl: Run, emulator: Emulator) -> None:
    env = {**emulator.client_env(), "DASCTL_TOKEN": "Bearer handmade-token-1234"}
    assert dasctl("auth", "token", env=env).stdout == "handmade-token-1234\n"
    status = dasctl("auth", "status", env=env)
    assert status.returncode == 0
    assert "credentials  DASCTL_TOKEN" in status.stdout and "expiry unknown" in status.stdout
    assert "DASCTL_TOKEN is set" in status.stderr
    assert "handmade-token-1234" not in status.stdout + status.stderr
    document = json.loads(dasctl("auth", "status", "--json", env=env).stdout)
    assert document["dasctl_token_override"] is True and document["token"]["source"] == "DASCTL_TOKEN"


def test_logout_forgets_and_status_then_exits_4(dasctl: Run, ci_emulator: Emulator,
                                                isolated_config: Path) -> None:
    login = dasctl("login", "--profile", "ci", "--client-id", CI_CLIENT, "--url", ci_emulator.url,
                   "--client-secret-stdin", input=CI_SECRET + "\n")
    assert login.returncode == 0, login.stderr
    out = dasctl("logout", "--profile", "ci")
    assert out.returncode == 0 and "Logged out of profile 'ci'" in out.stderr
    assert not (isolated_config / "secrets" / "ci.json").exists()
    assert list((isolated_config / "tokens").glob("*.json")) == []
    status = dasctl("auth", "status", "--profile", "ci")
    assert status.returncode == 4
    assert "not logged in to profile 'ci'" in status.stderr
    assert "dasctl login --profile ci" in status.stderr and "DASCTL_TOKEN" in status.stderr
    # the profile's URLs stay: logging in again needs only the secret
    assert dasctl("config", "get", "url", "--profile", "ci").stdout.strip() == ci_emulator.url
    again = dasctl("login", "--profile", "ci", "--client-secret-stdin", input=CI_SECRET + "\n")
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_register_after_the_token_expired_just_works(dasctl: Run,
                                                     start_emulator: Callable[..., Emulator]) -> None:
    data = Path(__file__).parent / "data"

    emulator = start_emulator("--token-ttl", SHORT_TTL)
    assert dasctl("login", env=emulator.client_env()).returncode == 0
    cached = dasctl("auth", "token", env=emulator.client_env()).stdout.strip()  # login's, from the cache
    until_refused(emulator, cached)
    result = dasctl("-q", "register", "--speed", "0", str(data / "speech-a-8k-mono.wav"),
                    env=emulator.client_env())
    assert result.returncode == 0, result.stderr
    assert "registered" in result.stdout
    assert "token" not in result.stderr.lower()

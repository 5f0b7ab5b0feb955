"""deploy/: the systemd unit passes `systemd-analyze verify` (where systemd is present) and keeps secrets
out of argv; the container files run `dasctl watch` as a non-root user with a health check on /healthz."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def unit_settings(text: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (continuation lines joined)."""
    settings: dict[str, list[str]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_the_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    instance = tmp_path / "dasctl-watch@data-calls.service"  # a template is verified as an instance
    shutil.copy(DEPLOY / "dasctl-watch@.service", instance)
    done = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True, text=True,
                          timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if instance.name in line]
    assert done.returncode == 0 and complaints == [], done.stdout + done.stderr


def test_the_systemd_unit_stops_gracefully_restarts_and_takes_secrets_as_credentials() -> None:
    settings = unit_settings((DEPLOY / "dasctl-watch@.service").read_text())
    assert settings["KillSignal"] == ["SIGTERM"] and settings["Restart"] == ["on-failure"]
    assert int(settings["TimeoutStopSec"][0]) > 10  # longer than watch's default --grace
    assert {c.split(":")[0] for c in settings["LoadCredential"]} >= {"store-url", "client-secret"}
    [start] = settings["ExecStart"]
    assert "dasctl watch" in start and "--store" not in start and "SECRET=" not in start.split("exec")[-1]
    assert settings["NoNewPrivileges"] == ["yes"] and settings["ProtectSystem"] == ["strict"]
    assert settings["User"] == ["dasctl"]


def test_the_container_runs_watch_unprivileged_with_a_health_check() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER dasctl$", dockerfile, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", dockerfile, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT .*dasctl watch', dockerfile, re.MULTILINE)
    compose = (DEPLOY / "compose.yaml").read_text()
    assert "image: postgres" in compose and "replicas: 3" in compose
    assert "inbox:/inbox" in compose and "stop_signal: SIGTERM" in compose
    assert "PASSWORD:" not in compose.replace("POSTGRES_PASSWORD_FILE:", "")  # secrets are files

"""Where `dasctl serve` listens: loopback only unless told otherwise (docs/architecture.md §6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for_port

PROC_NET_TCP = Path("/proc/net/tcp")


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on this port, from the kernel's own table."""
    found = set()
    for line in PROC_NET_TCP.read_text().splitlines()[1:]:
        fields = line.split()
        address, port_hex = fields[1].split(":")
        if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
            octets = [str(int(address[i : i + 2], 16)) for i in range(0, 8, 2)]
            found.add(".".join(reversed(octets)))  # little-endian in /proc
    return found


@pytest.mark.skipif(not PROC_NET_TCP.exists(), reason="needs Linux /proc/net/tcp")
def test_serve_binds_loopback_by_default(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dasctl", "serve", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        wait_for_port(port, proc)
        assert listening_addresses(port) == {"127.0.0.1"}
        assert f"listening on http://127.0.0.1:{port}" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_login_has_no_flag_that_takes_the_secret(dasctl) -> None:
    # secrets never in argv: the only secret flag reads stdin
    result = dasctl("login", "--client-secret", "hunter2")
    assert result.returncode == 2
    assert "hunter2" not in result.stdout
    assert "--client-secret-stdin" in dasctl("login", "--help").stdout

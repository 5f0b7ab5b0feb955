"""`dasctl --version` and `--help` must start fast: none of the heavy libraries may load for them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("numpy", "soundfile", "soxr", "socketio", "engineio", "aiohttp", "requests", "webrtcvad",
         "watchfiles", "keyring")

PROBE = """
import json, sys
from dasctl.cli import main
code = main(sys.argv[1:])
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(HEAVY)))
sys.stderr.write("\\nLOADED " + json.dumps({"code": code, "loaded": loaded}) + "\\n")
"""


@pytest.mark.parametrize(
    "argv",
    [["--version"], ["--help"], ["login", "--help"], ["logout", "--help"], ["auth", "--help"],
     ["auth", "status", "--help"], ["auth", "token", "--help"], ["config", "--help"],
     ["config", "set", "--help"]],
)
def test_help_and_version_load_no_heavy_library(argv: list[str]) -> None:
    probe = PROBE.replace("json.loads(HEAVY)", repr(list(HEAVY)))
    result = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    report = json.loads(result.stderr.rsplit("LOADED ", 1)[1])
    assert report == {"code": 0, "loaded": []}
    assert result.stdout.strip()


def test_help_lists_the_auth_and_config_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "dasctl", "--help"], capture_output=True, text=True,
                            timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0
    for command in ("login", "logout", "auth", "config"):
        assert f" {command} " in result.stdout
    login_help = subprocess.run([sys.executable, "-m", "dasctl", "login", "--help"], capture_output=True,
                                text=True, timeout=30, stdin=subprocess.DEVNULL).stdout
    # the secret never has a flag that takes it as a value
    assert "--client-secret-stdin" in login_help and "--client-secret " not in login_help


@pytest.mark.parametrize("argv", [["config", "show"], ["config", "path", "--json"],
                                  ["credentials", "list", "--store", "{store}"]])
def test_commands_that_never_talk_to_the_service_load_no_network_or_audio_library(
    argv: list[str], tmp_path
) -> None:
    """Nor asyncio: only the sessions need an event loop (about 20 ms of CPU for every other command)."""
    probe = PROBE.replace("json.loads(HEAVY)", repr([*HEAVY, "asyncio"]))
    from dasctl.store import open_store

    open_store(str(tmp_path / "s.db")).close()  # an empty store (a missing one is a usage error)
    argv = [arg.replace("{store}", str(tmp_path / "s.db")) for arg in argv]
    result = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    report = json.loads(result.stderr.rsplit("LOADED ", 1)[1])
    assert report == {"code": 0, "loaded": []}, result.stderr


def _threads_once_numpy_is_loaded(preset: str | None) -> int:
    """The thread count of a `dasctl transcode -` waiting on its stdin, numpy loaded (OpenBLAS mapped)."""
    import os
    import time
    from pathlib import Path

    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    process = subprocess.Popen([sys.executable, "-m", "dasctl", "transcode", "-", "-"], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "openblas" not in Path(f"/proc/{process.pid}/maps").read_text():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # the library's threads, if any, are started as it loads
        return len(os.listdir(f"/proc/{process.pid}/task"))
    finally:
        process.kill()
        process.wait()


def test_the_program_asks_numpy_for_one_blas_thread_unless_told_otherwise() -> None:
    """numpy's OpenBLAS would start a thread per core, spinning through 70 ms of CPU per process for work
    dasctl never gives it: the program asks for one (no thread of its own), a user's setting stands."""
    ours, one, two = (_threads_once_numpy_is_loaded(preset) for preset in (None, "1", "2"))
    assert ours == one
    assert two == one + 1


#: Run after the program's main() (its exit runs the atexit functions): what aiohttp's two default TLS
#: contexts, made as it is imported, hold before and after their first use
AIOHTTP_TRUST_PROBE = """
import atexit, json, ssl, sys
from dasctl.cli import main

def stats(context):
    return ssl.SSLContext.cert_store_stats(context)  # the store as it is, without reading it first

def probe():
    from aiohttp import connector
    verified, unverified = connector._SSL_CONTEXT_VERIFIED, connector._SSL_CONTEXT_UNVERIFIED
    before = [stats(verified), stats(unverified)]
    for context in (verified, unverified):  # a handshake starts as asyncio's does (wrap_bio)
        context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="example.org")
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    plain.set_default_verify_paths()
    sys.stderr.write("\\nPROBE " + json.dumps({
        "before": before, "after": [stats(verified), stats(unverified)],
        "expected": [ssl.create_default_context().cert_store_stats(), plain.cert_store_stats()],
        "checks": [verified.verify_mode == ssl.CERT_REQUIRED, verified.check_hostname,
                   unverified.verify_mode == ssl.CERT_NONE, not unverified.check_hostname,
                   isinstance(verified, ssl.SSLContext), connector.SSLContext is ssl.SSLContext,
                   type(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)) is ssl.SSLContext],
    }) + "\\n")

atexit.register(probe)
sys.argv[0] = "dasctl"
main()
"""


def test_the_program_reads_aiohttps_default_trust_at_its_first_use_and_the_same_trust() -> None:
    """aiohttp makes two default TLS contexts as it is imported, reading the system's trust store into
    each (40 ms of CPU per session process), and dasctl never uses them: in the program they read it when
    first used (a handshake), the same trust and the same verification; ssl itself is left as it was."""
    result = subprocess.run([sys.executable, "-c", AIOHTTP_TRUST_PROBE, "--version"], capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stderr.rsplit("PROBE ", 1)[1])
    assert [stats["x509_ca"] for stats in report["before"]] == [0, 0]  # made, not read yet
    assert report["after"] == report["expected"] and report["expected"][0]["x509_ca"] > 0
    assert all(report["checks"]), report["checks"]

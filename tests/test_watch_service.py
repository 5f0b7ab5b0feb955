"""`dasctl watch` as a long-running service: every recording taken and the rest named, --dry-run,
--log-format json, --metrics with /healthz, `watch status`. Real CLI, real emulator, real stores."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, Emulator, free_port

SPEECH = DATA / "speech-a-8k-mono.wav"
FAST = ["--once", "--speed", "0", "--settle", "0"]
Run = Callable[..., subprocess.CompletedProcess[Any]]


def mixed_inbox(tmp_path: Path) -> Path:
    """Two recordings (one with a name that says nothing), two files that are not audio, a hidden one."""
    inbox = tmp_path / "calls"
    inbox.mkdir()
    shutil.copy(SPEECH, inbox / "0412-CUST1.wav")
    shutil.copy(SPEECH, inbox / "20261201-0915-CUST2")  # no extension: opened to see it is audio
    (inbox / "notes.txt").write_text("call notes\n")
    (inbox / "blob.bin").write_bytes(os.urandom(4096))
    (inbox / ".hidden.wav").write_bytes(b"")
    return inbox


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_recording_is_taken_and_each_file_not_taken_is_counted_and_named(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    inbox = mixed_inbox(tmp_path)
    done = dasctl("-v", "watch", str(inbox), *FAST, env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    lines = {line["file"]: line for line in lines_of(done.stdout)}
    assert sorted(lines) == ["0412-CUST1.wav", "20261201-0915-CUST2"]
    for name, line in lines.items():
        # like register --json: whose voice, and where its record is
        assert line["ok"] and line["speaker"] == name.removesuffix(".wav")
        assert line["stored"]["speaker"] == line["speaker"] and isinstance(line["stored"]["id"], int)
    assert "2 files skipped: 2 not audio (blob.bin, notes.txt)" in done.stderr
    assert "skipped notes.txt: not audio" in done.stderr and "skipped blob.bin: not audio" in done.stderr
    assert ".hidden" not in done.stderr

    patterned = dasctl("watch", str(inbox), *FAST, "--pattern", "*.wav", env=emulator.client_env())
    assert patterned.returncode == 0, patterned.stderr
    assert "3 files skipped: 3 excluded by --pattern (20261201-0915-CUST2, blob.bin, notes.txt)" in \
        patterned.stderr


def test_dry_run_says_what_would_happen_to_each_file_and_sends_nothing(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    inbox = mixed_inbox(tmp_path)
    sessions_before = emulator.output().count("session register")
    plan = dasctl("watch", str(inbox), "--dry-run", env=emulator.client_env())
    assert plan.returncode == 0, plan.stderr
    rows = {row["file"]: (row["action"], row["speaker"], row["reason"]) for row in lines_of(plan.stdout)}
    assert rows == {
        "0412-CUST1.wav": ("enroll", "0412-CUST1", None),
        "20261201-0915-CUST2": ("enroll", "20261201-0915-CUST2", None),
        "blob.bin": ("skip", None, "not audio"),
        "notes.txt": ("skip", None, "not audio"),
    }
    assert "dry run, nothing sent: 2 enroll, 2 skip" in plan.stderr
    assert emulator.output().count("session register") == sessions_before

    dasctl("watch", str(inbox), *FAST, "--failed-dir", str(tmp_path / "failed"), env=emulator.client_env())
    shutil.copy(SPEECH, inbox / "new-CUST3.wav")
    again = dasctl("watch", str(inbox), "--dry-run", "--speaker-from", r"(CUST\d+)",
                   env=emulator.client_env())
    rows = {row["file"]: (row["action"], row["speaker"]) for row in lines_of(again.stdout)}
    assert rows["0412-CUST1.wav"] == ("done", "CUST1") and rows["new-CUST3.wav"] == ("enroll", "CUST3")


def test_log_format_json_is_one_object_per_event_with_the_keys_a_log_shipper_expects(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    inbox = mixed_inbox(tmp_path)
    done = dasctl("watch", str(inbox), *FAST, "--log-format", "json", env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    assert all({"ts", "level", "msg", "worker"} <= set(event) for event in events)
    finished = [e for e in events if e.get("msg") == "done"]
    assert sorted(e["file"] for e in finished) == ["0412-CUST1.wav", "20261201-0915-CUST2"]
    for event in finished:
        assert event["outcome"] == "result-success" and event["speaker"] and event["call_id"]
    assert {e["file"] for e in events if e.get("outcome") == "skipped"} == {"blob.bin", "notes.txt"}
    [summary] = [e for e in events if e.get("msg") == "summary"]
    assert summary["done"] == 2 and summary["skipped_files"] == {"not audio": ["blob.bin", "notes.txt"]}
    for line in lines_of(done.stdout):  # never a secret on stderr
        assert line["credential"] not in done.stderr


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_count_files_by_outcome_and_healthz_says_why(emulator: Emulator, tmp_path: Path) -> None:
    inbox = mixed_inbox(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dasctl", "watch", str(inbox), "--speed", "0", "--settle", "0",
         "--metrics", str(port)],  # a bare port: loopback only
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env={**os.environ, **emulator.client_env()},
    )
    try:
        deadline = time.monotonic() + 60
        body = ""
        while time.monotonic() < deadline:
            try:
                code, body = get(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                time.sleep(0.2)
                continue
            if 'dasctl_watch_files_total{outcome="done"} 2.0' in body:
                break
            time.sleep(0.2)
        assert 'dasctl_watch_files_total{outcome="done"} 2.0' in body, body
        assert 'dasctl_watch_files_total{outcome="skipped"} 2.0' in body
        assert 'dasctl_watch_files_total{outcome="failed"} 0.0' in body
        for name in ("dasctl_watch_sessions_in_flight", "dasctl_watch_session_duration_seconds_bucket",
                     "dasctl_watch_voice_seconds_count", "dasctl_watch_store_write_seconds_count",
                     "dasctl_watch_claims_held"):
            assert name in body, name
        assert "CUST1" not in body and "notes.txt" not in body  # no label names a file or a speaker
        code, health = get(f"http://127.0.0.1:{port}/healthz")
        assert code == 200 and json.loads(health)["status"] == "ok"
        assert get(f"http://127.0.0.1:{port}/nothing")[0] == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(out.splitlines()) == 2


def test_a_bad_metrics_address_is_a_usage_error(dasctl: Run, emulator: Emulator, tmp_path: Path) -> None:
    inbox = mixed_inbox(tmp_path)
    bad = dasctl("watch", str(inbox), *FAST, "--metrics", "localhost:http", env=emulator.client_env())
    assert bad.returncode == 2 and "--metrics 'localhost:http' is not an address" in bad.stderr
    assert "Traceback" not in bad.stderr and bad.stdout == ""


@pytest.mark.slow
def test_status_from_the_store_names_the_watchers_at_work_and_what_is_left(
    dasctl: Run, emulator: Emulator, tmp_path: Path, postgres_store_url: str
) -> None:
    inbox = mixed_inbox(tmp_path)
    first = dasctl("watch", str(inbox), *FAST, "--store", postgres_store_url, env=emulator.client_env())
    assert first.returncode == 0, first.stderr
    shutil.copy(SPEECH, inbox / "late-CUST9.wav")
    os.utime(inbox / "late-CUST9.wav", (1_700_000_000, 1_700_000_000))
    idle_inbox = tmp_path / "idle"
    idle_inbox.mkdir()
    running = [subprocess.Popen(
        [sys.executable, "-m", "dasctl", "watch", str(idle_inbox), "--store", postgres_store_url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env={**os.environ, **emulator.client_env()},
    ) for _ in range(2)]
    try:
        for proc in running:
            assert proc.stderr is not None
            seen = b""
            deadline = time.monotonic() + 30
            while b"watching" not in seen and time.monotonic() < deadline:
                seen += proc.stderr.readline()
            assert b"watching" in seen, seen
        status = dasctl("watch", "status", str(inbox), "--store", postgres_store_url, "--json")
        assert status.returncode == 0, status.stderr
        [doc] = lines_of(status.stdout)
        assert (doc["done"], doc["failed"], doc["left"]) == (2, 0, 1) and doc["watchers"] == []
        assert doc["oldest_waiting"] == "late-CUST9.wav"
        assert doc["oldest_waiting_since"] == "2023-11-14T22:13:20Z"
        busy = dasctl("watch", "status", str(idle_inbox), "--store", postgres_store_url, "--json")
        [doc] = lines_of(busy.stdout)
        pids = sorted(int(w["name"].rsplit(":", 1)[1]) for w in doc["watchers"])
        assert pids == sorted(proc.pid for proc in running)
        assert all(w["since"] and w["claims"] == 0 for w in doc["watchers"])
        everything = dasctl("watch", "status", "--store", postgres_store_url, "--json")
        assert {d["inbox"] for d in lines_of(everything.stdout)} == {str(inbox)}
    finally:
        for proc in running:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)


def test_healthz_turns_503_with_the_reason_when_the_loop_stalls_the_store_fails_or_watch_stops() -> None:
    from dasctl.watch.metrics import LOOP_STALE_S, WatchMetrics, health

    metrics = WatchMetrics()
    now = metrics.last_tick
    assert health(metrics, now + 1) == (200, {"loop_seconds_since_tick": 1.0, "status": "ok", "store": "ok"})
    code, body = health(metrics, now + LOOP_STALE_S + 5)
    assert code == 503 and body["reason"].startswith("the watch loop has not turned for")
    metrics.store_call(0.01, RuntimeError("cannot write to the store /x: disk full\nmore"))
    code, body = health(metrics, now + 1)
    assert code == 503
    assert body["reason"] == "the store does not answer: cannot write to the store /x: disk full"
    metrics.store_call(0.01, None)
    assert health(metrics, now + 1)[0] == 200
    metrics.stopping = True
    assert health(metrics, now + 1) == (503, {"loop_seconds_since_tick": 1.0, "status": "unhealthy",
                                              "reason": "watch is stopping"})


def test_json_log_lines_carry_the_fields_and_never_a_secret() -> None:
    import io
    import logging

    from dasctl import logs

    stream = io.StringIO()
    logs.register_secret("s3cret-client-value")
    logs.configure(0, stream, log_format="json")
    try:
        log = logging.getLogger("dasctl.watch.test")
        log.warning("token s3cret-client-value refused", extra={"file": "a.wav", "call_id": "c-1"})
        try:
            raise ValueError("bad")
        except ValueError:
            log.error("internal error on a.wav", exc_info=True)
    finally:
        logs.configure(0, io.StringIO())
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "warning" and first["msg"] == "token **** refused"
    assert (first["file"], first["call_id"], first["logger"]) == ("a.wav", "c-1", "dasctl.watch.test")
    assert first["ts"].endswith("Z") and "speaker" not in first  # absent fields are left out
    assert second["error"] == "ValueError: bad" and "traceback" not in second  # the traceback with -vv
    assert "s3cret" not in stream.getvalue()


def test_status_on_a_sqlite_store_names_the_watch_that_holds_the_folder(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    store = str(tmp_path / "store.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dasctl", "watch", str(inbox), "--store", store],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env={**os.environ, **emulator.client_env()},
    )
    try:
        assert proc.stderr is not None
        seen = b""
        deadline = time.monotonic() + 30
        while b"watching" not in seen and time.monotonic() < deadline:
            seen += proc.stderr.readline()
        shown = dasctl("watch", "status", str(inbox), "--store", store)  # piped: JSON
        assert shown.returncode == 0, shown.stderr
        [doc] = lines_of(shown.stdout)
        [watcher] = doc["watchers"]
        assert watcher["name"] == f"{os.uname().nodename}:{proc.pid}" and watcher["since"]
        assert (doc["done"], doc["failed"], doc["left"]) == (0, 0, 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    after = dasctl("watch", "status", str(inbox), "--store", store, "--json")
    assert lines_of(after.stdout)[0]["watchers"] == []


def test_a_folder_of_compressed_call_recordings_is_enrolled_by_default(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    for n, extension in enumerate(("mp3", "m4a", "flac", "ogg")):
        shutil.copy(DATA / "formats" / f"call.{extension}", inbox / f"20261201-0915-CUST{n}.{extension}")
    # a name that says nothing: opened to see it is audio
    shutil.copy(DATA / "formats" / "call.opus", inbox / "20261201-0916-CUST9.rec")
    # the fixtures are 5 s calls: ask for 3 s of voice
    done = dasctl("watch", str(inbox), *FAST, "--duration", "3", env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    lines = lines_of(done.stdout)
    assert len(lines) == 5 and all(line["ok"] for line in lines), done.stdout
    assert "skipped" not in done.stderr

"""`dasctl reenroll` end to end: the real CLI against `dasctl serve` with an old and a new model.

Most speakers are put in the store through its API (with kept mu-law audio made by dasctl's own
transcoder from the committed fixtures), so a batch of 50 takes no 50 registrations to set up; one test
goes the whole way: register, reenroll, verify.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from dasctl.audio import open_audio
from dasctl.errors import ExitCode
from dasctl.store import EnrollmentRecord, open_store
from tests.conftest import DATA, Emulator
from tests.tmux_server import TmuxServer, dasctl_command, wait_for_file

FIXTURES = ["speech-a-8k-mono.wav", "speech-b-16k-mono.wav", "speech-c-22k-mono.wav"]
FAST = ("--speed", "0")


@cache
def mulaw(fixture: str) -> bytes:
    with open_audio(DATA / fixture) as audio:
        return b"".join(audio.chunks())


def seed(count: int, *, model: str = "old", without_audio: tuple[int, ...] = (), prefix: str = "spk") -> None:
    """`count` speakers enrolled with `model`, each with the kept audio of one fixture voice."""
    store = open_store()
    try:
        for index in range(count):
            fixture = FIXTURES[index % len(FIXTURES)]
            store.record_enrollment(EnrollmentRecord(
                speaker=f"{prefix}-{index:03d}", ok=True, origin="register", outcome="result-success",
                credential=f"credential-{index}", model_hash=model, call_id=str(uuid.uuid4()),
                protocol="twilio", source_path=str(DATA / fixture),
                audio=None if index in without_audio else mulaw(fixture),
            ))
    finally:
        store.close()


def enrollments() -> dict[str, list[EnrollmentRecord]]:
    """Every enrollment kept, per speaker, oldest first."""
    store = open_store()
    try:
        speakers = sorted({record.speaker for record in store.list_current()})
        return {
            speaker: [e for e in store.history(speaker, reveal=True) if isinstance(e, EnrollmentRecord)]
            for speaker in speakers
        }
    finally:
        store.close()


def current_models() -> dict[str, str | None]:
    store = open_store()
    try:
        return {record.speaker: record.model_hash for record in store.list_current()}
    finally:
        store.close()


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_dry_run_lists_what_would_happen_and_changes_nothing(dasctl: Any, two_models: Emulator) -> None:
    seed(3, without_audio=(2,))
    before = enrollments()
    logged = len(two_models.output())
    run = dasctl("reenroll", "--model-hash", "new", "--dry-run", "--json", env=two_models.client_env())
    assert run.returncode == 0, run.stderr
    lines = ndjson(run.stdout)
    assert [(d["speaker"], d["status"]) for d in lines] == [
        ("spk-000", "planned"), ("spk-001", "planned"), ("spk-002", "no-audio"),
    ]
    assert {d["schema"] for d in lines} == {"dasctl.reenroll/1"}
    assert lines[0]["previous"]["model_hash"] == "old" and lines[0]["model_hash"] == "new"
    assert "dasctl register FILE --speaker spk-002 --model-hash new" in lines[2]["error"]["hint"]
    assert "nothing was changed" in run.stderr
    assert enrollments() == before
    human = dasctl("reenroll", "--model-hash", "new", "--dry-run", env=two_models.client_env())
    assert "would re-enroll spk-000: model old -> new" in human.stdout
    assert "cannot re-enroll spk-002" in human.stdout and enrollments() == before
    # no register session was opened, so no audio sent and nothing enrolled on the service's side either
    assert "register" not in two_models.output()[logged:], two_models.output()[logged:]


def test_nothing_to_reenroll_says_why_and_makes_no_store(dasctl: Any, two_models: Emulator,
                                                        tmp_path: Path) -> None:
    fresh = {**two_models.client_env(), "DASCTL_CONFIG_DIR": str(tmp_path / "fresh")}
    for flags in ((), ("--dry-run",)):
        run = dasctl("reenroll", "--model-hash", "new", *flags, env=fresh)
        assert run.returncode == 0, run.stderr
        assert run.stderr.startswith("nothing to re-enroll: there is no credential store yet"), run.stderr
        assert "config set" not in run.stderr and "warning" not in run.stderr
    assert not (tmp_path / "fresh").exists()
    env = two_models.client_env()
    seed(2, model="new")
    none_matching = dasctl("reenroll", "--model-hash", "new", "--speaker", "bob*", *FAST, env=env)
    assert none_matching.returncode == 0, none_matching.stderr
    assert ("nothing to re-enroll: the store holds no current credential of a speaker matching 'bob*'"
            in none_matching.stderr)
    assert "config set" not in none_matching.stderr  # no model change offered for speakers there are not
    all_done = dasctl("reenroll", "--model-hash", "new", *FAST, env=env)
    assert all_done.returncode == 0, all_done.stderr
    assert "nothing to re-enroll: every current credential was made with new" in all_done.stderr
    assert "dasctl config set model_hash new --profile local" in all_done.stderr


@pytest.mark.parametrize("protocol", ["twilio", "audiohook"])
def test_register_reenroll_verify_the_whole_way(dasctl: Any, two_models: Emulator, protocol: str) -> None:
    env = two_models.client_env()
    speech = str(DATA / "speech-a-8k-mono.wav")
    registered = dasctl("register", speech, "--speaker", "alice", "--model-hash", "old", *FAST, "-q",
                        "--protocol", protocol, env=env)
    assert registered.returncode == 0, registered.stderr
    run = dasctl("reenroll", "--model-hash", "new", *FAST, "--json", "--protocol", protocol, env=env)
    assert run.returncode == 0, run.stderr
    (line,) = ndjson(run.stdout)
    assert line["speaker"] == "alice" and line["status"] == "reenrolled" and line["ok"] is True
    assert line["previous"]["model_hash"] == "old" and line["model_hash"] == "new"
    assert line["credential"] and line["protocol"] == protocol
    assert "[1/1] alice: reenrolled (was old)" in run.stderr

    history = enrollments()["alice"]
    assert [(r.origin, r.model_hash, r.ok) for r in history] == [
        ("register", "old", True), ("reenroll", "new", True),
    ]
    assert history[0].superseded_at is not None and history[1].superseded_at is None
    assert history[1].credential == line["credential"] and history[1].call_id == line["call_id"]
    assert history[1].source_path == history[0].source_path and history[1].has_audio

    # the new credential is current and verifies, against a service that has only the new model
    verified = dasctl("verify", str(DATA / "speech-ab-44k-stereo.wav"), "--channel", "left", "--speaker",
                      "alice", *FAST, "--json", "--protocol", protocol, env=env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["model_hash"] == "new"
    # nothing left to do: a second run changes nothing
    again = dasctl("reenroll", "--model-hash", "new", *FAST, env=env)
    assert again.returncode == 0 and "nothing to re-enroll" in again.stderr
    assert len(enrollments()["alice"]) == 2


@pytest.mark.slow
def test_a_store_moved_to_postgresql_can_still_be_reenrolled(
    dasctl: Any, two_models: Emulator, postgres_store_url: str
) -> None:
    """The team's move: a laptop's SQLite store piped into a shared PostgreSQL one, enrollment audio
    included (export --with-audio), then the model change re-enrolled from the moved audio."""
    env = two_models.client_env()
    registered = dasctl("register", str(DATA / "speech-a-8k-mono.wav"), "--speaker", "alice",
                        "--model-hash", "old", *FAST, "-q", env=env)
    assert registered.returncode == 0, registered.stderr
    exported = dasctl("credentials", "export", "--with-audio", env=env)
    assert exported.returncode == 0, exported.stderr
    moved = dasctl("credentials", "import", "-", "--store", postgres_store_url, input=exported.stdout,
                   env=env)
    assert moved.returncode == 0, moved.stderr

    run = dasctl("reenroll", "--model-hash", "new", *FAST, "--json", "--store", postgres_store_url, env=env)
    assert run.returncode == 0, run.stderr
    (line,) = ndjson(run.stdout)
    assert (line["speaker"], line["status"], line["model_hash"]) == ("alice", "reenrolled", "new")
    verified = dasctl("verify", str(DATA / "speech-ab-44k-stereo.wav"), "--channel", "left", "--speaker",
                      "alice", *FAST, "--json", "--store", postgres_store_url, env=env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["model_hash"] == "new"


def test_only_speakers_matching_the_glob(dasctl: Any, two_models: Emulator) -> None:
    seed(2, prefix="team-a")
    seed(2, prefix="team-b")
    run = dasctl("reenroll", "--model-hash", "new", "--speaker", "team-a-*", *FAST, "-j", "2",
                 env=two_models.client_env())
    assert run.returncode == 0, run.stderr
    assert current_models() == {
        "team-a-000": "new", "team-a-001": "new", "team-b-000": "old", "team-b-001": "old",
    }


def test_speakers_without_kept_audio_are_reported_with_what_to_do_and_exit_7(
    dasctl: Any, two_models: Emulator
) -> None:
    seed(3, without_audio=(1,))
    run = dasctl("reenroll", "--model-hash", "new", *FAST, "--json", env=two_models.client_env())
    assert run.returncode == ExitCode.BATCH_FAILED
    statuses = {d["speaker"]: d["status"] for d in ndjson(run.stdout)}
    assert statuses == {"spk-000": "reenrolled", "spk-001": "no-audio", "spk-002": "reenrolled"}
    assert run.stderr.count("spk-001: no kept enrollment audio") == 1, run.stderr
    assert "1 of 3 speaker(s) not re-enrolled: spk-001" in run.stderr
    assert "dasctl register FILE --speaker" in run.stderr
    assert current_models() == {"spk-000": "new", "spk-001": "old", "spk-002": "new"}


def test_a_model_the_service_does_not_have_is_one_error_before_any_session(
    dasctl: Any, two_models: Emulator
) -> None:
    seed(10)
    before = enrollments()
    run = dasctl("reenroll", "--model-hash", "nwe", *FAST, "--json", env=two_models.client_env())
    assert run.returncode == ExitCode.REJECTED
    assert run.stderr.splitlines() == [
        "dasctl: error: the service has no model 'nwe': nothing was re-enrolled",
        "  Models the service has: old, new. Did you mean --model-hash new?",
    ]
    assert run.stdout == ""
    assert enrollments() == before  # no session ran: no failed attempt recorded for anyone
    # a dry run asks no service (only a register session could tell): it plans, and says it did not ask
    logged = len(two_models.output())
    dry = dasctl("reenroll", "--model-hash", "nwe", "--dry-run", env=two_models.client_env())
    assert dry.returncode == 0, dry.stderr
    assert "would re-enroll spk-000: model old -> nwe" in dry.stdout
    assert "the service was not asked" in dry.stderr
    assert "register" not in two_models.output()[logged:]  # no session, not even a refused initialize
    offline = dasctl("reenroll", "--model-hash", "nwe", "--dry-run", env={"DASCTL_URL": "http://127.0.0.1:9"})
    assert offline.returncode == 0 and offline.stdout == dry.stdout, offline.stderr


def test_each_failure_is_printed_once(dasctl: Any, two_models: Emulator) -> None:
    seed(3, without_audio=(1,))
    store = open_store()
    try:  # spk-009's kept audio is a tone: the service answers result-fail-spoof
        store.record_enrollment(EnrollmentRecord(
            speaker="spk-009", ok=True, origin="register", outcome="result-success", credential="c-9",
            model_hash="old", call_id=str(uuid.uuid4()), protocol="twilio",
            audio=mulaw("tone-440-8k-mono.wav")))
    finally:
        store.close()
    run = dasctl("reenroll", "--model-hash", "new", *FAST, env=two_models.client_env())
    assert run.returncode == ExitCode.BATCH_FAILED, run.stderr
    assert run.stderr.count("spk-001: no kept enrollment audio") == 1, run.stderr
    assert run.stderr.count("spk-009: ") == 1, run.stderr
    assert "2 of 4 speaker(s) not re-enrolled: spk-001, spk-009" in run.stderr
    quiet = dasctl("reenroll", "--model-hash", "new", *FAST, "-q", env=two_models.client_env())
    assert quiet.returncode == ExitCode.BATCH_FAILED
    assert quiet.stderr.count("spk-001: no kept enrollment audio") == 1, quiet.stderr
    assert quiet.stderr.count("spk-009: ") == 1, quiet.stderr


def test_the_end_offers_to_move_the_profile_to_the_new_model(dasctl: Any, two_models: Emulator) -> None:
    seed(2)
    env = two_models.client_env()
    run = dasctl("reenroll", "--model-hash", "new", *FAST, env=env)
    assert run.returncode == 0, run.stderr
    offer = "  dasctl config set model_hash new --profile local"
    assert "profile 'local' still names model dasctl-emulator-model-v1" in run.stderr
    assert offer in run.stderr.splitlines()
    moved = dasctl(*offer.split()[1:], env=env)
    assert moved.returncode == 0, moved.stderr
    again = dasctl("reenroll", "--model-hash", "new", *FAST, env=env)
    assert again.returncode == 0 and "config set model_hash" not in again.stderr
    from_env = dasctl("reenroll", "--model-hash", "new", *FAST, env={**env, "DASCTL_MODEL_HASH": "old"})
    assert "  export DASCTL_MODEL_HASH=new" in from_env.stderr.splitlines()


def test_a_refused_token_stops_the_batch_with_exit_4_and_records_nothing(
    dasctl: Any, start_emulator: Any
) -> None:
    seed(3)
    refusing = start_emulator("--model-hash", "old", "--model-hash", "new", "--fault-refuse-tokens")
    run = dasctl("reenroll", "--model-hash", "new", *FAST, "-j", "2", env=refusing.client_env())
    assert run.returncode == ExitCode.AUTH, run.stderr
    assert "dasctl: error: the service refused the access token" in run.stderr
    assert "Traceback" not in run.stderr
    # not the speakers' failure: no attempt is recorded, the rerun will do them all
    assert all(len(records) == 1 for records in enrollments().values())
    assert set(current_models().values()) == {"old"}


@pytest.mark.slow
def test_kill_9_in_the_middle_then_a_rerun_reenrolls_each_speaker_exactly_once(
    dasctl: Any, two_models: Emulator
) -> None:
    seed(50)
    env = {**os.environ, **two_models.client_env()}
    # paced at 4x real time so that the batch is still running when it is killed
    first = subprocess.Popen(
        [sys.executable, "-m", "dasctl", "reenroll", "--model-hash", "new", "-j", "4", "--speed", "4",
         "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        assert first.stdout is not None
        printed = [first.stdout.readline() for _ in range(6)]
        assert all(json.loads(line)["status"] == "reenrolled" for line in printed)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    after_kill = current_models()
    moved = sum(1 for model in after_kill.values() if model == "new")
    assert 6 <= moved < 50, moved  # killed in the middle, not before nor after

    rerun = dasctl("reenroll", "--model-hash", "new", "-j", "4", *FAST, "--json", env=two_models.client_env())
    assert rerun.returncode == 0, rerun.stderr
    assert len(ndjson(rerun.stdout)) == 50 - moved  # only what was left
    assert set(current_models().values()) == {"new"}
    for speaker, records in enrollments().items():
        reenrolled = [r for r in records if r.origin == "reenroll" and r.ok]
        assert len(reenrolled) == 1, (speaker, [(r.origin, r.model_hash, r.call_id) for r in records])
        assert [r.model_hash for r in records if r.ok] == ["old", "new"]


def test_sigterm_stops_the_batch_with_130_and_keeps_what_finished(dasctl: Any, two_models: Emulator) -> None:
    seed(12)
    env = {**os.environ, **two_models.client_env()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dasctl", "reenroll", "--model-hash", "new", "-j", "2", "--speed", "2",
         "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "interrupted after" in err and "Run the same command again" in err and "Traceback" not in err
    assert 1 <= sum(1 for model in current_models().values() if model == "new") < 12


def test_help_has_examples_and_exit_codes(dasctl: Any) -> None:
    run = dasctl("reenroll", "--help")
    assert run.returncode == 0
    assert "\nEXAMPLES\n  $ dasctl" in run.stdout
    assert "dasctl reenroll --model-hash model-2027 --dry-run" in run.stdout
    assert "\nEXIT CODES\n  0 every stale speaker re-enrolled" in run.stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_terminal_shows_one_bar_over_the_batch(
    two_models: Emulator, tmp_path: Path, tmux_server: TmuxServer
) -> None:
    seed(8)
    done = tmp_path / "exit-code"
    env = {**two_models.client_env(), "DASCTL_CONFIG_DIR": os.environ["DASCTL_CONFIG_DIR"],
           "TERM": "xterm-256color"}
    name = tmux_server.new_session(dasctl_command("reenroll --model-hash new -j 2 --speed 3", env, done))
    mid_run = tmux_server.wait_for(name, lambda screen: bool(re.search(r"done [1-7] ", screen))
                                   and "left " in screen, 30)
    (bar,) = [line for line in mid_run.splitlines() if "done " in line]
    assert "re-enroll → new" in bar and "/8" in bar and "failed 0" in bar
    assert "ETA " in bar and "/s" in bar
    assert wait_for_file(done, 30) == "0"
    final = tmux_server.screen(name)
    assert "8/8" in final and "re-enrolled 8 of 8 speaker(s) with new; 0 failed" in final

def test_register_and_watch_warn_when_the_profile_was_left_on_the_old_model(
    dasctl: Any, two_models: Emulator, tmp_path: Path
) -> None:
    seed(3, model="new")  # the store was moved to `new`...
    env = two_models.client_env()
    assert dasctl("config", "set", "model_hash", "old", "--profile", "local", env=env).returncode == 0
    warning = ("dasctl: warning: profile 'local' enrolls with model old, but no speaker in the store has a "
               "credential of it, and 3 of 3 have model new (re-enrolled?); to enroll with new: "
               "dasctl config set model_hash new --profile local")
    tone = str(DATA / "tone-440-8k-mono.wav")  # refused (exit 5): keeps the store as it is
    run = dasctl("register", tone, "--speaker", "CUST1", *FAST, env=env)
    assert run.returncode == ExitCode.REJECTED, run.stderr
    assert warning in run.stderr.splitlines()
    chosen = dasctl("register", tone, "--speaker", "CUST1", "--model-hash", "old", *FAST, env=env)
    assert chosen.returncode == ExitCode.REJECTED and "warning: profile" not in chosen.stderr
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(DATA / "speech-b-16k-mono.wav", inbox / "CUST3.wav")
    watched = dasctl("watch", str(inbox), "--once", *FAST, env=env)
    assert watched.returncode == 0, watched.stderr
    assert warning in watched.stderr
    # the profile's model now holds a speaker (CUST3): no more warning
    again = dasctl("register", tone, "--speaker", "CUST1", *FAST, env=env)
    assert again.returncode == ExitCode.REJECTED and "warning: profile" not in again.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_store_counts_current_credentials_by_model(backend: str, tmp_path: Path, request: Any) -> None:
    url = str(tmp_path / "s.db") if backend == "sqlite" else request.getfixturevalue("postgres_store_url")
    store = open_store(url)
    try:
        for speaker, model in (("a", "m1"), ("b", "m1"), ("c", "m2"), ("a", "m2")):  # a moves from m1 to m2
            store.record_enrollment(EnrollmentRecord(speaker, True, credential="c", model_hash=model))
        store.record_enrollment(EnrollmentRecord("d", False, model_hash="m3"))  # failed: no credential
        assert store.current_models() == {"m1": 1, "m2": 2}
        assert store.holds_model("m1") and store.holds_model("m2") and not store.holds_model("m3")
        assert store.speaker_ids("", 2) == ["a", "b"] and store.speaker_ids("c") == ["c"]
    finally:
        store.close()


def test_a_reenroll_call_id_is_the_same_on_every_run_of_a_store_and_another_for_another_store() -> None:
    """The call id is derived, so that a rerun after a crash repeats it; two stores both number their
    enrollments from 1, and one service refuses a call id that is still live: the enrollment's own call id,
    speaker and time go into it too."""
    from dasctl.reenroll import call_id_for

    def enrollment(call_id: str, speaker: str = "CUST1") -> EnrollmentRecord:
        return EnrollmentRecord(speaker=speaker, ok=True, id=1, call_id=call_id,
                                created_at="2026-12-01T10:00:00.000Z")

    ours = call_id_for(enrollment("a"), "new")
    assert ours == call_id_for(enrollment("a"), "new")  # a rerun
    assert uuid.UUID(ours).version == 5
    assert len({ours, call_id_for(enrollment("b"), "new"), call_id_for(enrollment("a", "CUST2"), "new"),
                call_id_for(enrollment("a"), "newer")}) == 4

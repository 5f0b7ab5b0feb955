"""`dasctl verify` end to end: the real CLI in a subprocess against `dasctl serve` (two models) on 127.0.0.1.

Enrollments reach the store through the store's own API (with a credential a real register session
made), so these tests do not depend on how `register` writes to the store.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from dasctl.errors import ExitCode
from dasctl.store import EnrollmentRecord, VerificationRecord, open_store
from tests.conftest import DATA, Emulator

SPEECH_A = str(DATA / "speech-a-8k-mono.wav")
SPEECH_B = str(DATA / "speech-b-16k-mono.wav")
SPEECH_C = str(DATA / "speech-c-22k-mono.wav")
SPEECH_D = str(DATA / "speech-d-16k-mono.wav")  # another voice saying A's very words
STEREO = str(DATA / "speech-ab-44k-stereo.wav")
TONE = str(DATA / "tone-440-8k-mono.wav")
FAST = ("--speed", "0")
PROTOCOLS = ["twilio", "audiohook"]


def register_record(
    dasctl: Any, emulator: Emulator, fixture: str, model: str, output: Path
) -> dict[str, Any]:
    """A real registration with `model`, written by `register -o`; its record."""
    run = dasctl("register", fixture, *FAST, "-q", "--model-hash", model, "-o", str(output),
                 env=emulator.client_env())
    assert run.returncode == 0, run.stderr
    record: dict[str, Any] = json.loads(output.read_text())
    return record


def enroll_in_store(speaker: str, record: dict[str, Any]) -> EnrollmentRecord:
    store = open_store()
    try:
        return store.record_enrollment(EnrollmentRecord(
            speaker=speaker, ok=True, outcome="result-success", credential=record["credential"],
            model_hash=record["model_hash"], call_id=record["call_id"], protocol=record["protocol"],
        ))
    finally:
        store.close()


def history(speaker: str) -> list[Any]:
    store = open_store()
    try:
        return store.history(speaker)
    finally:
        store.close()


@pytest.fixture
def alice(dasctl: Any, two_models: Emulator, tmp_path: Path) -> dict[str, Any]:
    """Speaker alice, enrolled from voice A with the old model, current in the store."""
    record = register_record(dasctl, two_models, SPEECH_A, "old", tmp_path / "alice.json")
    enroll_in_store("alice", record)
    return record


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_enrolled_voice_verifies_and_another_voice_fails_on_score(
    dasctl: Any, two_models: Emulator, alice: dict[str, Any], protocol: str
) -> None:
    env = two_models.client_env()
    # the same voice, from another file (the stereo call's left channel) and another part of the call
    genuine = dasctl("verify", STEREO, "--channel", "left", "--start", "2", "--speaker", "alice", *FAST,
                     "--json", "--protocol", protocol, env=env)
    assert genuine.returncode == 0, genuine.stderr
    document = json.loads(genuine.stdout)
    assert document["schema"] == "dasctl.verify/1"
    assert document["verified"] is True and document["ok"] is True and document["exit_code"] == 0
    assert document["outcome"]["event"] == "result-success"
    assert document["speaker"] == "alice" and document["model_hash"] == "old"
    assert document["protocol"] == protocol and document["score_threshold"] == 0.6
    assert document["score"] >= 0.65 and document["authenticity"] >= 0.8
    assert document["voice_seconds"] >= 3.0 and document["target_voice_seconds"] == 3.0
    assert "credential" not in document

    # D says exactly what alice said in another voice: the score is about the voice, not the words
    for impostor in (SPEECH_B, SPEECH_C, SPEECH_D):
        run = dasctl("verify", impostor, "--speaker", "alice", *FAST, "--json", "--protocol", protocol,
                     env=env)
        assert run.returncode == ExitCode.REJECTED, run.stderr
        document = json.loads(run.stdout)
        assert document["verified"] is False and document["outcome"]["event"] == "result-fail-score"
        assert document["score"] < 0.55 and document["error"]["kind"] == "rejected"
        assert "dasctl: error:" in run.stderr and "result-fail-score" in run.stderr
        assert "Traceback" not in run.stderr


def test_the_decision_is_shown_to_a_person_with_progress_on_stderr(
    dasctl: Any, two_models: Emulator, alice: dict[str, Any]
) -> None:
    run = dasctl("verify", SPEECH_A, "--start", "1", "--speaker", "alice", *FAST, env=two_models.client_env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{SPEECH_A}: verified\n")
    for row in ("speaker       alice", "score ", "(threshold 0.6)", "authenticity", "voice         3.0"):
        assert row in run.stdout, run.stdout
    assert "streaming audio" in run.stderr and "result-success" in run.stderr and "\r" not in run.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_tone_fails_as_a_spoof(
    dasctl: Any, two_models: Emulator, alice: dict[str, Any], protocol: str
) -> None:
    run = dasctl("verify", TONE, "--speaker", "alice", *FAST, "--json", "--protocol", protocol,
                 env=two_models.client_env())
    assert run.returncode == ExitCode.REJECTED
    document = json.loads(run.stdout)
    assert document["outcome"]["event"] == "result-fail-spoof" and document["authenticity"] < 0.8
    assert "result-fail-spoof" in run.stderr and "verify with a live call recording" in run.stderr


def test_an_unknown_speaker_is_a_usage_error_naming_it(
    dasctl: Any, two_models: Emulator, alice: dict[str, Any]
) -> None:
    run = dasctl("verify", SPEECH_A, "--speaker", "nobody-here", *FAST, env=two_models.client_env())
    assert run.returncode == ExitCode.USAGE
    assert run.stderr.startswith("dasctl: error: speaker 'nobody-here' has no credential in the store")
    assert "dasctl credentials list" in run.stderr and run.stdout == ""


def test_verify_before_any_enrollment_says_so_and_creates_no_store_or_key(
    dasctl: Any, two_models: Emulator, tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh-config"
    run = dasctl("verify", SPEECH_A, "--speaker", "alice", *FAST,
                 env={**two_models.client_env(), "DASCTL_CONFIG_DIR": str(fresh)})
    assert run.returncode == ExitCode.USAGE, run.stderr
    assert run.stderr.startswith("dasctl: error: speaker 'alice' has no credential: there is no credential "
                                 "store yet"), run.stderr
    assert "warning" not in run.stderr and run.stdout == ""  # no key made (nor its back-it-up warning)
    assert not (fresh / "store.db").exists() and not (fresh / "store.key").exists()
    # against a record from another machine's register -o: verified; no store is made to keep that in
    record = register_record(dasctl, two_models, SPEECH_A, "old", tmp_path / "alice.json")
    assert record["stored"]["speaker"] == "speech-a-8k-mono"  # a record that names its speaker
    run = dasctl("verify", SPEECH_A, "--credential", str(tmp_path / "alice.json"), *FAST,
                 env={**two_models.client_env(), "DASCTL_CONFIG_DIR": str(fresh)})
    assert run.returncode == ExitCode.OK, run.stderr
    assert "warning" not in run.stderr
    assert not (fresh / "store.db").exists() and not (fresh / "store.key").exists()


def test_verifications_are_kept_in_the_store_as_the_speakers_audit_trail(
    dasctl: Any, two_models: Emulator, alice: dict[str, Any]
) -> None:
    env = two_models.client_env()
    passed = json.loads(dasctl("verify", SPEECH_A, "--speaker", "alice", *FAST, "--json", env=env).stdout)
    failed = json.loads(dasctl("verify", SPEECH_B, "--speaker", "alice", *FAST, "--json", env=env).stdout)
    kept = [entry for entry in history("alice") if isinstance(entry, VerificationRecord)]
    assert [(v.ok, v.outcome, v.call_id) for v in kept] == [
        (True, "result-success", passed["call_id"]),
        (False, "result-fail-score", failed["call_id"]),
    ]
    assert [v.score for v in kept] == [passed["score"], failed["score"]]
    assert kept[0].model_hash == "old" and kept[0].enrollment_id is not None
    assert kept[0].source_path == SPEECH_A and kept[0].source_sha256 and kept[0].protocol == "twilio"
    assert kept[1].voice_seconds == failed["voice_seconds"] and kept[1].created_at
    # and `credentials history` shows them beside the enrollment
    shown = dasctl("credentials", "history", "alice", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    verifications = [line for line in lines if line.get("schema") == "dasctl.verification/1"]
    assert [(v["outcome"], v["call_id"], v["score"]) for v in verifications] == [
        ("result-success", passed["call_id"], passed["score"]),
        ("result-fail-score", failed["call_id"], failed["score"]),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_credential_from_a_register_record_file(
    dasctl: Any, two_models: Emulator, tmp_path: Path, protocol: str
) -> None:
    record_file = tmp_path / "a.credential.json"
    register_record(dasctl, two_models, SPEECH_A, "old", record_file)
    run = dasctl("verify", STEREO, "--channel", "left", "--credential", str(record_file), *FAST, "--json",
                 "--protocol", protocol, env=two_models.client_env())
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    # the record names the speaker register kept it under: the verification joins that speaker's history
    assert document["verified"] is True and document["model_hash"] == "old"
    assert document["speaker"] == "speech-a-8k-mono"
    assert [v.call_id for v in history("speech-a-8k-mono") if isinstance(v, VerificationRecord)] == [
        document["call_id"]
    ]
    # a record made with --no-store names no speaker: the verification is not kept anywhere
    unkept = tmp_path / "unkept.credential.json"
    made = dasctl("register", SPEECH_A, *FAST, "-q", "--model-hash", "old", "--no-store", "-o", str(unkept),
                  env=two_models.client_env())
    assert made.returncode == 0, made.stderr
    run = dasctl("verify", STEREO, "--channel", "left", "--credential", str(unkept), *FAST, "--json",
                 "--protocol", protocol, env=two_models.client_env())
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["speaker"] is None


def test_a_credential_on_stdin_bare_or_as_a_register_json_document(
    dasctl: Any, two_models: Emulator, tmp_path: Path
) -> None:
    env = two_models.client_env()
    registered = dasctl("register", SPEECH_B, *FAST, "-q", "--model-hash", "old", "--json", env=env)
    assert registered.returncode == 0, registered.stderr
    bare = json.loads(registered.stdout)["credential"]
    for given in (registered.stdout, bare + "\n"):
        run = dasctl("verify", SPEECH_B, "--start", "1", "--credential", "-", *FAST, "--json",
                     input=given, env=env)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["verified"] is True
    impostor = dasctl("verify", SPEECH_A, "--credential", "-", *FAST, "--json", input=bare, env=env)
    assert impostor.returncode == ExitCode.REJECTED
    assert json.loads(impostor.stdout)["outcome"]["event"] == "result-fail-score"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no credential in it"),
        ("two words\n", "not a credential"),
        ('{"file": "x.wav", "credential": null}', "the record has no credential"),
        ('{"file": "x.wav"}', "no 'credential' field"),
        ('{"credential": "a"}\n{"credential": "b"}\n', "2 JSON documents"),
    ],
)
def test_a_credential_file_that_holds_no_credential_is_a_usage_error(
    dasctl: Any, two_models: Emulator, tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    run = dasctl("verify", SPEECH_A, "--credential", str(bad), *FAST, env=two_models.client_env())
    assert run.returncode == ExitCode.USAGE
    assert run.stderr.startswith("dasctl: error: ") and message in run.stderr, run.stderr
    assert run.stdout == "" and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "exactly one of --speaker ID and --credential FILE"),
        (("--speaker", "a", "--credential", "x.json"), "exactly one of"),
        (("--credential", "missing.json"), "--credential missing.json: no such file"),
        (("--speaker", "a", "--score-threshold", "1.5"), "--score-threshold 1.5 must be between 0 and 1"),
    ],
)
def test_flag_mistakes_are_usage_errors(dasctl: Any, args: tuple[str, ...], message: str) -> None:
    run = dasctl("verify", SPEECH_A, *args)
    assert run.returncode == ExitCode.USAGE and message in run.stderr, run.stderr


def test_several_files_with_one_not_verified_exit_7(
    dasctl: Any, two_models: Emulator, alice: dict[str, Any]
) -> None:
    run = dasctl("verify", SPEECH_A, SPEECH_B, "--speaker", "alice", *FAST, "--json",
                 env=two_models.client_env())
    assert run.returncode == ExitCode.BATCH_FAILED
    documents = [json.loads(line) for line in run.stdout.splitlines()]
    assert [d["verified"] for d in documents] == [True, False]
    assert "1 of 2 files not verified" in run.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_credential_of_a_model_the_service_no_longer_has_says_to_reenroll(
    dasctl: Any, two_models: Emulator, start_emulator: Any, tmp_path: Path, protocol: str
) -> None:
    record = register_record(dasctl, two_models, SPEECH_A, "old", tmp_path / "alice.json")
    enroll_in_store("alice", record)
    only_new = start_emulator("--model-hash", "new")
    env = {**only_new.client_env(), "DASCTL_MODEL_HASH": "new"}
    run = dasctl("verify", SPEECH_A, "--speaker", "alice", *FAST, "-q", "--json", "--protocol", protocol,
                 env=env)
    assert run.returncode == ExitCode.REJECTED
    document = json.loads(run.stdout)
    assert document["outcome"]["event"] == "error-parameters"
    assert document["error"]["event"] == "error-parameters"
    message, hint = run.stderr.splitlines()[:2]
    assert message.startswith(f"dasctl: error: {SPEECH_A}: the service cannot use this credential")
    assert "made with model old" in hint
    assert "`dasctl reenroll --model-hash new --speaker 'alice'`" in hint
    # the refusal is in the audit trail too
    assert [v.outcome for v in history("alice") if isinstance(v, VerificationRecord)] == ["error-parameters"]


def test_help_has_examples_and_exit_codes(dasctl: Any) -> None:
    run = dasctl("verify", "--help")
    assert run.returncode == 0
    assert "\nEXAMPLES\n  $ dasctl" in run.stdout and "dasctl verify call.wav --speaker alice" in run.stdout
    assert "\nEXIT CODES\n  0 verified" in run.stdout


def test_call_ids_are_fresh_per_file(dasctl: Any, two_models: Emulator, alice: dict[str, Any]) -> None:
    run = dasctl("verify", SPEECH_A, SPEECH_A, "--speaker", "alice", *FAST, "--json",
                 env=two_models.client_env())
    assert run.returncode == 0, run.stderr
    ids = [json.loads(line)["call_id"] for line in run.stdout.splitlines()]
    assert len(set(ids)) == 2 and all(uuid.UUID(i) for i in ids)


def test_events_are_ndjson_lines_before_the_verify_document(
    dasctl: Any, two_models: Emulator, alice: dict[str, Any]
) -> None:
    run = dasctl("verify", SPEECH_A, "--speaker", "alice", *FAST, "--events", env=two_models.client_env())
    assert run.returncode == 0, run.stderr
    *event_lines, result = [json.loads(line) for line in run.stdout.splitlines()]
    names = [line["event"] for line in event_lines]
    assert names[0] == "info-consumer-ready" and names[-1] == "result-success"
    assert event_lines[-1]["score"] == result["score"] and result["schema"] == "dasctl.verify/1"
    assert {line["call_id"] for line in event_lines} == {result["call_id"]}

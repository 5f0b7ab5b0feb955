"""The Python API (`import dasctl`) end to end: dasctl.Client and dasctl.AsyncClient in this process against
a real `dasctl serve` on 127.0.0.1, real WAV files, the real credential store (SQLite in the test's own
config dir). What is asserted is what a Python caller gets: results, records, exceptions and exit codes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import dasctl
from dasctl.session import STATES
from tests.conftest import DATA, Emulator, free_port

SPEECH_A = DATA / "speech-a-8k-mono.wav"
SPEECH_B = DATA / "speech-b-16k-mono.wav"
SPEECH_C = DATA / "speech-c-22k-mono.wav"
STEREO = DATA / "speech-ab-44k-stereo.wav"  # A's voice on the left, B's on the right
FAST: dict[str, Any] = {"speed": 0}


@pytest.fixture
def client(emulator: Emulator) -> dasctl.Client:
    return dasctl.Client(profile="local", url=emulator.url)


def test_register_a_path_bytes_and_a_binary_file(client: dasctl.Client) -> None:
    by_path = client.register(SPEECH_A, speaker="alice", **FAST)
    by_bytes = client.register(SPEECH_B.read_bytes(), speaker="bob", **FAST)
    with SPEECH_C.open("rb") as file:
        by_file = client.register(file, **FAST)  # the speaker id comes from the file's name
    uploaded = client.register(io.BytesIO(STEREO.read_bytes()), speaker="dora", channel="right", **FAST)

    for result, file_name, speaker in [
        (by_path, str(SPEECH_A), "alice"),
        (by_bytes, "<bytes>", "bob"),
        (by_file, str(SPEECH_C), "speech-c-22k-mono"),
        (uploaded, "<file>", "dora"),
    ]:
        assert isinstance(result, dasctl.RegisterResult)
        assert result.ok and result.event == "result-success" and result.failure is None
        assert result.credential and result.file == file_name and result.speaker == speaker
        assert result.stored_id is not None and result.exit_code == 0
        # the record is the document `dasctl register --json` prints
        document = json.loads(result.json_line())
        assert document["schema"] == "dasctl.register/1" and document["credential"] == result.credential
        assert result.summary().startswith(f"{file_name}: registered\n")

    current = {record.speaker: record for record in client.store.list()}
    assert set(current) == {"alice", "bob", "speech-c-22k-mono", "dora"}
    assert current["bob"].credential == by_bytes.credential
    # audio held in memory is no file: no path in the store, but its size and digest are the bytes'
    assert current["alice"].source_path == str(SPEECH_A.resolve())
    assert current["bob"].source_path is None
    assert current["bob"].source_size == SPEECH_B.stat().st_size
    assert current["bob"].source_sha256 == hashlib.sha256(SPEECH_B.read_bytes()).hexdigest()
    assert current["speech-c-22k-mono"].source_sha256 == hashlib.sha256(SPEECH_C.read_bytes()).hexdigest()
    assert all(record.has_audio for record in current.values())


def test_register_writes_the_credential_record_and_can_keep_nothing(
    client: dasctl.Client, tmp_path: Path
) -> None:
    output = tmp_path / "alice.credential.json"
    result = client.register(SPEECH_A, store=False, output=output, **FAST)
    assert result.ok and result.stored_id is None and result.output == str(output)
    record = json.loads(output.read_text())
    assert record["credential"] == result.credential and "created" in record
    assert output.stat().st_mode & 0o777 == 0o600
    assert client.store.list() == []
    # as on the command line, an existing record is kept unless force
    with pytest.raises(dasctl.UsageError, match="already exists") as refused:
        client.register(SPEECH_A, store=False, output=output, **FAST)
    assert refused.value.exit_code == 2


def test_the_progress_callback_and_async_iteration_get_the_vad_events_in_order(emulator: Emulator) -> None:
    seen_by_callback: list[dasctl.Progress] = []

    async def main() -> tuple[list[dasctl.Progress], dasctl.RegisterResult]:
        client = dasctl.AsyncClient(profile="local", url=emulator.url)
        run = client.register(SPEECH_A, speaker="alice", on_progress=seen_by_callback.append, **FAST)
        iterated = [progress async for progress in run]
        return iterated, await run

    iterated, result = asyncio.run(main())
    assert result.ok
    assert iterated == seen_by_callback  # the same snapshots, the same order
    events = [progress.event for progress in iterated if progress.event is not None]
    names = [event.name for event in events]
    assert names[0] == "info-consumer-ready" and names[-1] == "result-success"
    vad = [event for event in events if isinstance(event, dasctl.VadStatus)]
    assert len(vad) >= 5 and names[1:-1] == ["info-vad-status"] * len(vad)
    seconds = [event.audio_seconds for event in vad]
    assert seconds == sorted(seconds) and seconds[-1] == pytest.approx(5.0)
    assert isinstance(events[-1], dasctl.SessionResult) and events[-1].credential == result.credential
    states = [STATES.index(progress.state) for progress in iterated]
    assert states == sorted(states) and iterated[-1].state == "done"

    # the blocking client hands the callback the same kind of sequence
    blocking: list[dasctl.Progress] = []
    dasctl.Client(profile="local", url=emulator.url).register(
        SPEECH_B, speaker="bob", on_progress=blocking.append, **FAST
    )
    blocking_names = [progress.event.name for progress in blocking if progress.event is not None]
    assert blocking_names[0] == "info-consumer-ready" and blocking_names[-1] == "result-success"


def test_verify_before_any_enrollment_creates_no_store(emulator: Emulator, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh-config"
    client = dasctl.Client(profile="local", url=emulator.url,
                           env={**os.environ, "DASCTL_CONFIG_DIR": str(fresh)})
    with pytest.raises(dasctl.UsageError) as unknown:
        client.verify(SPEECH_A, speaker="alice", **FAST)
    assert unknown.value.exit_code == 2 and "there is no credential store yet" in unknown.value.message
    assert not (fresh / "store.db").exists() and not (fresh / "store.key").exists()


def test_verify_by_speaker_and_the_history_it_leaves(client: dasctl.Client, tmp_path: Path) -> None:
    enrolled = client.register(SPEECH_A, speaker="alice", **FAST)
    # the same voice from another recording (the stereo call's left channel), then another voice
    genuine = client.verify(STEREO, speaker="alice", channel="left", start=2, **FAST)
    assert isinstance(genuine, dasctl.VerifyResult)
    assert genuine.verified and genuine.speaker == "alice" and genuine.score is not None
    assert genuine.score_threshold is not None and genuine.score >= genuine.score_threshold
    impostor = client.verify(SPEECH_B.read_bytes(), speaker="alice", check=False, **FAST)
    assert not impostor.verified and impostor.event == "result-fail-score"
    assert isinstance(impostor.failure, dasctl.ServiceRejected) and impostor.exit_code == 5
    with pytest.raises(dasctl.ServiceRejected) as refused:
        client.verify(SPEECH_B, speaker="alice", **FAST)
    assert refused.value.exit_code == 5 and "result-fail-score" in refused.value.message
    # the raised error carries the session's result all the same
    assert isinstance(refused.value.result, dasctl.VerifyResult) and refused.value.result.verified is False
    assert refused.value.result.score is not None and refused.value.result.call_id
    # against the credential itself (no store lookup): the RegisterResult is a credential
    again = client.verify(STEREO, credential=enrolled, channel="left", start=2, **FAST)
    assert again.verified and again.speaker == "alice"

    history = client.store.history("alice")
    assert [type(entry).__name__ for entry in history] == [
        "EnrollmentRecord", "VerificationRecord", "VerificationRecord", "VerificationRecord",
        "VerificationRecord",
    ]
    assert history[0].call_id == enrolled.call_id
    assert [entry.ok for entry in history[1:]] == [True, False, False, True]
    assert history[1].call_id == genuine.call_id and history[2].call_id == impostor.call_id
    assert history[2].source_path is None
    assert history[2].source_sha256 == hashlib.sha256(SPEECH_B.read_bytes()).hexdigest()

    exported = tmp_path / "credentials.ndjson"
    documents = client.store.export(exported)
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert lines == documents and [line["speaker"] for line in lines] == ["alice"]
    assert lines[0]["schema"] == "dasctl.credential/1" and lines[0]["credential"] == enrolled.credential


@pytest.mark.parametrize(
    ("audio", "options", "error", "code", "words"),
    [
        (b"this is no recording", {"speaker": "x"}, dasctl.AudioError, 3, "<bytes>: is a text file"),
        (b"", {"speaker": "x"}, dasctl.AudioError, 3, "<bytes>: empty"),
        (SPEECH_A.read_bytes(), {}, dasctl.UsageError, 2, "<bytes> needs speaker"),
        (DATA / "no-such.wav", {}, dasctl.UsageError, 2, "no such file"),
        (SPEECH_A, {"speed": -1}, dasctl.UsageError, 2, "speed -1 is negative"),
        (SPEECH_A, {"protocol": "sip"}, dasctl.UsageError, 2, "protocol 'sip'"),
        (SPEECH_A, {"channel": "right"}, dasctl.UsageError, 2, "mono"),
    ],
)
def test_a_bad_request_raises_with_the_exit_code_of_the_command_line(
    client: dasctl.Client, audio: Any, options: dict[str, Any], error: type[dasctl.DasctlError], code: int,
    words: str,
) -> None:
    with pytest.raises(error) as raised:
        client.register(audio, **{**FAST, **options})
    assert raised.value.exit_code == code and words in raised.value.message
    assert "dasctl-audio-" not in raised.value.message  # audio in memory is named as it was given
    assert client.store.list() == []


def test_failures_of_the_service_and_the_store_carry_their_exit_codes(
    client: dasctl.Client, tmp_path: Path
) -> None:
    with pytest.raises(dasctl.UsageError) as unknown:
        client.verify(SPEECH_A, speaker="nobody-here", **FAST)
    assert unknown.value.exit_code == 2 and "'nobody-here' has no credential" in unknown.value.message

    nowhere = dasctl.Client(profile="local", url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(dasctl.ServiceUnavailable) as unreachable:
        nowhere.register(SPEECH_A, speaker="alice", timeout=5, **FAST)
    assert unreachable.value.exit_code == 6 and "cannot reach the token endpoint" in unreachable.value.message
    # the attempt is kept all the same (as `dasctl register` keeps it): failed, no credential
    [attempt] = nowhere.store.history("alice")
    assert not attempt.ok and attempt.outcome == "unavailable"
    assert unreachable.value.result.stored_id == attempt.id and unreachable.value.result.credential is None

    not_a_store = tmp_path / "not-a-store.db"
    not_a_store.write_text("hello")
    with pytest.raises(dasctl.DasctlError) as unusable:
        dasctl.Client(profile="local", store=str(not_a_store)).store.list()
    assert unusable.value.exit_code == 2 and str(not_a_store) in unusable.value.message


def test_a_text_mode_file_is_refused_before_anything_starts(client: dasctl.Client) -> None:
    with SPEECH_A.open() as text, pytest.raises(dasctl.UsageError, match="open in text mode") as refused:
        client.register(text, speaker="alice", **FAST)  # type: ignore[arg-type]  # the mistake tested
    assert refused.value.exit_code == 2 and 'open(path, "rb")' in (refused.value.hint or "")


def test_the_blocking_client_refuses_clearly_inside_a_running_loop(client: dasctl.Client) -> None:
    async def in_a_loop() -> None:
        client.register(SPEECH_A, speaker="alice", **FAST)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a warning
        with pytest.raises(dasctl.RunningLoopError) as refused:
            asyncio.run(in_a_loop())
    error = refused.value
    assert isinstance(error, dasctl.UsageError) and isinstance(error, RuntimeError) and error.exit_code == 2
    assert "running event loop" in error.message and "AsyncClient" in (error.hint or "")
    assert client.store.list() == []  # nothing was started


def test_import_dasctl_is_cheap_and_help_is_a_first_page() -> None:
    heavy = ("numpy", "socketio", "soundfile")
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, dasctl; dasctl.Client; dasctl.DasctlError;"
         f"print(sorted(m for m in {heavy!r} if m in sys.modules))"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert imported.stdout.strip() == "[]"
    timing = subprocess.run([sys.executable, "-X", "importtime", "-m", "dasctl", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert timing.returncode == 0
    modules = {line.rsplit("|", 1)[-1].strip() for line in timing.stderr.splitlines() if "|" in line}
    assert not {name for name in modules if name.split(".")[0] in heavy}
    assert not {"dasctl.client", "dasctl.session", "dasctl.enroll"} & modules

    page = subprocess.run([sys.executable, "-c", "import dasctl; help(dasctl)"], capture_output=True,
                          text=True, timeout=60, env={"PAGER": "cat", "PATH": "/usr/bin:/bin"})
    assert page.returncode == 0
    head = page.stdout[:2000]
    assert "enroll speakers in das-Peak Streaming" in head
    assert 'client = dasctl.Client(profile="local")' in head and "client.verify(" in head
    assert "class AsyncClient" in page.stdout and "class DasctlError" in page.stdout


@pytest.mark.slow
def test_the_examples_in_docs_python_md_run(emulator: Emulator) -> None:
    """Every example of the guide that needs no third-party framework runs as written, in order (the
    notebook's top-level `await` as a notebook runs it)."""
    import os
    import re

    from tests.conftest import ROOT

    guide = (ROOT / "docs" / "python.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, re.S)
    runnable = [block for block in blocks if "airflow" not in block and "django" not in block]
    assert len(runnable) >= 4
    runner = (
        "import ast, asyncio, sys\n"
        "code = compile(sys.stdin.read(), 'docs/python.md', 'exec', flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)\n"
        "outcome = eval(code, {'__name__': '__main__'})\n"
        "if asyncio.iscoroutine(outcome):\n"
        "    asyncio.run(outcome)\n"
    )
    env = {**os.environ, **emulator.client_env()}
    outputs = []
    for block in runnable:
        ran = subprocess.run([sys.executable, "-c", runner], input=block, capture_output=True, text=True,
                             cwd=ROOT, env=env, timeout=120)
        assert ran.returncode == 0, f"{block}\n{ran.stderr}"
        outputs.append(ran.stdout)
    assert "kept as record 1" in outputs[0] and "\nverified " in outputs[0]
    assert outputs[1].startswith("5 ") and "result-fail-score" in outputs[1]
    assert "5 s of voice" in outputs[2]
    assert "registered" in outputs[3] and "voice 5.0/5 s" in outputs[3]
    assert outputs[-1].startswith("6 ") and "no session" in outputs[-1]  # the stream example


def test_cancelling_a_run_closes_its_session(emulator: Emulator) -> None:
    """run.cancel() ends the session as Ctrl-C ends `dasctl register`: the service sees the client leave."""
    import re
    import time

    async def main() -> str:
        client = dasctl.AsyncClient(profile="local", url=emulator.url)
        run = client.register(SPEECH_A, speaker="alice", speed=1)  # real time: about 5 s to stream
        async for progress in run:
            if progress.state == "streaming" and progress.audio_seconds_sent > 0:
                run.cancel()
                break
        with pytest.raises(asyncio.CancelledError):
            await run
        return progress.call_id

    call_id = asyncio.run(main())
    # the emulator logs a session's end: the client's audio channel said `stop` (the service then ends it
    # with error-audio) or the client left; a session left open would say nothing until its timeout
    deadline = time.monotonic() + 15
    while not re.search(rf"session register \S* ?{call_id}: (error-audio|client disconnected)",
                        emulator.output()):
        assert time.monotonic() < deadline, f"the emulator never saw {call_id} end:\n{emulator.output()}"
        time.sleep(0.05)
    # the attempt was never finished, so nothing was kept
    assert dasctl.Client(profile="local", url=emulator.url).store.history("alice") == []


def test_env_carries_the_audiohook_secret_too(start_emulator: Any, tmp_path: Path) -> None:
    """`env=` is read instead of os.environ for every setting, the AudioHook signing secret included."""
    secret = "YW4gYXVkaW9ob29rIGNsaWVudCBzZWNyZXQsIDMyIGI="
    secret_file = tmp_path / "audiohook-secret"
    secret_file.write_text(secret + "\n")
    server = start_emulator("--audiohook-secret-file", str(secret_file))
    signed = dasctl.Client(env={**os.environ, **server.client_env(), "DASCTL_AUDIOHOOK_SECRET": secret})
    result = signed.register(SPEECH_A, protocol="audiohook", store=False, **FAST)
    assert result.credential
    unsigned = dasctl.Client(env={**os.environ, **server.client_env()})
    with pytest.raises(dasctl.DasctlError) as refused:
        unsigned.register(SPEECH_A, protocol="audiohook", store=False, **FAST)
    assert refused.value.exit_code == 4


def test_stream_plays_the_platforms_part_of_a_live_call(emulator: Emulator) -> None:
    """Client.stream feeds a call whose session `dasctl register --attach` drives in another process."""
    import uuid

    call_id = str(uuid.uuid4())
    attached = subprocess.Popen(
        [sys.executable, "-m", "dasctl", "register", "--attach", call_id, "--no-store", "--json", "-q"],
        env={**os.environ, **emulator.client_env()}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
    )
    try:
        seen: list[Any] = []
        client = dasctl.Client(profile="local", url=emulator.url)
        outcome = client.stream(SPEECH_A, call_id=call_id, speed=0, wait=30, on_progress=seen.append)
        out, err = attached.communicate(timeout=60)
    finally:
        if attached.poll() is None:
            attached.kill()
            attached.wait()
    assert attached.returncode == 0, err
    assert json.loads(out)["credential"] and json.loads(out)["call_id"] == call_id
    assert outcome.call_id == call_id and outcome.position > 0 and outcome.attempts >= 1
    assert seen and all(isinstance(progress, dasctl.StreamProgress) for progress in seen)
    with pytest.raises(dasctl.UsageError) as bad:
        client.stream(SPEECH_A, call_id="call-42")
    assert bad.value.exit_code == 2 and "not a call id" in bad.value.message

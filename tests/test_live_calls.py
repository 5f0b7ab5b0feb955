"""A live call against the real emulator: `register --attach` in one process, `dasctl stream` in another.

The platform's part (stream) and the integration's part (attach) are separate processes, as in
production; either may start first. Together they must end exactly as `dasctl register FILE` does: the
same credential, the same info-vad-status sequence.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import DATA, Emulator

SPEECH = DATA / "speech-a-8k-mono.wav"


class Background:
    """A dasctl process whose stderr lines can be waited for (bounded), then its whole output."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dasctl", *args],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.stdout = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.out_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self.out_reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Block until a stderr line contains text (fails if the process ends or the time runs out)."""
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"the process ended before saying {text!r}: {''.join(self.seen)}")
            self.seen.append(line)
            if text in line:
                return

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout)
        self.out_reader.join(timeout)
        while True:
            line = self.lines.get_nowait() if not self.lines.empty() else None
            if line is None:
                break
            self.seen.append(line)
        return code, self.stdout, "".join(self.seen)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def background() -> Iterator[Any]:
    started: list[Background] = []

    def start(*args: str, env: dict[str, str]) -> Background:
        process = Background(list(args), env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def events_of(stdout: str) -> tuple[list[tuple[float, int]], dict[str, Any]]:
    """From --events output: the info-vad-status figures in order, and the result document."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    vad = [line for line in lines if line.get("event") == "info-vad-status"]
    vads = [(line["audio_seconds"], line["vad_percentage"]) for line in vad]
    results = [line for line in lines if line.get("schema") == "dasctl.register/1"]
    assert len(results) == 1, stdout
    return vads, results[0]


@pytest.mark.parametrize("protocol", ["twilio", "audiohook"])
@pytest.mark.parametrize("first", ["attach", "stream"])
def test_attach_and_stream_end_as_a_file_register_does(
    emulator: Emulator, dasctl: Any, background: Any, protocol: str, first: str
) -> None:
    env = emulator.client_env()
    common = ["--protocol", protocol, "--no-store", "--events"]
    reference = dasctl("register", str(SPEECH), "--speed", "0", *common, env=env)
    assert reference.returncode == 0, reference.stderr
    call_id = str(uuid.uuid4())
    stream_args = ["stream", str(SPEECH), "--call-id", call_id, "--protocol", protocol, "--speed", "0"]
    if first == "attach":
        attached = background("register", "--attach", call_id, *common, env=env)
        # the session exists once consumer-ready came
        attached.wait_for("attach: waiting for the platform's audio")
        streamed = dasctl(*stream_args, env=env)
    else:
        feeder = background(*stream_args, "--wait", "30", env=env)
        feeder.wait_for("refused, trying again")  # the platform's audio came first and was refused
        attached = background("register", "--attach", call_id, *common, env=env)
        code, _, stream_err = feeder.finish()
        streamed = subprocess.CompletedProcess(stream_args, code, "", stream_err)
    code, stdout, stderr = attached.finish()
    assert code == 0, stderr
    assert streamed.returncode == 0, streamed.stderr
    # at --speed 0 the whole file may be out before the service says it has enough: either ends well
    assert "it had enough audio" in streamed.stderr or "all the audio was sent" in streamed.stderr
    assert streamed.stdout == ""
    vads, result = events_of(stdout)
    reference_vads, reference_result = events_of(reference.stdout)
    assert vads == reference_vads and len(vads) > 3
    assert result["credential"] == reference_result["credential"] and result["credential"]
    assert (result["ok"], result["file"], result["call_id"]) == (True, "attach", call_id)
    assert result["channel"] == "platform"
    assert result["voice_seconds"] == reference_result["voice_seconds"]
    assert f"waiting for the platform's audio for call {call_id}" in stderr


def test_attach_keeps_the_collected_audio_and_says_attach_as_its_source(
    emulator: Emulator, dasctl: Any, background: Any, tmp_path: Any
) -> None:
    env = emulator.client_env()
    store = str(tmp_path / "store.db")
    call_id = str(uuid.uuid4())
    feeder = background("stream", str(SPEECH), "--call-id", call_id, "--speed", "0", "--wait", "30", env=env)
    attached = dasctl("register", "--attach", call_id, "--speaker", "alice", "--store", store, env=env)
    assert attached.returncode == 0, attached.stderr
    assert feeder.finish()[0] == 0
    listed = dasctl("credentials", "list", "--store", store, "--json", env=env)
    record = json.loads(listed.stdout.splitlines()[0])
    assert (record["speaker"], record["ok"], record["call_id"]) == ("alice", True, call_id)
    assert (record["source_path"], record["source_sha256"], record["has_audio"]) == ("attach", None, True)


def test_verify_attach_checks_the_live_voice_against_the_store(
    emulator: Emulator, dasctl: Any, background: Any, tmp_path: Any
) -> None:
    env = emulator.client_env()
    store = str(tmp_path / "store.db")
    enrolled = dasctl(
        "register", str(SPEECH), "--speaker", "alice", "--speed", "0", "--store", store, env=env
    )
    assert enrolled.returncode == 0, enrolled.stderr
    call_id = str(uuid.uuid4())
    feeder = background("stream", str(SPEECH), "--call-id", call_id, "--speed", "0", "--wait", "30", env=env)
    verified = dasctl(
        "verify", "--attach", call_id, "--speaker", "alice", "--store", store, "--json", env=env
    )
    assert verified.returncode == 0, verified.stderr
    document = json.loads(verified.stdout)
    assert (document["verified"], document["file"], document["call_id"]) == (True, "attach", call_id)
    assert feeder.finish()[0] == 0
    history = dasctl("credentials", "history", "alice", "--store", store, "--json", env=env)
    assert '"source_path":"attach"' in history.stdout.replace(" ", "")


def test_no_audio_within_wait_is_exit_6_with_what_to_do(emulator: Emulator, dasctl: Any) -> None:
    call_id = str(uuid.uuid4())
    run = dasctl("register", "--attach", call_id, "--no-store", "--wait", "1", env=emulator.client_env())
    assert run.returncode == 6
    assert f"no audio for call {call_id} reached the service within 1 s" in run.stderr
    assert "--wait" in run.stderr and "Traceback" not in run.stderr


def test_the_services_consumer_not_ready_is_exit_6(start_emulator: Any, dasctl: Any) -> None:
    server = start_emulator("--consumer-timeout", "0.5")
    run = dasctl("register", "--attach", "new", "--no-store", "--wait", "30", env=server.client_env())
    assert run.returncode == 6
    assert "error-consumer-not-ready" in run.stderr


@pytest.mark.parametrize("protocol", ["twilio", "audiohook"])
def test_stream_with_no_session_is_refused_with_exit_6(
    emulator: Emulator, dasctl: Any, protocol: str
) -> None:
    call_id = str(uuid.uuid4())
    run = dasctl(
        "stream", str(SPEECH), "--call-id", call_id, "--protocol", protocol, "--speed", "0",
        env=emulator.client_env(),
    )
    assert run.returncode == 6, run.stderr
    assert f"no session is waiting for call_id {call_id}" in run.stderr
    assert f"dasctl register --attach {call_id}" in run.stderr  # the hint
    waited = dasctl(
        "stream", str(SPEECH), "--call-id", call_id, "--protocol", protocol, "--wait", "0.6",
        env=emulator.client_env(),
    )
    assert waited.returncode == 6 and "within --wait 0.6 s" in waited.stderr


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["twilio", "audiohook"])
def test_a_second_audio_stream_for_the_same_call_is_refused(
    emulator: Emulator, dasctl: Any, background: Any, protocol: str
) -> None:
    env = emulator.client_env()
    call_id = str(uuid.uuid4())
    attached = background("register", "--attach", call_id, "--protocol", protocol, "--no-store", env=env)
    attached.wait_for("attach: waiting for the platform's audio")
    # half real time: the first stream is still going when the second one comes, even on a loaded machine
    first = background("stream", str(SPEECH), "--call-id", call_id, "--protocol", protocol, "--speed", "0.5",
                       env=env)
    first.wait_for("sent")
    second = dasctl("stream", str(SPEECH), "--call-id", call_id, "--protocol", protocol, env=env)
    assert second.returncode == 6
    assert f"call_id {call_id} already has an audio channel" in second.stderr
    assert first.finish()[0] == 0
    assert attached.finish()[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["register", "--attach", "call-42", "--speaker", "a"], "--attach 'call-42' is not a call id"),
        (["register", str(SPEECH), "--attach", "new", "--speaker", "a"], "--attach takes no FILE"),
        (["register", "--attach", "new"], "--attach needs --speaker ID"),
        (["register", "--attach", "new", "--no-store", "--wait", "0"], "--wait 0 must be positive"),
        (["register", "--attach", "new", "--no-store", "--call-id", str(uuid.uuid4())], "--call-id out"),
        (["verify", "--attach", "nope", "--speaker", "a"], "--attach 'nope' is not a call id"),
        (["verify", str(SPEECH), "--attach", "new", "--speaker", "a"], "--attach takes no FILE"),
        (["stream", str(SPEECH), "--call-id", "12345"], "--call-id '12345' is not a call id"),
        (["stream", "missing.wav", "--call-id", str(uuid.uuid4())], "missing.wav: no such file"),
        (["register"], "missing FILE..."),
    ],
)
def test_bad_live_call_lines_are_usage_errors(dasctl: Any, args: list[str], message: str) -> None:
    run = dasctl(*args)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("dasctl: error: ") and message in run.stderr.splitlines()[0]
    assert "Traceback" not in run.stderr


def test_call_id_prints_a_uuid_and_the_two_command_lines(dasctl: Any) -> None:
    run = dasctl("call-id")
    assert run.returncode == 0
    call_id = run.stdout.strip()
    assert str(uuid.UUID(call_id)) == call_id
    assert f"dasctl register --attach {call_id}" in run.stderr
    assert f"dasctl stream call.wav --call-id {call_id}" in run.stderr


def test_stream_exit_codes_for_bad_audio_and_a_refused_handshake(
    emulator: Emulator, dasctl: Any, tmp_path: Any
) -> None:
    call_id = str(uuid.uuid4())
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are not samples\n")
    bad = dasctl("stream", str(not_audio), "--call-id", call_id, env=emulator.client_env())
    assert bad.returncode == 3 and "notes.wav" in bad.stderr
    refused = dasctl(
        "stream", str(SPEECH), "--call-id", call_id, "--protocol", "audiohook",
        env={**emulator.client_env(), "DASCTL_AUDIOHOOK_API_KEY": "not-the-key"},
    )
    assert refused.returncode == 4, refused.stderr
    assert "refused the connection (HTTP 401)" in refused.stderr


def test_sigterm_while_waiting_for_the_session_is_exit_130(emulator: Emulator, background: Any) -> None:
    import signal

    feeder = background(
        "stream", str(SPEECH), "--call-id", str(uuid.uuid4()), "--wait", "60", env=emulator.client_env()
    )
    feeder.wait_for("refused, trying again")
    feeder.proc.send_signal(signal.SIGTERM)
    code, stdout, stderr = feeder.finish()
    assert code == 130, stderr
    assert "interrupted" in stderr and stdout == "" and "Traceback" not in stderr


@pytest.mark.parametrize("protocol", ["twilio", "audiohook"])
def test_attach_needs_no_audio_url_in_the_profile(
    emulator: Emulator, dasctl: Any, background: Any, protocol: str
) -> None:
    """The integration's profile names only signalling: the platform, not dasctl, holds the audio URL."""
    from dasctl.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_MODEL_HASH

    login = dasctl("login", "--profile", "crm", "--client-id", DEMO_CLIENT_ID, "--url", emulator.url,
                   "--client-secret-stdin", input=DEMO_CLIENT_SECRET + "\n")
    assert login.returncode == 0, login.stderr
    assert dasctl("config", "set", "model_hash", DEMO_MODEL_HASH, "--profile", "crm").returncode == 0
    from_file = dasctl("register", str(SPEECH), "--profile", "crm", "--protocol", protocol, "--no-store")
    assert from_file.returncode == 2 and f"audio_url.{protocol}" in from_file.stderr  # sending needs it
    call_id = str(uuid.uuid4())
    feeder = background("stream", str(SPEECH), "--call-id", call_id, "--protocol", protocol, "--speed", "0",
                        "--wait", "30", env=emulator.client_env())
    attached = dasctl("register", "--attach", call_id, "--profile", "crm", "--protocol", protocol,
                      "--no-store", "--json")
    fed, _, fed_err = feeder.finish()
    assert attached.returncode == 0, attached.stderr + fed_err
    assert json.loads(attached.stdout)["credential"]
    assert fed == 0, fed_err

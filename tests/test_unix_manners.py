"""How dasctl ends: SIGTERM and SIGHUP as Ctrl-C does, a closed stdout as `cat` does. Real processes,
real files, the real emulator; each test checks the exit status, stderr and the directory afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dasctl.errors import ExitCode
from tests.conftest import DATA, Emulator

SPEECH = DATA / "speech-a-8k-mono.wav"
STEREO = DATA / "speech-ab-44k-stereo.wav"
DASCTL = [sys.executable, "-m", "dasctl"]


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll for a state (not a time): the test goes on as soon as the process got there."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@contextmanager
def reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Kill and wait for the process if the test leaves before it ended: no stray dasctl."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_temporary_file(directory: Path) -> None:
    """The temporary file beside OUT exists: the process is inside its write loop."""
    wait_until(lambda: any(name.endswith(".tmp") for name in listing(directory)), "a temporary file")


def assert_quiet_stderr(stderr: str) -> None:
    assert "Traceback" not in stderr and len(stderr.splitlines()) <= 2, stderr


# --- signals ---------------------------------------------------------------------------------------
def _start_transcode(out: Path, ignore_sigint: bool = False) -> subprocess.Popen[str]:
    def ignore() -> None:  # what a non-interactive shell does to `cmd &`
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen(
        [*DASCTL, "transcode", str(SPEECH), str(out), "--speed", "1"],  # real time: 11.7 s
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=ignore if ignore_sigint else None,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_transcode_ends_on_a_signal_with_130_and_leaves_no_file(tmp_path, signum):
    out = tmp_path / "out.wav"
    proc = _start_transcode(out)
    with reaped(proc):
        wait_for_temporary_file(tmp_path)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert stdout == "" and "transcode:" not in stderr
    assert_quiet_stderr(stderr)
    assert listing(tmp_path) == []


def test_sigterm_ends_a_transcode_waiting_on_a_stdin_that_stays_open(tmp_path):
    # an unknown-length WAV whose writer has not finished: dasctl is blocked reading the pipe
    proc = subprocess.Popen([*DASCTL, "transcode", "-", str(tmp_path / "out.wav")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    with reaped(proc):
        proc.stdin.write((DATA / "wav-headers" / "ffmpeg-pipe.wav").read_bytes())
        proc.stdin.flush()
        wait_for_temporary_file(tmp_path)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert_quiet_stderr(stderr.decode())
    assert listing(tmp_path) == []


def test_sigterm_works_when_sigint_is_ignored(tmp_path):
    out = tmp_path / "out.wav"
    proc = _start_transcode(out, ignore_sigint=True)
    with reaped(proc):
        wait_for_temporary_file(tmp_path)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert listing(tmp_path) == []


def test_sighup_stays_ignored_under_nohup(tmp_path):
    def ignore_hup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    out = tmp_path / "out.ul"
    proc = subprocess.Popen([*DASCTL, "transcode", str(SPEECH), str(out), "--speed", "10"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=ignore_hup)
    with reaped(proc):
        wait_for_temporary_file(tmp_path)
        proc.send_signal(signal.SIGHUP)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert listing(tmp_path) == ["out.ul"] and out.stat().st_size == 93407


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["foreground", "background-in-a-script"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_register_ends_on_sigterm_and_sighup_like_ctrl_c(
    emulator: Emulator, tmp_path: Path, signum, ignore_sigint
):
    def ignore() -> None:  # what a non-interactive shell does to `cmd &`
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    call_id = str(uuid.uuid4())
    credential = tmp_path / "credential.json"
    env = {**os.environ, **emulator.client_env()}
    proc = subprocess.Popen(
        [*DASCTL, "register", str(SPEECH), "--call-id", call_id, "--output", str(credential), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        preexec_fn=ignore if ignore_sigint else None,
    )
    with reaped(proc):
        assert proc.stderr is not None
        for line in proc.stderr:
            if "streaming audio" in line:
                break
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "dasctl: error: interrupted; the session was closed" in stderr and "Traceback" not in stderr
    assert "Unclosed" not in stderr and "asyncio" not in stderr  # cancelled cleanly, not interrupted anywhere
    assert stdout == "" and listing(tmp_path) == []
    # the emulator saw the client leave: the session was closed, not left to time out
    wait_until(lambda: f"{call_id}: client disconnected" in emulator.output(), "the session closed", 15)


def test_register_reads_process_substitution_and_fifos(emulator: Emulator, tmp_path: Path):
    fifo = tmp_path / "call.fifo"
    os.mkfifo(fifo)
    dasctl = " ".join(DASCTL)
    shell = (f"cat {SPEECH} > {fifo} & {dasctl} register <(cat {SPEECH}) {fifo} --speed 0 --json; "
             "echo status $?")
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **emulator.client_env()}, stdin=subprocess.DEVNULL)
    *documents, status = result.stdout.splitlines()
    assert status == "status 0", result.stderr
    assert [json.loads(line)["ok"] for line in documents] == [True, True]
    assert json.loads(documents[1])["file"] == str(fifo)
    assert "Illegal seek" not in result.stderr


# --- a closed stdout -------------------------------------------------------------------------------
def _run_with_closed_stdout(args: list[str], cwd: Path, env: dict[str, str] | None = None
                            ) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader has already gone (`| head -c 0`, deterministically)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([*DASCTL, *args], stdout=write_end, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, timeout=120, cwd=cwd,
                              env={**os.environ, **(env or {})})
    finally:
        os.close(write_end)


def test_transcode_to_a_closed_stdout_ends_quietly_with_141(tmp_path):
    result = _run_with_closed_stdout(["transcode", str(STEREO), "-"], tmp_path)
    assert result.returncode == ExitCode.STDOUT_CLOSED == 141
    assert result.stderr == ""
    assert listing(tmp_path) == []


def test_transcode_into_head_ends_quietly(tmp_path):
    shell = f"{' '.join(DASCTL)} transcode {STEREO} - | head -c 100 | wc -c; echo status ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            stdin=subprocess.DEVNULL)
    assert result.stdout.split() == ["100", "status", "141"] and result.stderr == ""
    assert listing(tmp_path) == []


def test_register_json_to_a_closed_stdout_ends_quietly(emulator: Emulator, tmp_path: Path):
    result = _run_with_closed_stdout(
        ["register", "--json", "--speed", "0", str(SPEECH), str(DATA / "speech-b-16k-mono.wav")],
        tmp_path, emulator.client_env())
    assert result.returncode == ExitCode.STDOUT_CLOSED, result.stderr
    assert "Traceback" not in result.stderr and "error" not in result.stderr
    assert listing(tmp_path) == []


def test_an_error_is_still_reported_when_stdout_is_closed(tmp_path):
    result = _run_with_closed_stdout(["transcode", str(tmp_path / "missing.wav"), "-"], tmp_path)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.startswith("dasctl: error: ") and "no such file" in result.stderr


# --- issue 16's smaller items: `-` for stdout, watch -q, verify's words, a service that dies ---------------
def _seeded_store(path: Path, count: int, model: str = "old") -> None:
    from dasctl.audio import open_audio
    from dasctl.store import EnrollmentRecord, open_store

    with open_audio(DATA / "speech-a-8k-mono.wav") as audio:
        voice = b"".join(audio.chunks())
    store = open_store(str(path))
    try:
        for index in range(count):
            store.record_enrollment(EnrollmentRecord(
                speaker=f"CUST{index}", ok=True, origin="register", outcome="result-success",
                credential=f"credential-{index}", model_hash=model, call_id=str(uuid.uuid4()),
                protocol="twilio", audio=voice,
            ))
    finally:
        store.close()


def _dasctl(*args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "dasctl", *args], env={**os.environ, **(env or {})},
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_credentials_audio_dash_writes_the_wav_to_stdout_and_no_file(tmp_path: Path) -> None:
    import soundfile

    store = tmp_path / "store.db"
    _seeded_store(store, 1)
    done = _dasctl("credentials", "audio", "CUST0", "-", "--store", str(store))
    assert done.returncode == 0, done.stderr
    assert done.stdout[:4] == b"RIFF" and not (Path.cwd() / "-").exists() and not (tmp_path / "-").exists()
    (tmp_path / "out.wav").write_bytes(done.stdout)
    info = soundfile.info(str(tmp_path / "out.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "ULAW") and info.duration > 5
    assert b"stdout" in done.stderr and b"CUST0" in done.stderr


def test_credentials_audio_dash_refuses_a_terminal(tmp_path: Path) -> None:
    import pty

    store = tmp_path / "store.db"
    _seeded_store(store, 1)
    leader, follower = pty.openpty()
    try:
        command = [sys.executable, "-m", "dasctl", "credentials", "audio", "CUST0", "-",
                   "--store", str(store)]
        done = subprocess.run(command, stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              timeout=60)
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == ExitCode.USAGE and b"stdout is a terminal" in done.stderr


def test_credentials_show_of_an_unknown_speaker_names_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    _seeded_store(store, 1)
    done = _dasctl("credentials", "show", "NOBODY", "--store", str(store))
    assert done.returncode == ExitCode.USAGE
    [line, _hint] = done.stderr.decode().splitlines()
    assert "'NOBODY'" in line and str(store) in line


def test_watch_takes_q_after_the_folder(emulator: Emulator, tmp_path: Path) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    (inbox / "CUST1.wav").write_bytes((DATA / "speech-a-8k-mono.wav").read_bytes())
    done = _dasctl("watch", str(inbox), "-q", "--once", "--speed", "0", "--settle", "0", "--store",
                   str(tmp_path / "s.db"), env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""  # no progress lines
    assert json.loads(done.stdout)["file"] == "CUST1.wav"


def test_verify_credential_dev_null_is_empty_not_missing(tmp_path: Path) -> None:
    done = _dasctl("verify", str(DATA / "speech-a-8k-mono.wav"), "--credential", "/dev/null")
    assert done.returncode == ExitCode.USAGE
    assert b"/dev/null: no credential in it (empty)" in done.stderr and b"no such file" not in done.stderr


def test_verify_hint_for_a_credential_of_another_model_reads_as_sentences() -> None:
    from dasctl.verify import Target, stale_model_error

    bare = stale_model_error("a.wav", "bad credential", Target(credential="x", source="f"), "new")
    old = Target(credential="x", source="f", model_hash="old")
    made = stale_model_error("a.wav", "bad credential", old, "new")
    assert bare.hint is not None and made.hint is not None
    assert bare.hint.startswith("The credential may have been made with a model the service no longer has; "
                                "if the service has moved")
    assert made.hint.startswith("The credential was made with model old; if the service has moved")
    assert "credential;" not in bare.hint


def test_a_service_that_dies_mid_reenroll_is_exit_6(
    start_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    service = start_emulator("--model-hash", "old", "--model-hash", "new")
    store = tmp_path / "store.db"
    _seeded_store(store, 6)
    proc = subprocess.Popen([sys.executable, "-m", "dasctl", "reenroll", "--model-hash", "new", "-j", "1",
                             "--speed", "1", "--timeout", "5", "--json", "--store", str(store)],
                            env={**os.environ, **service.client_env()}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # one speaker done, then the service goes away
        service.stop()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert json.loads(first)["speaker"] == "CUST0"
    assert proc.returncode == ExitCode.UNAVAILABLE, err
    errors = [line for line in err.splitlines() if line.startswith("dasctl: error:")]
    assert len(errors) == 1 and "unreachable or failing" in errors[0] and "Traceback" not in err



def test_register_output_dash_prints_the_credential_record_on_stdout(emulator: Emulator) -> None:
    env = {**emulator.client_env()}
    done = _dasctl("register", str(SPEECH), "--speed", "0", "--no-store", "-o", "-", env=env)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)  # the record alone: the summary went to stderr
    assert record["credential"] and record["model_hash"]
    assert not (Path.cwd() / "-").exists()


def test_register_keep_audio_dash_writes_the_wav_to_stdout(emulator: Emulator, tmp_path: Path) -> None:
    import soundfile

    done = _dasctl("register", str(SPEECH), "--speed", "0", "--no-store", "--keep-audio", "-",
                   env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout[:4] == b"RIFF" and not (Path.cwd() / "-").exists()
    (tmp_path / "voice.wav").write_bytes(done.stdout)
    info = soundfile.info(str(tmp_path / "voice.wav"))
    assert (info.samplerate, info.channels) == (8000, 1) and info.duration > 4


@pytest.mark.parametrize("args, message", [
    (["-o", "-", "--keep-audio", "-"], b"both ask for stdout"),
    (["-o", "-", "--json"], b"both write to stdout"),
    (["--keep-audio", "-", "--events"], b"both write to stdout"),
])
def test_register_dash_outputs_that_cannot_share_stdout_are_usage_errors(
    emulator: Emulator, args: list[str], message: bytes
) -> None:
    done = _dasctl("register", str(SPEECH), "--speed", "0", "--no-store", *args, env=emulator.client_env())
    assert done.returncode == ExitCode.USAGE and message in done.stderr and done.stdout == b""
    several = _dasctl("register", str(SPEECH), str(SPEECH), "--no-store", "-o", "-",
                      env=emulator.client_env())
    assert several.returncode == ExitCode.USAGE and b"takes one recording" in several.stderr

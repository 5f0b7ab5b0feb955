"""`dasctl credentials ...` against a real store file: stdout, stderr, exit codes and files."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import soundfile

from dasctl.store import EnrollmentRecord, VerificationRecord, open_store
from tests.conftest import DATA, Emulator
from tests.tmux_server import TmuxServer

Run = Callable[..., subprocess.CompletedProcess[Any]]
AUDIO = bytes(range(256)) * 160
CREDENTIAL = "eyJ2IjoxLCJtb2RlbF9oYXNoIjoiZGFzY3RsIiwidm9pY2VwcmludCI6WzEuMCwyLjBdfQ=="


def _cred(speaker: str, n: int) -> str:
    return f"{CREDENTIAL}-{speaker}-{n}"


@pytest.fixture
def seeded(tmp_path: Path) -> str:
    """A store with: CUST1 enrolled twice (v1 then v2) with audio, CUST2 on v1, FAIL1 only failed."""
    path = str(tmp_path / "seeded.db")
    store = open_store(path)
    try:
        store.record_enrollment(EnrollmentRecord("CUST1", True, credential=_cred("CUST1", 1), model_hash="v1",
                                                 call_id="c1", audio=AUDIO))
        store.record_enrollment(EnrollmentRecord("CUST1", False, outcome="result-fail-spoof", error="spoof",
                                                 call_id="c2", model_hash="v2"))
        store.record_enrollment(EnrollmentRecord("CUST1", True, credential=_cred("CUST1", 2), model_hash="v2",
                                                 call_id="c3", audio=AUDIO[:16000]))
        store.record_verification(VerificationRecord("CUST1", True, outcome="result-success", score=0.91))
        store.record_enrollment(EnrollmentRecord("CUST2", True, credential=_cred("CUST2", 1), model_hash="v1",
                                                 call_id="c4"))
        store.record_enrollment(EnrollmentRecord("FAIL1", False, outcome="error-audio", error="too quiet",
                                                 call_id="c5"))
    finally:
        store.close()
    return path


def test_list_is_tab_separated_and_masked_when_piped(dasctl: Run, seeded: str) -> None:
    done = dasctl("credentials", "list", "--store", seeded)
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [row[0] for row in rows] == ["CUST1", "CUST2"]
    # listing is metadata: nothing is decrypted, so the credential is not even masked, it is absent
    assert rows[0][1] == "v2" and CREDENTIAL not in done.stdout and rows[0][3] == "(encrypted)"
    shown = dasctl("credentials", "list", "--store", seeded, "--show-credential")
    assert _cred("CUST1", 2) in shown.stdout


def test_list_json_carries_credentials_whole_only_when_asked_and_filters(dasctl: Run, seeded: str) -> None:
    done = dasctl("credentials", "list", "--store", seeded, "--json")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(line["schema"] == "dasctl.credential/1" for line in lines)
    assert [(line["speaker"], line["credential"]) for line in lines] == [("CUST1", None), ("CUST2", None)]
    shown = dasctl("credentials", "list", "--store", seeded, "--json", "--show-credential")
    assert [(line["speaker"], line["credential"]) for line in map(json.loads, shown.stdout.splitlines())] == [
        ("CUST1", _cred("CUST1", 2)), ("CUST2", _cred("CUST2", 1))]
    assert all(" " not in raw for raw in done.stdout.splitlines())  # compact
    stale = dasctl("credentials", "list", "--store", seeded, "--json", "--stale-for", "v2")
    assert [json.loads(line)["speaker"] for line in stale.stdout.splitlines()] == ["CUST2"]
    glob = dasctl("credentials", "list", "--store", seeded, "--json", "--speaker", "*2")
    assert [json.loads(line)["speaker"] for line in glob.stdout.splitlines()] == ["CUST2"]


def test_show_and_unknown_speakers(dasctl: Run, seeded: str) -> None:
    done = dasctl("credentials", "show", "CUST1", "--store", seeded, "--json", "--show-credential")
    (document,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert document["credential"] == _cred("CUST1", 2) and document["current"] and document["has_audio"]
    metadata = dasctl("credentials", "show", "CUST1", "--store", seeded, "--json")
    assert json.loads(metadata.stdout)["credential"] is None
    human = dasctl("credentials", "show", "CUST1", "--store", seeded)
    assert "model hash" in human.stdout and CREDENTIAL not in human.stdout
    unknown = dasctl("credentials", "show", "NOBODY", "--store", seeded)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "'NOBODY'" in unknown.stderr and "dasctl credentials list" in unknown.stderr
    failed_only = dasctl("credentials", "show", "FAIL1", "--store", seeded)
    assert failed_only.returncode == 2 and "dasctl credentials history FAIL1" in failed_only.stderr
    assert dasctl("credentials", "history", "NOBODY", "--store", seeded).returncode == 2


def test_history_has_every_attempt_and_verification_oldest_first(dasctl: Run, seeded: str) -> None:
    done = dasctl("credentials", "history", "CUST1", "--store", seeded, "--json")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["schema"], line["ok"]) for line in lines] == [
        ("dasctl.credential/1", True), ("dasctl.credential/1", False), ("dasctl.credential/1", True),
        ("dasctl.verification/1", True)]
    assert lines[0]["superseded_at"] and not lines[0]["current"] and lines[2]["current"]
    table = dasctl("credentials", "history", "CUST1", "--store", seeded)
    assert "enrollment (superseded)" in table.stdout and "enrollment (failed)" in table.stdout
    assert "verification" in table.stdout


def test_export_then_import_rebuilds_the_store_and_importing_twice_adds_nothing(
    dasctl: Run, seeded: str, tmp_path: Path
) -> None:
    exported = dasctl("credentials", "export", "--with-credential", "--store", seeded)
    # 5 enrollments, 1 verification
    assert exported.returncode == 0 and len(exported.stdout.splitlines()) == 6
    dump = tmp_path / "dump.ndjson"
    dump.write_text(exported.stdout)
    copy = str(tmp_path / "copy.db")
    for new, already in ((6, 0), (0, 6)):
        done = dasctl("credentials", "import", str(dump), "--store", copy, "--json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert (summary["new"], summary["already"], summary["refused"]) == (new, already, 0)
    listed = dasctl("credentials", "list", "--store", copy, "--json", "--show-credential")
    assert [json.loads(line)["credential"] for line in listed.stdout.splitlines()] == [
        _cred("CUST1", 2), _cred("CUST2", 1)]
    history = dasctl("credentials", "history", "CUST1", "--store", copy, "--json")
    assert len(history.stdout.splitlines()) == 4  # not 8: the second import recognised every record


def test_export_csv_with_audio_files(dasctl: Run, seeded: str, tmp_path: Path) -> None:
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    done = dasctl("credentials", "export", "--store", seeded, "--format", "csv", "--with-credential",
                  "--audio-dir", str(audio_dir))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == 5 and rows[0]["speaker"] == "CUST1" and rows[0]["credential"] == _cred("CUST1", 1)
    files = [row["audio_file"] for row in rows if row["audio_file"]]
    assert len(files) == 2
    info = soundfile.info(files[0])
    assert (info.samplerate, info.channels, info.frames) == (8000, 1, len(AUDIO))


def _kept_audio(dasctl: Run, store: str, speaker: str, out: Path) -> bytes:
    """The current enrollment audio of speaker in store, as `credentials audio` writes it (raw mu-law)."""
    done = dasctl("credentials", "audio", speaker, str(out), "--store", store)
    assert done.returncode == 0, done.stderr
    info = soundfile.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "ULAW")
    return out.read_bytes()[-info.frames:]


def test_export_with_audio_piped_into_import_moves_the_store_whole(
    dasctl: Run, seeded: str, tmp_path: Path
) -> None:
    exported = dasctl("credentials", "export", "--with-audio", "--store", seeded)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [bool(line.get("audio")) for line in lines] == [True, False, True, False, False, False]
    assert lines[-1]["schema"] == "dasctl.verification/1"
    copy = str(tmp_path / "copy.db")
    done = dasctl("credentials", "import", "-", "--store", copy, input=exported.stdout)
    assert done.returncode == 0, done.stderr
    assert _kept_audio(dasctl, copy, "CUST1", tmp_path / "c1.wav") == AUDIO[:16000]
    store = open_store(copy)
    try:  # kept as audio, not a second time as base64 inside the record's document
        entries = store.history("CUST1", reveal=True)
        documents = [entry.document for entry in entries if isinstance(entry, EnrollmentRecord)]
        assert len(documents) == 3 and all(doc and "audio" not in doc for doc in documents)
    finally:
        store.close()
    no_audio = dasctl("credentials", "audio", "CUST2", str(tmp_path / "c2.wav"), "--store", copy)
    assert no_audio.returncode == 2 and "no enrollment audio" in no_audio.stderr
    refused = dasctl("credentials", "export", "--with-audio", "--format", "csv", "--store", seeded)
    assert refused.returncode == 2 and "--audio-dir" in refused.stderr and refused.stdout == ""


def test_export_audio_dir_then_import_reads_the_files_back_from_beside_the_listing(
    dasctl: Run, seeded: str, tmp_path: Path
) -> None:
    backup = tmp_path / "backup"
    (backup / "audio").mkdir(parents=True)
    exported = subprocess.run(
        [sys.executable, "-m", "dasctl", "credentials", "export", "--audio-dir", "audio", "--with-credential",
         "--store", seeded],
        cwd=backup, capture_output=True, text=True, timeout=60,
    )
    assert exported.returncode == 0, exported.stderr
    listing = backup / "kept.ndjson"
    listing.write_text(exported.stdout)
    assert json.loads(exported.stdout.splitlines()[0])["audio_file"].startswith("audio/")
    copy = str(tmp_path / "copy.db")
    done = dasctl("credentials", "import", str(listing), "--store", copy)  # from another directory
    assert done.returncode == 0, done.stderr
    assert _kept_audio(dasctl, copy, "CUST1", tmp_path / "c1.wav") == AUDIO[:16000]

    # an audio file gone missing: that line is not kept (exit 7, named by line number), the rest are
    (current,) = [p for p in (backup / "audio").iterdir() if p.stat().st_size < len(AUDIO)]
    current.unlink()
    other = str(tmp_path / "other.db")
    partial = dasctl("credentials", "import", str(listing), "--store", other)
    assert partial.returncode == 7
    assert f"{listing}:3: not imported: " in partial.stderr and current.name in partial.stderr
    assert "5 new" in partial.stderr and "Traceback" not in partial.stderr
    listed = dasctl("credentials", "list", "--store", other, "--json", "--show-credential").stdout
    # CUST1's current credential waits for its audio; its first stays superseded, as it was exported
    assert {json.loads(line)["credential"] for line in listed.splitlines()} == {_cred("CUST2", 1)}


def test_import_refuses_audio_that_is_not_8k_mono_mulaw(dasctl: Run, seeded: str, tmp_path: Path) -> None:
    line = json.loads(dasctl("credentials", "export", "--with-credential", "--store",
                             seeded).stdout.splitlines()[0])
    line["audio_file"] = str(DATA / "speech-b-16k-mono.wav")
    listing = tmp_path / "one.ndjson"
    listing.write_text(json.dumps(line) + "\n")
    done = dasctl("credentials", "import", str(listing), "--store", str(tmp_path / "copy.db"))
    assert done.returncode == 7
    assert "not an 8 kHz mono mu-law WAV" in done.stderr and "Traceback" not in done.stderr


def test_import_reports_a_malformed_line_by_number_and_imports_the_rest(
    dasctl: Run, seeded: str, tmp_path: Path
) -> None:
    exported = dasctl("credentials", "export", "--with-credential", "--store", seeded).stdout.splitlines()
    mixed = tmp_path / "mixed.ndjson"
    mixed.write_text("\n".join([exported[0], "{not json", exported[3], '{"schema":"dasctl.event/1"}']) + "\n")
    copy = str(tmp_path / "copy.db")
    done = dasctl("credentials", "import", str(mixed), "--store", copy)
    assert done.returncode == 7
    assert f"{mixed}:2:" in done.stderr and "2 new" in done.stderr
    listed = dasctl("credentials", "list", "--store", copy, "--json").stdout
    # CUST1's line was its first credential, superseded when exported: kept so, not made current
    assert {json.loads(line)["speaker"] for line in listed.splitlines()} == {"CUST2"}
    history = dasctl("credentials", "history", "CUST1", "--store", copy, "--json").stdout
    assert [json.loads(line)["current"] for line in history.splitlines()] == [False]


def test_import_takes_register_json_output(dasctl: Run, emulator: Emulator, tmp_path: Path) -> None:
    done = dasctl("register", "--json", "--speed", "0", "-q", "--no-store",
                  str(DATA / "speech-a-8k-mono.wav"),
                  env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    store = str(tmp_path / "from-register.db")
    imported = dasctl("credentials", "import", "-", "--store", store, input=done.stdout)
    assert imported.returncode == 0, imported.stderr
    output = dasctl("credentials", "list", "--store", store, "--json", "--show-credential").stdout
    listed = [json.loads(line) for line in output.splitlines()]
    assert [(r["speaker"], r["credential"], r["origin"]) for r in listed] == [
        ("speech-a-8k-mono", json.loads(done.stdout)["credential"], "import")]


def test_audio_writes_a_playable_wav_and_refuses_to_overwrite(
    dasctl: Run, seeded: str, tmp_path: Path
) -> None:
    out = tmp_path / "cust1.wav"
    done = dasctl("credentials", "audio", "CUST1", str(out), "--store", seeded)
    assert done.returncode == 0, done.stderr
    data, rate = soundfile.read(out, dtype="int16")
    assert rate == 8000 and len(data) == 16000  # the current enrollment's audio
    again = dasctl("credentials", "audio", "CUST1", str(out), "--store", seeded)
    assert again.returncode == 2 and "--force" in again.stderr
    no_audio = dasctl("credentials", "audio", "CUST2", str(tmp_path / "c2.wav"), "--store", seeded)
    assert no_audio.returncode == 2 and "no enrollment audio" in no_audio.stderr
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".db" and "-" not in p.name)
    assert leftovers == ["cust1.wav"]  # no temp file, no partial c2.wav


def test_rm_needs_yes_without_a_terminal(dasctl: Run, seeded: str) -> None:
    refused = dasctl("credentials", "rm", "CUST1", "--store", seeded)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert dasctl("credentials", "show", "CUST1", "--store", seeded).returncode == 0
    done = dasctl("credentials", "rm", "CUST1", "--yes", "--json", "--store", seeded)
    assert done.returncode == 0 and json.loads(done.stdout)["removed"] == 4
    assert dasctl("credentials", "show", "CUST1", "--store", seeded).returncode == 2
    assert dasctl("credentials", "rm", "CUST1", "--yes", "--store", seeded).returncode == 2


def test_a_corrupt_store_file_is_one_clear_error_and_left_alone(dasctl: Run, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xde\xad" * 2000)
    before = path.read_bytes()
    done = dasctl("credentials", "list", "--store", str(path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"dasctl: error: {path} is not a dasctl credential store")
    assert "Traceback" not in done.stderr and path.read_bytes() == before


@pytest.mark.parametrize("command", ["list", "show", "history", "export", "import", "audio", "rm"])
def test_every_command_has_examples_and_exit_codes_in_its_help(dasctl: Run, command: str) -> None:
    done = dasctl("credentials", command, "--help")
    assert done.returncode == 0
    assert "EXAMPLES" in done.stdout and f"dasctl credentials {command}" in done.stdout
    assert "\nEXIT CODES\n  0 " in done.stdout and "--store" in done.stdout


def _in_tmux(
    tmux_server: TmuxServer, command: str, tmp_path: Path, answer: str | None = None, expect: str = ""
) -> tuple[str, str]:
    """Run a dasctl command in a real terminal (tmux); optionally answer a prompt; (screen, exit code)."""
    import os

    from tests.tmux_server import dasctl_command, wait_for_file

    done = tmp_path / f"{uuid.uuid4().hex[:8]}.rc"
    env = {"DASCTL_CONFIG_DIR": os.environ["DASCTL_CONFIG_DIR"], "TERM": "xterm-256color"}
    name = tmux_server.new_session(dasctl_command(command, env, done, unset=()), width=160, height=20)
    if answer is not None:
        tmux_server.wait_for(name, lambda screen: expect in screen, 30)
        tmux_server.send_keys(name, answer, "Enter")
    code = wait_for_file(done, 30)
    return tmux_server.screen(name), code


@pytest.mark.terminal
@pytest.mark.skipif(__import__("shutil").which("tmux") is None, reason="tmux is not installed")
def test_on_a_terminal_list_is_a_table_and_rm_asks_first(
    seeded: str, tmp_path: Path, tmux_server: TmuxServer
) -> None:
    screen, code = _in_tmux(tmux_server, f"credentials list --store {seeded}", tmp_path)
    assert code == "0" and "speaker" in screen and "model hash" in screen and "CUST2" in screen
    assert _cred("CUST2", 1) not in screen and "(encrypted)" in screen
    # times to the second on a terminal (piped lines keep the whole timestamp)
    assert re.search(r"CUST2 .* \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ ", screen), screen
    screen, code = _in_tmux(tmux_server, f"credentials history CUST1 --store {seeded}", tmp_path)
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ)  ", screen, re.MULTILINE)
    assert code == "0" and len(stamps) == 4, screen
    piped = subprocess.run(
        [sys.executable, "-m", "dasctl", "credentials", "history", "CUST1", "--store", seeded],
        capture_output=True, text=True, timeout=60,
    ).stdout
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z\t", piped), piped
    screen, code = _in_tmux(tmux_server, f"credentials export --with-audio --store {seeded}", tmp_path)
    assert code == "2" and "not for a terminal" in screen and "UklGR" not in screen and "{" not in screen
    screen, code = _in_tmux(tmux_server, f"credentials rm CUST1 --store {seeded}", tmp_path, "n", "[y/N]")
    assert "Remove everything kept about CUST1" in screen and code == "2"
    store = open_store(seeded)
    try:
        assert store.current("CUST1") is not None
    finally:
        store.close()
    screen, code = _in_tmux(tmux_server, f"credentials rm CUST1 --store {seeded}", tmp_path, "y", "[y/N]")
    assert code == "0" and "Removed CUST1: 4 record(s)" in screen


def test_check_of_a_store_not_made_yet_says_so_and_makes_nothing(dasctl: Run, isolated_config: Path) -> None:
    done = dasctl("credentials", "check")
    assert done.returncode == 0, done.stderr
    assert "no credential store there yet (nothing to check" in done.stdout + done.stderr
    assert "ok (full integrity check)" not in done.stdout + done.stderr
    document = json.loads(dasctl("credentials", "check", "--json").stdout)
    assert (document["ok"], document["exists"]) == (True, False)
    assert not (isolated_config / "store.db").exists()

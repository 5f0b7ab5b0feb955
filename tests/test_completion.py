"""Shell completion of values: choices, config keys, and speaker ids and model hashes from the store.

Each check is the real round trip: `dasctl completion bash` sourced in bash, COMP_WORDS set, and what
bash would offer read back (tests/test_command_line.py's helper).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from dasctl.cli import completion
from dasctl.cli.app import app
from dasctl.cli.usage import walk
from dasctl.store import EnrollmentRecord, open_store
from tests.test_command_line import _bash_complete


def _seed(url: str | None, speakers: list[str], model: str = "model-2026") -> None:
    store = open_store(url)
    try:
        for speaker in speakers:
            store.record_enrollment(EnrollmentRecord(speaker, True, credential="c", model_hash=model))
    finally:
        store.close()


def test_format_and_every_listed_choice_complete(isolated_config: Path) -> None:
    assert _bash_complete("dasctl credentials export --format ", isolated_config) == ["ndjson", "csv"]
    assert _bash_complete("dasctl credentials export --format c", isolated_config) == ["csv"]
    assert _bash_complete("dasctl completion ", isolated_config) == ["bash", "zsh", "fish"]
    assert _bash_complete("dasctl config set audio_", isolated_config) == [
        "audio_url.twilio", "audio_url.audiohook", "audio_total_duration"]
    assert "default_profile" in _bash_complete("dasctl config get ", isolated_config)
    assert _bash_complete("dasctl serve --fault-error-event error-a", isolated_config) == ["error-audio"]
    assert _bash_complete("dasctl register a.wav --channel c", isolated_config) == ["customer"]


def test_every_choice_in_the_tree_completes() -> None:
    """Any option whose metavar lists lower-case choices has a completion: a new one cannot be missed."""
    root = get_command(app)
    completion.attach(root)
    for path, command in walk(root):
        for param in command.params:
            if completion._metavar_choices(param) or (path, param.name) in completion.CHOICES:
                assert getattr(param, "_custom_shell_complete", None) is not None, (path, param.name)


@pytest.fixture
def unhurried(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the store offers, not how fast: the 0.2 s bound is the hanging-store test's, and a loaded
    machine (the suite's own workers) can take longer than that to import and open the store."""
    monkeypatch.setenv("DASCTL_COMPLETION_SECONDS", "20")


@pytest.mark.usefixtures("unhurried")
def test_speaker_ids_and_model_hashes_complete_from_the_store(isolated_config: Path, tmp_path: Path) -> None:
    _seed(None, ["CUST000123", "CUST000124", "CUST999", "OTHER1"])
    assert _bash_complete("dasctl credentials history CUST0", isolated_config) == ["CUST000123", "CUST000124"]
    assert _bash_complete("dasctl verify a.wav --speaker OT", isolated_config) == ["OTHER1"]
    assert _bash_complete("dasctl reenroll --model-hash model-", isolated_config) == ["model-2026"]
    # --store on the line is the store completed from
    other = str(tmp_path / "other.db")
    _seed(other, ["TEAM1"], model="model-team")
    assert _bash_complete(f"dasctl credentials rm --store {other} T", isolated_config) == ["TEAM1"]
    assert _bash_complete("dasctl credentials rm T", isolated_config) == []


@pytest.mark.usefixtures("unhurried")
def test_speaker_completion_offers_at_most_200(isolated_config: Path) -> None:
    _seed(None, [f"CUST{index:05d}" for index in range(450)])
    offered = _bash_complete("dasctl credentials show CUST", isolated_config)
    assert offered == [f"CUST{index:05d}" for index in range(200)]


def test_a_store_that_hangs_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    finished = threading.Event()

    def stuck() -> list[str]:
        release.wait(30)
        finished.set()
        return ["late"]

    monkeypatch.delenv("DASCTL_COMPLETION_SECONDS", raising=False)
    try:
        assert completion._bounded(stuck) == []
        assert not finished.is_set()  # the answer came while the lookup was still stuck
    finally:
        release.set()


def test_an_unreachable_store_completes_nothing_and_says_nothing(isolated_config: Path) -> None:
    env = {**os.environ, "_DASCTL_COMPLETE": "complete_bash",
           "COMP_WORDS": "dasctl credentials show --store postgresql://u@127.0.0.1:9/db C", "COMP_CWORD": "5"}
    result = subprocess.run([sys.executable, "-m", "dasctl"], capture_output=True, text=True, env=env,
                            timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr == ""


def test_the_readme_install_lines_create_the_directory(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    lines = [line.strip().removeprefix("$ ") for line in readme.splitlines()
             if "dasctl completion" in line and ">" in line and "completions" in line]
    assert lines, "README has no completion install lines"
    bin_dir = Path(sys.executable).parent
    for line in lines:
        home = tmp_path / f"home-{len(list(tmp_path.iterdir()))}"
        home.mkdir()
        env: dict[str, Any] = {**os.environ, "HOME": str(home),
                               "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
        done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, (line, done.stderr)
        written = [path for path in home.rglob("*") if path.is_file()]
        assert len(written) == 1 and "_DASCTL_COMPLETE" in written[0].read_text(), line

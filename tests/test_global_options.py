"""Global options where people type them (before or after the command), and profiles never invented."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from dasctl.cli import app, main
from dasctl.cli.global_options import hoist
from dasctl.cli.usage import walk
from dasctl.errors import UsageError
from dasctl.store import EnrollmentRecord, open_store
from tests.conftest import DATA, Emulator

GLOBALS = ("-v", "--no-color", "-q")


def _team_profile(dasctl: Any, tmp_path: Path, emulator: Emulator | None = None) -> Path:
    """A profile `team` with its own store holding one speaker, TEAM1."""
    store = tmp_path / "team.db"
    opened = open_store(str(store))
    try:
        opened.record_enrollment(EnrollmentRecord("TEAM1", True, credential="c" * 40, model_hash="m1"))
    finally:
        opened.close()
    url = emulator.url if emulator else "http://127.0.0.1:9"
    for key, value in (("url", url), ("store", str(store))):
        assert dasctl("config", "set", key, value, "--profile", "team").returncode == 0
    return store


def test_profile_after_the_subcommand_of_a_group(dasctl: Any, tmp_path: Path) -> None:
    _team_profile(dasctl, tmp_path)
    for args in (("credentials", "list", "--profile", "team"), ("-p", "team", "credentials", "list"),
                 ("credentials", "list", "-p", "team", "--json"), ("credentials", "list", "--profile=team")):
        done = dasctl(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert "TEAM1" in done.stdout, args
    default = dasctl("credentials", "list")
    assert default.returncode == 0 and "TEAM1" not in default.stdout


def test_watch_takes_verbose_after_the_folder(dasctl: Any, emulator: Emulator, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(DATA / "speech-a-8k-mono.wav", inbox / "CUST7.wav")
    done = dasctl("watch", str(inbox), "--once", "--speed", "0", "-v", env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    assert "dasctl: watch: CUST7.wav: started" in done.stderr  # what -v adds
    assert json.loads(done.stdout.splitlines()[0])["exit_code"] == 0


def test_a_typo_in_the_profile_is_an_error_whatever_the_environment(dasctl: Any, tmp_path: Path) -> None:
    _team_profile(dasctl, tmp_path)
    env = {"DASCTL_URL": "http://127.0.0.1:9"}
    for args in (("-p", "tema", "credentials", "list"), ("credentials", "list", "-p", "tema"),
                 ("register", str(DATA / "speech-a-8k-mono.wav"), "-p", "tema")):
        done = dasctl(*args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("dasctl: error: no profile named 'tema' (known: local, team)")
        assert done.stdout == ""
    from_env = dasctl("credentials", "list", env={**env, "DASCTL_PROFILE": "tema"})
    assert from_env.returncode == 2
    assert "no profile named 'tema' (from DASCTL_PROFILE; known: local, team)" in from_env.stderr
    # the environment still fills a profile that exists
    filled = dasctl("config", "get", "url", "--profile", "team", env=env)
    assert filled.returncode == 0 and filled.stdout.strip() == "http://127.0.0.1:9"


def _leaves() -> list[tuple[str, ...]]:
    root = get_command(app.app)
    return [path for path, command in walk(root) if path and not hasattr(command, "commands")]


@pytest.mark.parametrize("path", _leaves(), ids=lambda path: " ".join(path))
def test_every_command_accepts_the_global_options_after_it(path: tuple[str, ...], capsys: Any) -> None:
    code = main([*path, "--help", *GLOBALS, "--profile", "local"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.startswith(out.out.lstrip()) and "USAGE" in out.out


def test_what_moves_and_what_stays() -> None:
    root = get_command(app.app)
    # moved in front when the command does not declare them
    assert hoist(root, ["credentials", "list", "-vv", "--profile", "team"]) == [
        "-vv", "--profile", "team", "credentials", "list"]
    assert hoist(root, ["watch", "DIR", "-v", "--once"]) == ["-v", "watch", "DIR", "--once"]
    # register declares -q and --profile: they stay the command's
    assert hoist(root, ["register", "a.wav", "-q", "-p", "x", "--no-color"]) == [
        "--no-color", "register", "a.wav", "-q", "-p", "x"]
    # an option's value and anything after `--` are never taken for global options
    assert hoist(root, ["reenroll", "--model-hash", "m", "--speaker", "-v"]) == [
        "reenroll", "--model-hash", "m", "--speaker", "-v"]
    assert hoist(root, ["watch", "DIR", "--", "-v"]) == ["watch", "DIR", "--", "-v"]
    with pytest.raises(UsageError, match="--profile needs a value"):
        hoist(root, ["credentials", "list", "--profile"])
    # unknown commands are left to the parser, which suggests the right one
    assert hoist(root, ["credentals", "list", "-v"]) == ["credentals", "list", "-v"]

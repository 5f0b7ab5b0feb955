"""The command line as a gh user meets it: help that reads like prose, one error style, completion, version.

The help checks walk the whole click command tree, so a command added later is held to the same rules.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dasctl.cli import main
from dasctl.cli.app import app
from dasctl.cli.usage import adopt, walk

BIN = Path(sys.executable).parent


def _tree() -> list[tuple[str, ...]]:
    from typer.main import get_command

    return [path for path, _ in walk(adopt(get_command(app)))]


COMMANDS = _tree()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_tree_has_the_commands():
    assert ("register",) in COMMANDS and ("auth", "status") in COMMANDS and ("completion",) in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "dasctl")
def test_every_help_reads_like_a_person_wrote_it(capsys, path):
    code, out, err = run(capsys, *path, "--help")
    assert code == 0 and err == ""
    # no Python type placeholders, no {argument} braces
    assert not re.search(r"<(str|int|float|path|list\[[^]]*\]|[a-z]+ range)>", out), out
    assert "{" not in out.split("EXAMPLES")[0], out
    assert "\nUSAGE\n  dasctl" in out
    usage = out.split("\nUSAGE\n", 1)[1].split("\n", 1)[0]
    assert "[[" not in usage and "]..." not in usage, usage  # `[SPEAKER...]`, never `[[SPEAKER]...]`
    assert "\nEXAMPLES\n  $ dasctl" in out or "\nEXAMPLES\n  $ " in out, f"no EXAMPLES in {path}"
    # defaults stay on one line: `[default:` is never the last thing on a line
    assert not re.search(r"\[default:\s*$", out, re.M), out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_command_summaries_are_whole_sentences(capsys):
    code, out, _ = run(capsys, "--help")
    commands = out.split("\nCOMMANDS\n", 1)[1].split("\n\n", 1)[0]
    assert "..." not in commands
    for line in commands.splitlines():
        assert not line.rstrip().endswith((",", " the", " to")), line
    whole = "Enroll a speaker in das-Peak Streaming from each recording (FILE, or - for stdin)."
    # wrapped to the terminal's width, but never cut: the whole sentence is there
    assert f"register {whole}" in " ".join(commands.split())


def test_choices_are_listed(capsys):
    _, out, _ = run(capsys, "register", "--help")
    assert "--protocol twilio|audiohook" in out
    assert "-c, --channel mix|left|right|N" in out
    assert "--timeout SECONDS" in out and "FILE..." in out
    assert "\nEXIT CODES\n  0 registered" in out


def test_bare_dasctl_prints_help_on_stdout(dasctl):
    result = dasctl()
    assert result.returncode == 0
    assert result.stdout.startswith("Enroll speakers in das-Peak Streaming")
    assert "COMMANDS" in result.stdout and result.stderr == ""


def test_bare_group_prints_its_help(capsys):
    code, out, err = run(capsys, "config")
    assert code == 0 and "dasctl config show" in out and err == ""


def test_missing_arguments_are_named(dasctl):
    result = dasctl("transcode")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "dasctl: error: missing IN and OUT"
    assert "Usage: dasctl transcode [OPTIONS] IN OUT" in result.stderr
    assert result.stdout == "" and "OPTIONS\n" not in result.stderr  # not the whole help
    one = dasctl("transcode", "in.wav")
    assert one.returncode == 2 and one.stderr.startswith("dasctl: error: missing OUT\n")
    files = dasctl("register")
    assert files.returncode == 2 and files.stderr.startswith("dasctl: error: missing FILE...\n")


@pytest.mark.parametrize(
    ("args", "first_line", "hint"),
    [
        (["register", "x.wav", "--speed", "abc"], "dasctl: error: --speed 'abc' is not a number",
         "Usage: dasctl register"),
        (["watch", ".", "--concurrency", "0"], "dasctl: error: --concurrency 0 must be at least 1", "Usage:"),
        (["watch", ".", "-j", "x"], "dasctl: error: --concurrency 'x' is not a whole number", "Usage:"),
        (["regster"], "dasctl: error: unknown command 'regster' for `dasctl`",
         "Did you mean `dasctl register`?"),
        (["register", "--jsn"], "dasctl: error: unknown option --jsn for `dasctl register`",
         "Did you mean --json?"),
        (["register", "--speed"], "dasctl: error: --speed needs a value", ""),
        (["transcode", "a", "b", "c"], "dasctl: error: too many arguments: c", "Usage: dasctl transcode"),
    ],
)
def test_parser_errors_are_one_style(dasctl, args, first_line, hint):
    result = dasctl(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == first_line
    assert len(lines) <= 2 and hint in result.stderr
    assert "Error:" not in result.stderr and "Input should be" not in result.stderr
    assert result.stdout == ""


def test_version_lists_the_libraries(dasctl):
    for args in (["version"], ["--version", "-v"]):
        result = dasctl(*args)
        assert result.returncode == 0, result.stderr
        names = [line.split()[0] for line in result.stdout.splitlines()]
        assert names[:3] == ["dasctl", "Python", "libsndfile"]
        assert "soxr" in names and "python-socketio" in names
        assert re.search(r"^libsndfile\s+\d+\.\d+", result.stdout, re.M)
    assert dasctl("--version").stdout.count("\n") == 1


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script(dasctl, shell):
    result = dasctl("completion", shell)
    assert result.returncode == 0
    assert "_DASCTL_COMPLETE" in result.stdout and "dasctl" in result.stdout


def test_completion_of_an_unknown_shell_is_a_usage_error(dasctl):
    result = dasctl("completion", "tcsh")
    assert result.returncode == 2 and "no completion for shell 'tcsh'" in result.stderr


def _bash_complete(line: str, isolated_config: Path) -> list[str]:
    """What bash offers at the end of `line` with `dasctl completion bash` sourced: the real round trip."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = subprocess.run([BIN / "dasctl", "completion", "bash"], capture_output=True, text=True,
                            env=env, check=True).stdout
    words = line.split(" ")
    program = (
        f"{script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_dasctl_completion dasctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True,
                            text=True, env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    return [word for word in result.stdout.splitlines() if word]


def test_bash_completes_commands_options_and_values(isolated_config, dasctl):
    assert "register" in _bash_complete("dasctl reg", isolated_config)
    assert _bash_complete("dasctl register --proto", isolated_config) == ["--protocol"]
    assert _bash_complete("dasctl register x.wav --protocol ", isolated_config) == ["twilio", "audiohook"]
    assert _bash_complete("dasctl transcode a b --channel l", isolated_config) == ["left"]
    assert dasctl("config", "set", "url", "http://127.0.0.1:1", "--profile", "staging").returncode == 0
    assert _bash_complete("dasctl register x.wav --profile st", isolated_config) == ["staging"]
    assert set(_bash_complete("dasctl auth status -p ", isolated_config)) == {"local", "staging"}


@pytest.mark.parametrize(("words", "expected"), [
    ("dasctl register x --protocol ", "twilio"),
    ("dasctl credentials show C", "CUST1"),  # speaker ids from the store
])
def test_completion_does_not_import_audio_or_network_libraries(isolated_config, words, expected):
    from dasctl.store import EnrollmentRecord, open_store

    store = open_store()
    try:
        store.record_enrollment(EnrollmentRecord("CUST1", True, credential="c", model_hash="m"))
    finally:
        store.close()
    env = {**os.environ, "_DASCTL_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split(" ")) - 1)}
    code = (
        "import sys, runpy; sys.argv = ['dasctl', 'register', 'x']\n"
        "from dasctl.cli import main\n"
        "status = main([])\n"
        "heavy = [m for m in ('numpy', 'socketio', 'soundfile', 'soxr', 'rich') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert expected in result.stdout
    assert "HEAVY []" in result.stderr, result.stderr


def test_register_shows_the_credential_masked_and_keeps_it_whole_in_json_and_output(
    dasctl, emulator, tmp_path: Path
) -> None:
    import json

    from dasctl.store import open_store

    speech = str(Path(__file__).parent / "data" / "speech-a-8k-mono.wav")
    env = emulator.client_env()
    human = dasctl("register", speech, "--speaker", "CUST1", "--speed", "0", "-o", str(tmp_path / "c.json"),
                   env=env)
    assert human.returncode == 0, human.stderr
    whole = json.loads((tmp_path / "c.json").read_text())["credential"]
    assert len(whole) > 24 and whole not in human.stdout
    (row,) = [line.split() for line in human.stdout.splitlines() if line.split()[:1] == ["credential"]]
    assert row == ["credential", whole[:4] + "…" + whole[-6:]]  # as `credentials list` masks it
    as_json = dasctl("register", speech, "--speaker", "CUST2", "--speed", "0", "--json", env=env)
    document = json.loads(as_json.stdout)
    store = open_store()
    try:
        assert document["credential"] == store.current("CUST2").credential
    finally:
        store.close()

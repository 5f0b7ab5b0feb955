"""Hostile speaker ids and file names through every command that shows them: on a real terminal (a private
tmux server) nothing is acted on (no new window title, no cleared screen, no rich markup), and piped the
bytes carry no control character; JSON keeps the exact values. Real emulator, real store, real files."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from dasctl.store import EnrollmentRecord, open_store
from tests.conftest import DATA, ROOT, Emulator
from tests.tmux_server import TmuxServer, wait_for_file

SPEECH = DATA / "speech-a-8k-mono.wav"

#: (what it is, the id): every one of them would act on a terminal or on rich if shown raw
CORPUS = [
    ("osc-title", "\x1b]0;pwned\x07T1"),
    ("csi-clear", "\x1b[2J\x1b[HT2"),
    ("bell", "ding\x07T3"),
    ("carriage-return", "okay\rEVIL-T4"),
    ("backspace", "abc\b\b\bXYZ-T5"),
    ("rtl-override", "invoice\u202egnp.exe-T6"),
    ("markup-close", "[/x]T7"),
    ("markup-style", "[bold red]RICH[/bold red]T8"),
    ("markup-link", "[link=file:///etc/passwd]click[/link]T9"),
    ("ten-kilobytes", "K" * 10_000 + "\x1b]0;pwned-long\x07T10"),
]
NUL_ID = "nul\x00byte-T11"  # storable in SQLite, never an argument
#: file names: no '/' in them, so the markup there closes nothing, but still styles and links
FILE_MARKUP = ("[bold red]RICH-F1", "[link=mailto:a@b]click-F2")
RAW = ("\x1b", "\x07", "\r", "\b", "\x00", "\u202e")
MARKUP = ("[/x]T7", "[bold red]RICH[/bold red]T8", "[link=file:///etc/passwd]click[/link]T9")


def ansi_c(text: str) -> str:
    """A bash $'...' word for any text without NUL."""
    out = []
    for char in text:
        if char in "\\'":
            out.append("\\" + char)
        elif char.isprintable() and ord(char) < 0x7F:
            out.append(char)
        else:
            out.append("".join(f"\\x{byte:02x}" for byte in char.encode()))
    return "$'" + "".join(out) + "'"


def keep_alive(server: TmuxServer) -> None:
    """A session that outlives the others: a server whose last session ends exits, and a new session
    started at that moment fails."""
    if "keep" not in server.run("list-sessions", "-F", "#{session_name}").stdout.split():
        server.new_session("sleep 3600", name="keep")


@dataclass
class Screen:
    text: str
    title: str
    code: str


def on_terminal(words: list[str], env: dict[str, str], tmp_path: Path, server: TmuxServer,
                rows: int = 120) -> Screen:
    """Run dasctl in a fresh tmux window after a marker line; what the terminal shows, its title, the exit."""
    keep_alive(server)
    name = f"w{uuid.uuid4().hex[:8]}"
    done = tmp_path / f"{name}.rc"
    exports = " ".join(f"{key}={ansi_c(value)}" for key, value in env.items())
    script = (f"cd {ROOT} && echo MARKER-BEFORE && env -u COLUMNS -u LINES {exports} TERM=xterm-256color "
              f"{sys.executable} -m dasctl "
              + " ".join(ansi_c(word) for word in words) + f"; echo $? > {done}; sleep 60")
    server.new_session("bash -c " + shlex.quote(script), width=250, height=rows, name=name)
    server.run("set-option", "-t", name, "scroll-on-clear", "off")  # a clear then erases the marker
    try:
        code = wait_for_file(done, 60)
        return Screen(server.run("capture-pane", "-p", "-J", "-t", name, "-S", "-", "-E", "-").stdout,
                      server.run("display-message", "-p", "-t", name, "#{pane_title}").stdout, code)
    finally:
        server.kill_session(name)


def assert_nothing_acted_on(screen: Screen) -> None:
    assert "pwned" not in screen.title, screen.title  # no OSC title change
    assert "MARKER-BEFORE" in screen.text, screen.text[:2000]  # no clear
    for failure in ("MarkupError", "internal error", "Traceback"):
        assert failure not in screen.text, screen.text[-2000:]


def assert_safe_bytes(data: bytes) -> None:
    text = data.decode("utf-8")
    found = [char for char in RAW if char in text]
    assert not found, (found, text[:2000])


def dasctl(*words: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "dasctl", *words], env={**os.environ, **(env or {})},
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def hostile_store(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.db"
    with closing(open_store(str(path))) as store:
        for index, (_, speaker) in enumerate([*CORPUS, ("nul", NUL_ID)]):
            store.record_enrollment(EnrollmentRecord(
                speaker=speaker, ok=True, origin="import", outcome="result-success",
                credential=f"cred-{index}\x1b]0;pwned-cred\x07", model_hash=f"model\x1b[2J{index}",
                call_id=str(uuid.uuid4()), source_path=f"/calls/{speaker}.wav", audio=b"\xff" * 800,
            ))
    return path


@pytest.mark.slow
def test_credentials_piped_carry_no_control_bytes_and_json_keeps_exact_values(hostile_store: Path) -> None:
    store = str(hostile_store)
    outputs = [dasctl("credentials", "list", "--show-credential", "--store", store),
               dasctl("credentials", "export", "--format", "csv", "--store", store)]
    for index, (_, speaker) in enumerate(CORPUS):
        outputs.append(dasctl("credentials", "show", speaker, "--show-credential", "--store", store))
        if index % 3 == 0:
            outputs.append(dasctl("credentials", "history", speaker, "--store", store))
    for done in outputs:
        assert done.returncode == 0, done.stderr
        assert_safe_bytes(done.stdout)
        assert_safe_bytes(done.stderr)
    listing = outputs[0].stdout.decode()
    assert '"\\033]0;pwned\\aT1"' in listing and '"invoice\\342\\200\\256gnp.exe-T6"' in listing
    assert '"nul\\000byte-T11"' in listing and '"okay\\rEVIL-T4"' in listing
    assert all(text in listing for text in MARKUP)  # plain text, as it is
    exact = dasctl("credentials", "list", "--json", "--store", store)
    kept = {json.loads(line)["speaker"] for line in exact.stdout.decode().splitlines()}
    assert kept == {speaker for _, speaker in CORPUS} | {NUL_ID}
    unknown = dasctl("credentials", "show", "\x1b]0;pwned\x07nobody", "--store", store)
    assert unknown.returncode == 2 and store.encode() in unknown.stderr  # the store is named
    assert_safe_bytes(unknown.stderr)


def test_credentials_on_a_terminal_act_on_nothing(
    hostile_store: Path, tmp_path: Path, tmux_server: TmuxServer
) -> None:
    env = {"DASCTL_CONFIG_DIR": os.environ["DASCTL_CONFIG_DIR"]}
    store = str(hostile_store)
    screen = on_terminal(["credentials", "list", "--store", store], env, tmp_path, tmux_server, rows=200)
    assert screen.code == "0", screen.text[-2000:]
    assert_nothing_acted_on(screen)
    assert "\\033]0;pwned\\aT1" in screen.text and all(text in screen.text for text in MARKUP)
    for words in (["credentials", "show", CORPUS[0][1], "--store", store],
                  ["credentials", "history", CORPUS[1][1], "--store", store],
                  ["credentials", "show", CORPUS[8][1], "--show-credential", "--store", store],
                  ["credentials", "export", "--format", "csv", "--store", store]):
        screen = on_terminal(words, env, tmp_path, tmux_server, rows=200)
        assert screen.code == "0", (words, screen.text[-2000:])
        assert_nothing_acted_on(screen)


@pytest.mark.slow
def test_register_verify_and_watch_with_hostile_names(
    emulator: Emulator, tmp_path: Path, tmux_server: TmuxServer
) -> None:
    env = {**emulator.client_env(), "DASCTL_CONFIG_DIR": os.environ["DASCTL_CONFIG_DIR"]}
    calls = tmp_path / "calls"
    calls.mkdir()
    names = [f"{speaker[:200]}.wav" for _, speaker in CORPUS[:6]] + [f"{text}.wav" for text in FILE_MARKUP]
    for name in names:
        shutil.copy(SPEECH, calls / name)
    store = str(tmp_path / "store.db")
    title, clear = calls / names[0], calls / names[1]
    # register, piped: the human summary and its `stored as` line escaped; --json exact
    done = dasctl("register", str(title), "--speed", "0", "--store", store, env=env)
    assert done.returncode == 0, done.stderr
    assert_safe_bytes(done.stdout)
    assert_safe_bytes(done.stderr)
    assert b'stored        as "\\033]0;pwned\\aT1"' in done.stdout, done.stdout
    exact = dasctl("register", str(clear), "--speed", "0", "--json", "--store", store, env=env)
    assert json.loads(exact.stdout)["stored"]["speaker"] == CORPUS[1][1]
    # register and verify on a terminal, the live bar included
    screen = on_terminal(["register", str(calls / names[7]), "--speed", "0", "--store", store], env, tmp_path,
                         tmux_server)
    assert screen.code == "0", screen.text[-2000:]
    assert_nothing_acted_on(screen)
    assert FILE_MARKUP[1] in screen.text
    screen = on_terminal(["register", str(clear), "--speed", "0", "--speaker", CORPUS[0][1],
                          "--store", store], env, tmp_path, tmux_server)
    assert screen.code == "0" and "\\033]0;pwned\\aT1" in screen.text, screen.text[-2000:]
    assert_nothing_acted_on(screen)
    screen = on_terminal(["verify", str(title), "--speaker", CORPUS[0][1], "--speed", "0", "--store", store],
                         env, tmp_path, tmux_server)
    assert screen.code in ("0", "5"), screen.text[-2000:]
    assert_nothing_acted_on(screen)
    verified = dasctl("verify", str(clear), "--speaker", CORPUS[1][1], "--speed", "0", "--store", store,
                      env=env)
    assert verified.returncode in (0, 5), verified.stderr
    assert_safe_bytes(verified.stdout)
    assert_safe_bytes(verified.stderr)
    # watch, piped: NDJSON exact; on a terminal: human lines and live bars act on nothing, nor `-v`'s
    # line naming a file it skips
    (calls / "notes\x1b]0;pwned\x07N1.txt").write_text("not a recording")
    piped = dasctl("-v", "watch", str(calls), "--once", "--speed", "0", "--settle", "0", "--store",
                   str(tmp_path / "w1.db"), env=env)
    assert piped.returncode == 0, piped.stderr
    assert_safe_bytes(piped.stderr)
    assert sorted(json.loads(line)["file"] for line in piped.stdout.decode().splitlines()) == sorted(names)
    screen = on_terminal(["-v", "watch", str(calls), "--once", "--speed", "0", "--settle", "0", "--store",
                          str(tmp_path / "w2.db")], env, tmp_path, tmux_server)
    assert screen.code == "0", screen.text[-2000:]
    assert_nothing_acted_on(screen)
    assert "\\033]0;pwned\\aT1" in screen.text and FILE_MARKUP[0] in screen.text
    assert 'skipped "notes\\033]0;pwned\\aN1.txt": not audio' in screen.text, screen.text[-3000:]
    # watch --dry-run's table on a terminal (file names and speaker ids were once markup and raw controls)
    screen = on_terminal(["watch", str(calls), "--dry-run", "--store", str(tmp_path / "w2.db")], env,
                         tmp_path, tmux_server)
    assert screen.code == "0", screen.text[-2000:]
    assert_nothing_acted_on(screen)
    assert "\\033]0;pwned\\aT1" in screen.text and FILE_MARKUP[0] in screen.text, screen.text[-3000:]


def test_reenroll_failure_lines_act_on_nothing(
    emulator: Emulator, hostile_store: Path, tmp_path: Path, tmux_server: TmuxServer
) -> None:
    env = {**emulator.client_env(), "DASCTL_CONFIG_DIR": os.environ["DASCTL_CONFIG_DIR"]}
    store = str(hostile_store)
    # every speaker's credential is stale for the service's model: each line names its speaker
    model = "dasctl-emulator-model-v1"
    piped = dasctl("reenroll", "--model-hash", model, "--speed", "0", "--store", store, env=env)
    assert piped.returncode in (0, 5, 6, 7), piped.stderr
    assert_safe_bytes(piped.stdout)
    assert_safe_bytes(piped.stderr)
    assert b"\\033]0;pwned\\aT1" in piped.stderr
    shutil.copy(hostile_store, tmp_path / "again.db")
    screen = on_terminal(["reenroll", "--model-hash", model, "--speed", "0", "--store",
                          str(tmp_path / "again.db")], env, tmp_path, tmux_server, rows=200)
    assert screen.code in ("0", "5", "6", "7"), screen.text[-2000:]
    assert_nothing_acted_on(screen)


HOSTILE_PROFILES = '''default_profile = "prod"
[profiles.prod]
url = "https://x.example/\\u001b]0;pwned\\u0007[red]U1[/red]\\u202eevil"
client_id = "id\\u001b[2J[bold]C1\\rEVIL"
[profiles."p\\u001b]0;pwned\\u0007[red]P1"]
url = "https://y.example"
'''


def test_config_show_and_auth_status_act_on_nothing_a_profile_file_holds(
    tmp_path: Path, tmux_server: TmuxServer
) -> None:
    """Profile values come from a file (or the environment), not from dasctl: quoted before a terminal
    sees them, the rich markup in them shown as it is; --json keeps the exact values."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "config.toml").write_text(HOSTILE_PROFILES)
    env = {"DASCTL_CONFIG_DIR": str(config_dir)}
    url = "https://x.example/\x1b]0;pwned\x07[red]U1[/red]\u202eevil"
    show = dasctl("config", "show", env=env)
    status = dasctl("auth", "status", env=env)
    assert show.returncode == 0, show.stderr
    assert status.returncode == 4, status.stderr  # not logged in: still shows what it knows
    for done in (show, status):
        assert_safe_bytes(done.stdout)
        assert_safe_bytes(done.stderr)
        text = done.stdout.decode()
        assert '"https://x.example/\\033]0;pwned\\a[red]U1[/red]\\342\\200\\256evil"' in text, text
        assert '"id\\033[2J[bold]C1\\rEVIL"' in text, text
    assert '"p\\033]0;pwned\\a[red]P1"' in show.stdout.decode()  # the profile names it knows
    exact = json.loads(dasctl("config", "show", "--json", env=env).stdout)
    assert exact["values"]["url"]["value"] == url
    assert json.loads(dasctl("auth", "status", "--json", env=env).stdout)["url"] == url
    assert dasctl("config", "get", "url", env=env).stdout.decode() == url + "\n"  # piped: exactly the value
    for words in (["config", "show"], ["auth", "status"], ["config", "get", "client_id"]):
        screen = on_terminal(words, env, tmp_path, tmux_server)
        assert screen.code == ("4" if words[0] == "auth" else "0"), screen.text[-2000:]
        assert_nothing_acted_on(screen)
        assert "\\033[2J[bold]C1\\rEVIL" in screen.text, screen.text[-2000:]
        if words[1] != "get":
            assert "[red]U1[/red]" in screen.text


def test_transcode_names_a_hostile_file_quoted(tmp_path: Path) -> None:
    """transcode's summary line carries the input's and the output's names: quoted like every other."""
    source = tmp_path / f"{CORPUS[0][1]}.wav"
    shutil.copy(SPEECH, source)
    output = tmp_path / f"{CORPUS[1][1]}.ul"
    done = dasctl("transcode", str(source), str(output))
    assert done.returncode == 0, done.stderr
    assert_safe_bytes(done.stderr)
    assert done.stderr.startswith(f'transcode: "{tmp_path}/\\033]0;pwned\\aT1.wav" (WAV PCM_16'.encode())
    assert f'-> "{tmp_path}/\\033[2J\\033[HT2.ul": 11.7 s of 8 kHz'.encode() in done.stderr, done.stderr
    assert output.stat().st_size > 0

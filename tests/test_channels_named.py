"""The customer's side: --channel customer|agent through the profile's customer_channel, the profile's own
channel, flag > environment > profile file, the once-per-run warning when a stereo call is mixed, and the
channel sent in the JSON of register and watch. Real emulator, real files, real profiles file."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dasctl.audio import open_audio
from tests.conftest import DATA, Emulator
from tests.tmux_server import TmuxServer, dasctl_command, wait_for_file

STEREO = DATA / "speech-ab-44k-stereo.wav"  # speaker A left, speaker B right
MONO = DATA / "speech-a-8k-mono.wav"
Run = Callable[..., subprocess.CompletedProcess[Any]]
REGISTER = ["register", "--json", "--speed", "0", "-q", "--no-store", "--duration", "3"]
MIX_WARNING = ("dasctl: warning: 2-channel recording: mixing both sides; the customer's voiceprint will "
               "include the agent; use --channel customer|agent|left|right|N")


def sent(path: Path, channel: object) -> bytes:
    with open_audio(path, channel=channel) as stream:  # type: ignore[arg-type]
        return b"".join(stream.chunks())


def documents(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_a_stereo_call_with_no_channel_chosen_is_mixed_and_said_once(dasctl: Run, emulator: Emulator,
                                                                     tmp_path: Path) -> None:
    second = tmp_path / "second-call.wav"
    shutil.copy(STEREO, second)
    done = dasctl(*REGISTER, str(STEREO), str(second), env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines().count(MIX_WARNING) == 1
    assert [document["channel"] for document in documents(done.stdout)] == ["mix", "mix"]
    assert all("side" not in document for document in documents(done.stdout))


def test_a_mono_file_or_a_chosen_mix_says_nothing(dasctl: Run, emulator: Emulator) -> None:
    mono = dasctl(*REGISTER, str(MONO), env=emulator.client_env())
    assert mono.returncode == 0, mono.stderr
    assert "warning" not in mono.stderr and documents(mono.stdout)[0]["channel"] == "mono"
    chosen = dasctl(*REGISTER, "--channel", "mix", str(STEREO), env=emulator.client_env())
    assert chosen.returncode == 0, chosen.stderr
    assert "warning" not in chosen.stderr and documents(chosen.stdout)[0]["channel"] == "mix"


def test_customer_and_agent_follow_the_profiles_customer_channel(dasctl: Run, emulator: Emulator) -> None:
    assert dasctl("config", "set", "customer_channel", "right", "--profile", "local").returncode == 0
    customer = dasctl(*REGISTER, "--channel", "customer", str(STEREO), env=emulator.client_env())
    assert customer.returncode == 0, customer.stderr
    assert "warning" not in customer.stderr
    document = documents(customer.stdout)[0]
    assert (document["channel"], document["side"], document["ok"]) == ("right", "customer", True)
    agent = dasctl(*REGISTER, "-c", "agent", str(STEREO), env=emulator.client_env())
    assert agent.returncode == 0, agent.stderr
    assert (documents(agent.stdout)[0]["channel"], documents(agent.stdout)[0]["side"]) == ("left", "agent")


def test_customer_is_the_very_audio_of_that_side(dasctl: Run, tmp_path: Path) -> None:
    out = tmp_path / "customer.ul"
    done = dasctl("transcode", str(STEREO), str(out), "--channel", "customer",
                  env={"DASCTL_CUSTOMER_CHANNEL": "right"})
    assert done.returncode == 0, done.stderr
    assert "2 ch, channel right (customer)" in done.stderr
    assert out.read_bytes() == sent(STEREO, "right") != sent(STEREO, "left")


def test_flag_beats_environment_beats_profile_file(dasctl: Run, emulator: Emulator) -> None:
    assert dasctl("config", "set", "channel", "customer", "--profile", "local").returncode == 0
    assert dasctl("config", "set", "customer_channel", "left", "--profile", "local").returncode == 0
    from_file = dasctl(*REGISTER, str(STEREO), env=emulator.client_env())
    assert from_file.returncode == 0, from_file.stderr
    assert (documents(from_file.stdout)[0]["channel"], documents(from_file.stdout)[0]["side"]) == (
        "left", "customer")
    env = {**emulator.client_env(), "DASCTL_CUSTOMER_CHANNEL": "right"}
    from_env = dasctl(*REGISTER, str(STEREO), env=env)
    assert documents(from_env.stdout)[0]["channel"] == "right"
    flag = dasctl(*REGISTER, "--channel", "left", str(STEREO), env={**env, "DASCTL_CHANNEL": "agent"})
    assert flag.returncode == 0, flag.stderr
    assert documents(flag.stdout)[0]["channel"] == "left" and "side" not in documents(flag.stdout)[0]
    shown = dasctl("config", "show", "--json", env={"DASCTL_CUSTOMER_CHANNEL": "right"})
    values = json.loads(shown.stdout)["values"]
    assert values["channel"] == {"value": "customer", "source": "profile file"}
    assert values["customer_channel"] == {"value": "right",
                                          "source": "environment (DASCTL_CUSTOMER_CHANNEL)"}


def test_a_side_with_no_customer_channel_is_a_usage_error_before_any_session(dasctl: Run,
                                                                             emulator: Emulator) -> None:
    done = dasctl(*REGISTER, "--channel", "customer", str(STEREO), env=emulator.client_env())
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == ("dasctl: error: --channel customer: the customer_channel of "
                                           "profile 'local' is not set, so the customer's side is unknown")
    assert "dasctl config set customer_channel left --profile local" in done.stderr
    assert done.stdout == ""


def test_bad_values_are_refused_where_they_are_written(dasctl: Run, emulator: Emulator) -> None:
    refused = dasctl("config", "set", "customer_channel", "middle", "--profile", "local")
    assert refused.returncode == 2 and "'middle' is not a side" in refused.stderr
    bad_env = dasctl(*REGISTER, str(STEREO), env={**emulator.client_env(), "DASCTL_CHANNEL": "both"})
    assert bad_env.returncode == 2
    assert bad_env.stderr.splitlines()[0] == ("dasctl: error: DASCTL_CHANNEL: 'both' is not a channel: use "
                                              "mix, left, right, N (from 0), customer or agent")
    far = dasctl(*REGISTER, "--channel", "agent", str(STEREO),
                 env={**emulator.client_env(), "DASCTL_CUSTOMER_CHANNEL": "2"})
    assert far.returncode == 2 and "the agent is the other side of a 2-channel recording" in far.stderr


def test_the_agent_of_a_mono_file_is_refused(dasctl: Run, emulator: Emulator) -> None:
    done = dasctl(*REGISTER, "--channel", "agent", str(MONO),
                  env={**emulator.client_env(), "DASCTL_CUSTOMER_CHANNEL": "left"})
    assert done.returncode == 2
    assert f"--channel agent: {MONO} is mono (1 channel)" in done.stderr


def test_the_customer_of_a_mono_file_is_its_one_channel_whichever_side_the_profile_names(
        dasctl: Run, emulator: Emulator, tmp_path: Path) -> None:
    for side in ("left", "right"):
        done = dasctl(*REGISTER, "--channel", "customer", str(MONO),
                      env={**emulator.client_env(), "DASCTL_CUSTOMER_CHANNEL": side})
        assert done.returncode == 0, done.stderr
        [document] = documents(done.stdout)
        assert (document["channel"], document["side"]) == ("mono", "customer")
        assert "warning" not in done.stderr
    plain, customer = tmp_path / "plain.ul", tmp_path / "customer.ul"
    assert dasctl("transcode", str(MONO), str(plain)).returncode == 0
    chosen = dasctl("transcode", "--channel", "customer", str(MONO), str(customer),
                    env={"DASCTL_CUSTOMER_CHANNEL": "right"})
    assert chosen.returncode == 0, chosen.stderr
    assert customer.read_bytes() == plain.read_bytes() and len(plain.read_bytes()) > 8000


def test_watch_warns_once_and_each_line_says_the_channel(dasctl: Run, emulator: Emulator,
                                                         tmp_path: Path) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    for name in ("CUST1.wav", "CUST2.wav", "CUST3.wav"):
        shutil.copy(STEREO, inbox / name)
    fast = ["--once", "--json", "--speed", "0", "--settle", "0", "--duration", "3"]
    mixed = dasctl("watch", str(inbox), *fast, env=emulator.client_env())
    assert mixed.returncode == 0, mixed.stderr
    warnings = [line for line in mixed.stderr.splitlines() if "2-channel recording: mixing both" in line]
    assert len(warnings) == 1
    lines = [document for document in documents(mixed.stdout) if document.get("schema") == "dasctl.watch/1"]
    assert sorted(document["file"] for document in lines) == ["CUST1.wav", "CUST2.wav", "CUST3.wav"]
    assert {document["channel"] for document in lines} == {"mix"}

    again = tmp_path / "again"
    shutil.copytree(inbox, again)
    env = {**emulator.client_env(), "DASCTL_CHANNEL": "customer", "DASCTL_CUSTOMER_CHANNEL": "left"}
    chosen = dasctl("watch", str(again), *fast, env=env)
    assert chosen.returncode == 0, chosen.stderr
    assert "mixing" not in chosen.stderr
    lines = [document for document in documents(chosen.stdout) if document.get("schema") == "dasctl.watch/1"]
    assert len(lines) == 3 and all((d["channel"], d["side"]) == ("left", "customer") for d in lines)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_on_a_terminal_the_warning_is_a_whole_line_above_the_bar(
    emulator: Emulator, tmp_path: Path, tmux_server: TmuxServer
) -> None:
    """The live bar redraws stderr; the warning, said while it is up, must land on a line of its own."""
    done = tmp_path / "exit-code"
    env = {**emulator.client_env(), "DASCTL_CONFIG_DIR": os.environ["DASCTL_CONFIG_DIR"],
           "TERM": "xterm-256color"}
    args = f"register {shlex.quote(str(STEREO))} --speed 0 --no-store --duration 3"
    name = tmux_server.new_session(dasctl_command(args, env, done, unset=(), redirect="> /dev/null"), 200, 20)
    code = wait_for_file(done, 60)
    screen = tmux_server.screen(name)
    assert code == "0", screen
    lines = screen.splitlines()
    assert lines.count(MIX_WARNING) == 1, screen
    bar = lines[lines.index(MIX_WARNING) + 1]  # the bar goes on below it, whole
    assert "voice 3.0/3 s" in bar and "result-success" in bar, screen


def test_verify_takes_the_customers_side_from_the_profile(dasctl: Run, emulator: Emulator,
                                                          tmp_path: Path) -> None:
    store = str(tmp_path / "store.db")
    assert dasctl("config", "set", "customer_channel", "right", "--profile", "local").returncode == 0
    enrolled = dasctl("register", "--speed", "0", "-q", "--channel", "customer", str(STEREO),
                      "--speaker", "cust", "--store", store, env=emulator.client_env())
    assert enrolled.returncode == 0, enrolled.stderr
    verified = dasctl("verify", str(STEREO), "--channel", "customer", "--speaker", "cust", "--store", store,
                      "--speed", "0", "--json", env=emulator.client_env())
    assert verified.returncode in (0, 5), verified.stderr  # the stand-in judges; the side must resolve
    assert "customer_channel" not in verified.stderr and "warning" not in verified.stderr
    assert json.loads(verified.stdout)["schema"] == "dasctl.verify/1"

"""What a new user meets on the way: a service that is down, hints about the right profile, logout on
`local`, JSON on stdout, and a config directory that holds only configuration. Real emulator, real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from dasctl.results import json_line
from tests.conftest import DATA

SPEECH = str(DATA / "speech-a-8k-mono.wav")


def test_service_down_with_a_token_cached_names_the_url(dasctl, start_emulator):
    server = start_emulator()
    env = server.client_env()
    assert dasctl("login", env=env).returncode == 0  # the token is cached now
    server.stop()
    result = dasctl("register", SPEECH, "--speed", "0", env=env)
    assert result.returncode == 6, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-2] == f"dasctl: error: could not reach the signalling service at {server.url}"
    # the same hint as when the token endpoint is down
    assert lines[-1] == "  Is the service running? For the local emulator, start `dasctl serve`."
    assert "refused" not in result.stderr
    token_down = dasctl("logout", env=env), dasctl("register", SPEECH, "--speed", "0", env=env)
    assert token_down[1].returncode == 6
    assert token_down[1].stderr.strip().splitlines()[-1] == lines[-1]


def test_missing_settings_are_named_at_once_with_the_profile(dasctl):
    assert dasctl("config", "set", "url", "https://staging.example", "--profile", "staging").returncode == 0
    result = dasctl("register", SPEECH, "--profile", "staging")
    assert result.returncode == 2
    message, hint = result.stderr.strip().splitlines()
    assert message == "dasctl: error: profile 'staging' has no model_hash and audio_url.twilio"
    assert "`dasctl config set model_hash HASH --profile staging`" in hint
    assert "`dasctl config set audio_url.twilio wss://HOST/PATH --profile staging`" in hint
    assert "--audio-url" not in hint  # register has no such option
    hooked = dasctl("--profile", "staging", "register", SPEECH, "--protocol", "audiohook",
                    "--model-hash", "H")
    assert hooked.returncode == 2
    assert hooked.stderr.startswith(
        "dasctl: error: profile 'staging' has no audio_url.audiohook and audiohook_api_key\n")
    assert "audiohook_api_key KEY --profile staging" in hooked.stderr


def test_logout_of_local_says_what_it_did_and_status_agrees(dasctl, emulator):
    env = emulator.client_env()
    assert dasctl("login", env=env).returncode == 0
    out = dasctl("logout", env=env)
    assert out.returncode == 0
    assert out.stderr.strip() == (
        "Profile 'local' uses the emulator's demo secret, which is built into dasctl and cannot be removed; "
        "cleared 1 cached token. `dasctl auth status` still works: it fetches a new token.")
    assert "nowhere" not in out.stderr
    status = dasctl("auth", "status", env=env)
    assert status.returncode == 0
    assert "built-in demo secret (part of dasctl: `dasctl logout` cannot remove it)" in status.stdout


def test_machine_output_is_one_compact_line(dasctl, emulator):
    env = {**emulator.client_env(), "DASCTL_MODEL_HASH": "modèle-é…"}
    assert dasctl("login", env=env).returncode == 0
    for args in (["auth", "status", "--json"], ["config", "show", "--json"], ["config", "path", "--json"],
                 ["config", "get", "model_hash", "--json"]):
        result = dasctl(*args, env=env)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert result.stdout == json_line(document) + "\n"  # one line, separators (",", ":")
        assert document["schema"].startswith("dasctl.")
    shown = dasctl("config", "get", "model_hash", "--json", env=env).stdout
    assert "modèle-é…" in shown and "\\u" not in shown  # UTF-8, not escapes


def test_no_lock_files_in_the_config_dir(dasctl, emulator, isolated_config: Path):
    env = emulator.client_env()
    assert dasctl("login", env=env).returncode == 0
    assert dasctl("config", "set", "model_hash", "h", "--profile", "other").returncode == 0
    assert dasctl("auth", "token", env=env).returncode == 0
    assert dasctl("register", SPEECH, "--speed", "0", "--quiet", env=env).returncode == 0
    everything = [p.relative_to(isolated_config).as_posix() for p in isolated_config.rglob("*")]
    assert not [name for name in everything if name.endswith(".lock")], everything
    assert (isolated_config / "config.toml").exists()
    # they live beside it, in the state directory
    state = isolated_config.parent / f"{isolated_config.name}-state"
    assert (state / "locks" / "config.toml.lock").exists()
    paths = json.loads(dasctl("config", "path", "--json").stdout)
    assert paths["state_dir"] == str(state)


def test_a_batch_without_json_numbers_every_file_and_talks_about_what_it_printed(dasctl, emulator):
    tone = str(DATA / "tone-440-8k-mono.wav")
    result = dasctl("register", SPEECH, tone, "--speed", "0", env=emulator.client_env())
    assert result.returncode == 7
    assert result.stdout.startswith(f"[1/2] {SPEECH}: registered")
    assert f"\n[2/2] {tone}: not registered (result-fail-spoof)" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("dasctl: error:")]
    assert errors[0].startswith(f"dasctl: error: [2/2] {tone}: the service said no")
    assert errors[-1] == "dasctl: error: 1 of 2 files failed ([2/2])"
    assert result.stderr.rstrip().endswith("See each file's error above.")
    assert "JSON" not in result.stderr
    as_json = dasctl("register", SPEECH, tone, "--speed", "0", "--json", env=emulator.client_env())
    assert as_json.returncode == 7 and "Each file's JSON line says what happened" in as_json.stderr


def test_watch_retry_lines_name_the_unreachable_url(dasctl, start_emulator, tmp_path: Path):
    import shutil

    server = start_emulator()
    env = server.client_env()
    assert dasctl("login", env=env).returncode == 0
    server.stop()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(SPEECH, inbox / "call.wav")
    result = dasctl("watch", str(inbox), "--once", "--backoff", "0", "--unreachable-budget", "1",
                    "--speed", "0", env=env, timeout=60)
    assert result.returncode == 6, result.stderr
    retries = [line for line in result.stderr.splitlines() if "retrying call.wav" in line]
    assert retries and all(line.endswith(f"could not reach the signalling service at {server.url}")
                           for line in retries), result.stderr
    assert "refused" not in result.stderr

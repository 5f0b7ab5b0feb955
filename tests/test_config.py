"""Profiles and precedence (flag > environment > profile file > default), and the `dasctl config` commands."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from dasctl import config
from dasctl.errors import UsageError


def write_config(directory: Path, text: str) -> Path:
    path = directory / "config.toml"
    path.write_text(text)
    return path


# --- precedence, one table ------------------------------------------------------------------------
PROD_FILE = """
default_profile = "prod"
[profiles.prod]
url = "https://file.example"
model_hash = "file-model"
authenticity_threshold = 0.5
[profiles.prod.audio_urls]
twilio = "wss://file.example/twilio"
"""


@pytest.mark.parametrize(
    ("flags", "env", "key", "value", "source"),
    [
        # flag beats environment beats file beats default
        ({"url": "https://flag.example"}, {"DASCTL_URL": "https://env.example"}, "url",
         "https://flag.example", "flag"),
        ({}, {"DASCTL_URL": "https://env.example"}, "url", "https://env.example", "environment"),
        ({}, {}, "url", "https://file.example", "profile file"),
        ({}, {}, "namespace_prefix", "/socket.io", "default"),
        # auth_url follows whichever url won, unless set itself
        ({}, {"DASCTL_URL": "https://env.example"}, "auth_url", "https://env.example/socket.io/oauth2/token",
         "default"),
        ({"auth_url": "https://auth.example/t"}, {}, "auth_url", "https://auth.example/t", "flag"),
        # numbers parse from the environment and beat the file
        ({}, {"DASCTL_AUTHENTICITY_THRESHOLD": "0.9"}, "authenticity_threshold", 0.9, "environment"),
        ({}, {}, "authenticity_threshold", 0.5, "profile file"),
        ({"authenticity_threshold": 0.7}, {"DASCTL_AUTHENTICITY_THRESHOLD": "0.9"}, "authenticity_threshold",
         0.7, "flag"),
        ({}, {}, "audio_total_duration", 5.0, "default"),
        # audio URLs per protocol
        ({"audio_urls": {"twilio": "wss://flag.example/t"}}, {"DASCTL_AUDIO_URL_TWILIO": "wss://env.example/t"},
         "audio_url.twilio", "wss://flag.example/t", "flag"),
        ({}, {"DASCTL_AUDIO_URL_TWILIO": "wss://env.example/t"}, "audio_url.twilio", "wss://env.example/t",
         "environment"),
        ({}, {}, "audio_url.twilio", "wss://file.example/twilio", "profile file"),
        # a real service's audio URL is never guessed
        ({}, {}, "audio_url.audiohook", None, "default"),
        ({}, {"DASCTL_MODEL_HASH": "env-model"}, "model_hash", "env-model", "environment"),
        ({}, {}, "model_hash", "file-model", "profile file"),
    ],
)
def test_precedence_table(isolated_config: Path, flags: dict[str, object], env: dict[str, str], key: str,
                          value: object, source: str) -> None:
    write_config(isolated_config, PROD_FILE)
    profile = config.load_profile(None, flags, {"DASCTL_CONFIG_DIR": str(isolated_config), **env})
    assert profile.name == "prod"
    assert profile.get(key) == value
    assert profile.sources[key] == source


@pytest.mark.parametrize(
    ("flag", "env", "file_default", "expected", "source"),
    [
        ("flagged", "envd", "filed", "flagged", "flag"),
        (None, "envd", "filed", "envd", "environment"),
        (None, None, "filed", "filed", "profile file"),
        (None, None, None, "local", "default"),
    ],
)
def test_profile_name_precedence(isolated_config: Path, flag: str | None, env: str | None,
                                 file_default: str | None, expected: str, source: str) -> None:
    if file_default:
        write_config(isolated_config, f'default_profile = "{file_default}"\n')
    environ = {"DASCTL_CONFIG_DIR": str(isolated_config)}
    if env:
        environ["DASCTL_PROFILE"] = env
    assert config.resolve_profile_name(flag, environ) == (expected, source)


def test_local_profile_needs_no_configuration_and_follows_its_url(isolated_config: Path) -> None:
    env = {"DASCTL_CONFIG_DIR": str(isolated_config)}
    local = config.load_profile(None, None, env)
    assert (local.name, local.url) == ("local", "http://127.0.0.1:7272")
    assert local.client_id == config.DEMO_CLIENT_ID
    assert local.model_hash == config.DEMO_MODEL_HASH
    assert local.namespace() == "/socket.io/register"
    moved = config.load_profile(None, None, {**env, "DASCTL_URL": "https://host.example:9000/"})
    assert moved.url == "https://host.example:9000"
    assert moved.auth_url == "https://host.example:9000/socket.io/oauth2/token"
    assert moved.audio_url("twilio") == "wss://host.example:9000/audio/twilio"
    assert moved.audio_url("audiohook") == "wss://host.example:9000/audio/audiohook"


def test_missing_audio_url_names_every_way_to_set_it(isolated_config: Path) -> None:
    write_config(isolated_config, '[profiles.prod]\nurl = "https://x.example"\n')
    profile = config.load_profile("prod", None, {"DASCTL_CONFIG_DIR": str(isolated_config)})
    with pytest.raises(UsageError) as caught:
        profile.audio_url("audiohook")
    hint = caught.value.hint or ""
    assert "`dasctl config set audio_url.audiohook wss://HOST/PATH --profile prod`" in hint
    assert "DASCTL_AUDIO_URL_AUDIOHOOK" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DASCTL_URL": "ftp://x"}, "DASCTL_URL"),
        ({"DASCTL_AUTHENTICITY_THRESHOLD": "high"}, "DASCTL_AUTHENTICITY_THRESHOLD"),
        ({"DASCTL_AUDIO_TOTAL_DURATION": "-1"}, "DASCTL_AUDIO_TOTAL_DURATION"),
        ({"DASCTL_AUDIO_URL_TWILIO": "http://not-a-websocket"}, "DASCTL_AUDIO_URL_TWILIO"),
        ({"DASCTL_CA_BUNDLE": "/no/such/bundle.pem"}, "DASCTL_CA_BUNDLE"),
        ({"DASCTL_PROFILE": "../etc"}, "invalid profile name"),
    ],
)
def test_bad_values_name_their_origin(isolated_config: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace(".", r"\.")):
        config.load_profile(None, None, {"DASCTL_CONFIG_DIR": str(isolated_config), **env})


def test_unknown_profile_is_a_usage_error_listing_the_known_ones(isolated_config: Path) -> None:
    write_config(isolated_config, '[profiles.prod]\nurl = "https://x.example"\n')
    with pytest.raises(UsageError, match="no profile named 'typo' \\(known: local, prod\\)"):
        config.load_profile("typo", None, {"DASCTL_CONFIG_DIR": str(isolated_config)})


def test_store_writes_a_private_file_atomically(isolated_config: Path) -> None:
    env = {"DASCTL_CONFIG_DIR": str(isolated_config / "nested")}
    config.store_profile_values("prod", {"url": "https://x.example", "audio_url.twilio": "wss://x/t"}, env)
    path = config.config_file(env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    profile = config.load_profile("prod", None, env)
    assert profile.audio_url("twilio") == "wss://x/t"
    config.store_profile_values("prod", {"audio_url.twilio": None}, env)
    assert "audio_urls" not in path.read_text()


# --- the commands ---------------------------------------------------------------------------------------
def test_config_show_says_where_each_value_comes_from(dasctl, isolated_config: Path) -> None:
    write_config(isolated_config, PROD_FILE)
    result = dasctl("config", "show", env={"DASCTL_MODEL_HASH": "env-model"})
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "profile file" in lines["url"] and "https://file.example" in lines["url"]
    assert "environment (DASCTL_MODEL_HASH)" in lines["model_hash"]
    assert "default (from url)" in lines["auth_url"]
    assert lines["profile:"].startswith("profile: prod (from profile file")

    as_json = json.loads(dasctl("config", "show", "--json", "--profile", "local").stdout)
    assert as_json["schema"] == "dasctl.config-show/1"
    assert as_json["profile"] == "local"
    assert as_json["values"]["url"] == {"value": "http://127.0.0.1:7272", "source": "default"}
    # the AudioHook API key is masked, even the demo one
    assert as_json["values"]["audiohook_api_key"]["value"] != config.DEMO_AUDIOHOOK_API_KEY


def test_config_set_get_unset_round_trip(dasctl, isolated_config: Path) -> None:
    assert dasctl("config", "set", "--profile", "prod", "url", "https://eu.example/").returncode == 0
    assert dasctl("config", "set", "-p", "prod", "audio_url.twilio", "wss://eu.example/t").returncode == 0
    got = dasctl("config", "get", "--profile", "prod", "url")
    assert (got.returncode, got.stdout) == (0, "https://eu.example\n")
    got = json.loads(dasctl("config", "get", "--profile", "prod", "auth_url", "--json").stdout)
    assert got == {"schema": "dasctl.config-get/1", "key": "auth_url",
                   "value": "https://eu.example/socket.io/oauth2/token", "source": "default (from url)"}
    overridden = dasctl("config", "get", "--profile", "prod", "url", env={"DASCTL_URL": "https://env.example"})
    assert overridden.stdout == "https://env.example\n"

    assert dasctl("config", "set", "default_profile", "prod").returncode == 0
    assert dasctl("config", "get", "audio_url.twilio").stdout == "wss://eu.example/t\n"
    assert dasctl("config", "unset", "audio_url.twilio").returncode == 0
    missing = dasctl("config", "get", "audio_url.twilio")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert "audio_url.twilio is not set" in missing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("config", "set", "authenticity_threshold", "2"), "not a number between 0 and 1"),
        (("config", "set", "url", "not a url"), "is not a http:// or https:// URL"),
        # urllib reads an unclosed '[' as an IPv6 address, and checks a port only when asked for it
        (("config", "set", "url", "http://x[31mred"),
         r"'http://x[31mred' is not a valid URL (Invalid IPv6 URL)"),
        # what an id, hash, key or URL can never hold: refused before it is kept, escaped in the message
        # (a file or variable that holds one is shown quoted: test_hostile_text)
        (("config", "set", "url", "http://x\x1b[31mred"),
         r"value for url: the value contains a control character ('http://x\x1b[31mred')"),
        (("config", "set", "client_id", "demo\x1b]0;owned\x07"),
         r"value for client_id: the value contains a control character ('demo\x1b]0;owned\x07')"),
        (("config", "set", "model_hash", "v1\tv2"), r"the value contains a control character ('v1\tv2')"),
        (("config", "set", "url", "http://host:abc"), "is not a valid URL (Port could not be cast"),
        (("config", "set", "auth_url", "https://h:99999/t"), "is not a valid URL (Port out of range"),
        (("config", "set", "store", "postgresql://u:pw@[db/x"),
         "'postgresql://****@[db/x' is not a valid URL"),
        (("config", "set", "store", "postgresql://u:pw@db:x/y"),
         "'postgresql://u:****@db:x/y' is not a valid URL"),
        (("config", "set", "namespace_prefix", "/socket io"), "'/socket io' is not a namespace path"),
        # checked when it is set, not first when a watch service starts
        (("config", "set", "retention", "forever"), "value for retention: 'forever' is not a retention rule"),
        (("config", "set", "retention", "inactive-for=3 years"), "inactive-for '3 years' is not a duration"),
        (("config", "set", "client_secret", "x"), "is a secret, not a config value"),
        (("config", "set", "colour", "blue"), "unknown config key 'colour'"),
        (("config", "set", "default_profile", "nope"), "no profile named 'nope'"),
        (("config", "get", "url", "--profile", "nope"), "no profile named 'nope'"),
    ],
)
def test_config_mistakes_exit_2_with_one_clear_line(dasctl, isolated_config: Path, args: tuple[str, ...],
                                                    message: str) -> None:
    result = dasctl(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert "pw" not in result.stderr
    assert not (isolated_config / "config.toml").exists()


def test_a_url_urllib_cannot_read_in_the_environment_is_one_line(dasctl) -> None:
    result = dasctl("credentials", "list", env={"DASCTL_URL": "http://[x"})
    assert result.returncode == 2
    assert result.stderr.startswith("dasctl: error: DASCTL_URL: 'http://[x' is not a valid URL"), \
        result.stderr
    assert "Traceback" not in result.stderr and "bug" not in result.stderr


def test_corrupt_config_file_is_a_usage_error_not_a_crash(dasctl, isolated_config: Path) -> None:
    write_config(isolated_config, "[profiles.prod\nurl = ")
    result = dasctl("config", "show")
    assert result.returncode == 2
    assert "is not valid TOML" in result.stderr and "Traceback" not in result.stderr


def test_config_path_honours_dasctl_config_dir(dasctl, isolated_config: Path) -> None:
    result = dasctl("config", "path")
    assert result.stdout.strip() == str(isolated_config / "config.toml")
    paths = json.loads(dasctl("config", "path", "--json").stdout)
    assert paths["token_cache_dir"].startswith(str(isolated_config))
    assert paths["secrets_dir"] == str(isolated_config / "secrets")


def test_platform_paths_without_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DASCTL_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert config.config_dir() == tmp_path / "xdg-config" / "dasctl"
        assert config.token_cache_dir() == tmp_path / "xdg-cache" / "dasctl" / "tokens"

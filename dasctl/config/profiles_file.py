"""The profiles file (config.toml): reading it, changing it under a lock, and which profile is chosen."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dasctl.config.constants import (
    ENV_PROFILE,
    LOCAL_PROFILE,
    SOURCE_DEFAULT,
    SOURCE_ENV,
    SOURCE_FILE,
    SOURCE_FLAG,
)
from dasctl.config.paths import config_file, effective_env, lock_file, private_dir, write_private_file
from dasctl.errors import UsageError

_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_profile_name(name: str) -> str:
    """Return the name, or raise UsageError when it cannot be a profile name."""
    if not _PROFILE_NAME.match(name):
        raise UsageError(
            f"invalid profile name {name!r}",
            "Use letters, digits, '.', '_' or '-' (at most 64 characters), e.g. --profile prod.",
        )
    return name


def read_config_file(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The parsed profiles file; {} when it does not exist; UsageError when it is not valid TOML."""
    path = config_file(env)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise UsageError(f"cannot read the config file {path}: {error.strerror}") from None
    try:
        data = _toml_loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise UsageError(
            f"the config file {path} is not valid TOML: {error}",
            "Fix it, or move it away and run `dasctl login` again.",
        ) from None
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise UsageError(f"the config file {path} has a malformed [profiles] table",
                         "Each profile is a table: [profiles.NAME].")
    return data


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def update_config_file(change: Any, env: Mapping[str, str] | None = None) -> None:
    """Read, change (a function mutating the parsed dict) and rewrite the profiles file, under a lock."""
    import filelock
    import tomli_w

    path = config_file(env)
    private_dir(path.parent)
    with filelock.FileLock(str(lock_file(path.name, env)), timeout=30, mode=0o600):
        data = read_config_file(env)
        change(data)
        write_private_file(path, tomli_w.dumps(data).encode("utf-8"))


def profile_names(env: Mapping[str, str] | None = None) -> list[str]:
    """Profiles the file knows, plus the built-in `local`."""
    names = set(read_config_file(env).get("profiles", {})) | {LOCAL_PROFILE}
    return sorted(names)


def resolve_profile_name(name: str | None = None, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(profile name, its source): flag > DASCTL_PROFILE > the file's default_profile > `local`."""
    environ = effective_env(env)
    if name:
        return validate_profile_name(name), SOURCE_FLAG
    if environ.get(ENV_PROFILE):
        return validate_profile_name(environ[ENV_PROFILE]), SOURCE_ENV
    default = read_config_file(environ).get("default_profile")
    if isinstance(default, str) and default:
        return validate_profile_name(default), SOURCE_FILE
    return LOCAL_PROFILE, SOURCE_DEFAULT



def store_profile_values(
    name: str, values: Mapping[str, object], env: Mapping[str, str] | None = None, *,
    make_default_if_unset: bool = False,
) -> bool:
    """Write values (config key names; None removes the key) into [profiles.NAME]; True when made default."""
    validate_profile_name(name)
    made_default = []

    def change(data: dict[str, Any]) -> None:
        profiles = data.setdefault("profiles", {})
        table = profiles.setdefault(name, {})
        for key, value in values.items():
            if key.startswith("audio_url."):
                audio = table.setdefault("audio_urls", {})
                protocol = key.split(".", 1)[1]
                if value is None:
                    audio.pop(protocol, None)
                else:
                    audio[protocol] = value
                if not audio:
                    table.pop("audio_urls")
            elif value is None:
                table.pop(key, None)
            else:
                table[key] = value
        if make_default_if_unset and not data.get("default_profile"):
            data["default_profile"] = name
            made_default.append(True)

    update_config_file(change, env)
    return bool(made_default)


def set_default_profile(name: str | None, env: Mapping[str, str] | None = None) -> None:
    """Make a profile the default (None: back to the built-in `local`)."""

    def change(data: dict[str, Any]) -> None:
        if name is None:
            data.pop("default_profile", None)
        else:
            data["default_profile"] = validate_profile_name(name)

    update_config_file(change, env)

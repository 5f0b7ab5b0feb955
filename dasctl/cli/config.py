"""`dasctl config show|get|set|unset|path`: profile values and where each one comes from."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dasctl.cli.common import JsonOption, ProfileOption, profile_name, say
from dasctl.cli.usage import compose_help

if TYPE_CHECKING:
    from dasctl.config import Profile

CONFIG_SHOW_SCHEMA = "dasctl.config-show/1"
CONFIG_PATH_SCHEMA = "dasctl.config-path/1"

config_app = typer.Typer(
    name="config",
    help=compose_help(
        "Show and set profile values (precedence: flag > environment > profile file > default).",
        examples=["dasctl config show", "dasctl config set model_hash HASH --profile prod"],
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)

KeyArgument = Annotated[str, typer.Argument(metavar="KEY", help="A key, e.g. url or audio_url.twilio.")]


def _origin(profile: Profile, key: str) -> str:
    """Where a value came from, precise enough to go and change it."""
    from dasctl import config

    source = profile.sources.get(key, config.SOURCE_DEFAULT)
    spec = config.config_key(key)
    if source == config.SOURCE_ENV:
        return f"{source} ({spec.env})"
    if source == config.SOURCE_FLAG:
        return f"{source} ({spec.flag})"
    derived = key == "auth_url" or key.startswith("audio_url.")
    if source == config.SOURCE_DEFAULT and derived and profile.get(key) is not None:
        return f"{source} (from url)"
    return source


def _display(key: str, value: object) -> str:
    """A value as a table shows it: masked when secret, quoted (safe_text) when a terminal could act on
    it: a profile file or the environment may hold an ESC, a bidi override or a carriage return."""
    from dasctl import config
    from dasctl.safe_text import quoted

    if value is None:
        return "(unset)"
    if config.config_key(key).kind == "store":
        return quoted(config.masked_store_url(str(value)))
    if config.config_key(key).secret:
        from dasctl.auth import mask

        return quoted(mask(str(value)))
    return quoted(value)


def _masked(key: str) -> bool:
    """Whether a value is shown masked (a secret, or a store URL that may carry a password)."""
    from dasctl import config

    spec = config.config_key(key)
    return spec.secret or spec.kind == "store"


def _keys(profile: Profile) -> list[str]:
    from dasctl import config

    extra = sorted(f"audio_url.{p}" for p in profile.audio_urls if p not in config.AUDIO_PROTOCOLS)
    return [*config.CONFIG_KEYS, *extra]


def show(profile: ProfileOption = None, json_output: JsonOption = False) -> None:
    """Show every value of a profile and where it comes from."""
    from dasctl import config
    from dasctl.results import json_line

    resolved = config.load_profile(profile_name(profile))
    rows = [(key, resolved.get(key), _origin(resolved, key)) for key in _keys(resolved)]
    if json_output:
        document: dict[str, Any] = {
            "schema": CONFIG_SHOW_SCHEMA,
            "profile": resolved.name,
            "profile_source": resolved.sources.get("profile"),
            "config_file": str(config.config_file()),
            "values": {key: {"value": value if not _masked(key) or value is None
                             else _display(key, value), "source": origin}
                       for key, value, origin in rows},
        }
        print(json_line(document))
        return
    from dasctl.safe_text import quoted

    print(f"profile: {quoted(resolved.name)} (from {resolved.sources.get('profile')}; "
          f"known: {', '.join(quoted(name) for name in config.profile_names())})")
    print(f"file:    {quoted(config.config_file())}")
    width = max(len(key) for key, _, _ in rows)
    value_width = min(60, max(len(_display(key, value)) for key, value, _ in rows))
    for key, value, origin in rows:
        print(f"{key.ljust(width)}  {_display(key, value).ljust(value_width)}  {origin}")


def get(key: KeyArgument, profile: ProfileOption = None, json_output: JsonOption = False) -> None:
    """Print one value of a profile (with --json, also where it comes from)."""
    from dasctl import config
    from dasctl.results import json_line

    if key == "default_profile":
        name, source = config.resolve_profile_name(None)
        value: object = name
        origin = source
    else:
        config.config_key(key)
        resolved = config.load_profile(profile_name(profile))
        value = resolved.get(key)
        origin = _origin(resolved, key)
        if config.config_key(key).kind == "store" and value is not None:
            value = config.masked_store_url(str(value))  # the password never leaves in output
    if json_output:
        print(json_line({"schema": "dasctl.config-get/1", "key": key, "value": value, "source": origin}))
        return
    if value is None:
        say(f"{key} is not set ({origin}).")
        raise typer.Exit(1)
    if sys.stdout.isatty():  # a value from a file or the environment: quoted before a terminal acts on it
        from dasctl.safe_text import quoted

        print(quoted(value))
    else:  # `$(dasctl config get url)` gets the value exactly
        print(value)


def _check_not_secret(key: str) -> None:
    from dasctl.errors import UsageError

    if key in ("client_secret", "secret", "audiohook_secret", "token"):
        raise UsageError(f"{key} is a secret, not a config value",
                         "Use `dasctl login`: secrets go to the keyring or a 0600 file, not the config.")


def set_value(
    key: KeyArgument,
    value: Annotated[str, typer.Argument(metavar="VALUE", help="The new value.")],
    profile: ProfileOption = None,
) -> None:
    """Store a value in a profile of the profiles file."""
    from dasctl import config
    from dasctl.errors import UsageError

    _check_not_secret(key)
    if key == "default_profile":
        name = config.validate_profile_name(value)
        if name not in config.profile_names():
            raise UsageError(f"no profile named '{name}' (known: {', '.join(config.profile_names())})",
                             f"Create it first: `dasctl login --profile {name}`.")
        config.set_default_profile(name)
        say(f"Default profile is now '{name}' ({config.config_file()}).")
        if os.environ.get(config.ENV_PROFILE):
            say(f"Note: {config.ENV_PROFILE} is set and takes precedence.")
        return
    spec = config.config_key(key)
    name, _ = config.resolve_profile_name(profile_name(profile))
    if not value.isprintable():  # a typing or pasting slip: no id, hash, key, URL or path holds one
        raise UsageError(f"value for {key}: the value contains a control character ({value!r})")
    parsed = config.parse_value(spec, value, f"value for {key}")
    config.store_profile_values(name, {key: parsed})
    say(f"Set {key} = {_display(key, parsed)} in profile '{name}' ({config.config_file()}).")
    if os.environ.get(spec.env):
        say(f"Note: {spec.env} is set and takes precedence over the profile file.")


def unset(key: KeyArgument, profile: ProfileOption = None) -> None:
    """Remove a value from a profile, so the default applies again."""
    from dasctl import config

    _check_not_secret(key)
    if key == "default_profile":
        config.set_default_profile(None)
        say("Default profile is the built-in 'local' again.")
        return
    config.config_key(key)
    name, _ = config.resolve_profile_name(profile_name(profile))
    config.store_profile_values(name, {key: None})
    say(f"Removed {key} from profile '{name}' ({config.config_file()}).")


def path(json_output: JsonOption = False) -> None:
    """Print the path of the profiles file (with --json, every directory dasctl uses)."""
    from dasctl import config
    from dasctl.results import json_line

    if json_output:
        print(json_line({
            "schema": CONFIG_PATH_SCHEMA,
            "config_file": str(config.config_file()),
            "config_dir": str(config.config_dir()),
            "secrets_dir": str(config.secrets_dir()),
            "token_cache_dir": str(config.token_cache_dir()),
            "store_file": str(config.store_path()),
            "state_dir": str(config.state_dir()),
        }))
        return
    print(config.config_file())


SHOW_HELP = compose_help(
    "Show every value of a profile and where it comes from.",
    examples=["dasctl config show", "dasctl config show --profile prod --json"],
)
GET_HELP = compose_help(
    "Print one value of a profile (with --json, also where it comes from).",
    examples=["dasctl config get url", "dasctl config get audio_url.twilio --profile prod"],
    exit_codes="""
    0 printed
    1 the key is not set
    2 usage error (an unknown key)
    """,
)
SET_HELP = compose_help(
    "Store a value in a profile of the profiles file.",
    examples=[
        "dasctl config set model_hash HASH --profile prod",
        "dasctl config set audio_url.twilio wss://audio.example.com/twilio --profile prod",
        "dasctl config set default_profile prod",
    ],
)
UNSET_HELP = compose_help(
    "Remove a value from a profile, so the default applies again.",
    examples=["dasctl config unset model_hash --profile prod"],
)
PATH_HELP = compose_help(
    "Print the path of the profiles file (with --json, every directory dasctl uses).",
    examples=["dasctl config path", "dasctl config path --json"],
)


def install(app: typer.Typer) -> None:
    """Add the config group to the application."""
    config_app.command("show", help=SHOW_HELP)(show)
    config_app.command("get", help=GET_HELP)(get)
    config_app.command("set", help=SET_HELP)(set_value)
    config_app.command("unset", help=UNSET_HELP)(unset)
    config_app.command("path", help=PATH_HELP)(path)
    app.add_typer(config_app, name="config")

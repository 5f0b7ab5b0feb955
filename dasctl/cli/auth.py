"""`dasctl login`, `dasctl logout` and `dasctl auth status|token`: thin wrappers over dasctl.auth."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dasctl.cli.common import JsonOption, ProfileOption, profile_name, say, warn
from dasctl.cli.usage import compose_help

if TYPE_CHECKING:
    from dasctl.auth import Token
    from dasctl.config import Profile

AUTH_STATUS_SCHEMA = "dasctl.auth-status/1"

auth_app = typer.Typer(
    name="auth",
    help=compose_help(
        "Show the login state of a profile, or print a token for other tools.",
        examples=["dasctl auth status", "dasctl auth token"],
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _ask(prompt: str, hidden: bool) -> str:
    """Prompt on the terminal (never stdout); only called when stdin is a terminal."""
    if hidden:
        import getpass

        return getpass.getpass(prompt, stream=sys.stderr)
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip()


def _parse_audio_urls(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    urls: dict[str, str] = {}
    for value in values:
        protocol, sep, url = value.partition("=")
        if not sep or not protocol.strip() or not url.strip():
            raise typer.BadParameter(f"{value!r} is not PROTO=URL (e.g. twilio=wss://host/audio/twilio)",
                                     param_hint="'--audio-url'")
        urls[protocol.strip().lower()] = url.strip()
    return urls


def describe_lifetime(seconds: float) -> str:
    """'59 min', '45 s', '3 h' — how long something stays valid, for people."""
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{max(seconds, 0):.0f} s"


def login(
    profile: ProfileOption = None,
    client_id: Annotated[str | None, typer.Option(
        "--client-id", help="OAuth client id (env DASCTL_CLIENT_ID).", show_default=False)] = None,
    client_secret_stdin: Annotated[bool, typer.Option(
        "--client-secret-stdin",
        help="Read the client secret from stdin's first line (or set DASCTL_CLIENT_SECRET).")] = False,
    url: Annotated[str | None, typer.Option("--url", help="Signalling base URL (env DASCTL_URL).",
                                            show_default=False)] = None,
    auth_url: Annotated[str | None, typer.Option("--auth-url", help="Token endpoint (env DASCTL_AUTH_URL).",
                                                 show_default=False)] = None,
    audio_url: Annotated[list[str] | None, typer.Option(
        "--audio-url", metavar="PROTO=URL",
        help="Audio consumer URL per protocol, e.g. twilio=wss://host/audio/twilio (repeatable).")] = None,
    ca_bundle: Annotated[str | None, typer.Option(
        "--ca-bundle", help="CA bundle (PEM) for HTTPS and WSS (env DASCTL_CA_BUNDLE).",
        show_default=False)] = None,
) -> None:
    """Check client credentials by fetching a token, then store the profile and the secret."""
    from dasctl import auth as core
    from dasctl import config
    from dasctl.auth.secrets import AUDIOHOOK_SECRET, CLIENT_SECRET, SecretStore
    from dasctl.cli.common import environment
    from dasctl.errors import UsageError
    from dasctl.logs import register_secret
    from dasctl.net import NetworkSettings

    env = environment()
    flags: dict[str, object] = {"url": url, "auth_url": auth_url, "audio_urls": _parse_audio_urls(audio_url),
                                "ca_bundle": ca_bundle, "client_id": client_id}
    resolved = config.load_profile(profile_name(profile), flags, allow_missing=True)

    # client id: flag > DASCTL_CLIENT_ID > the profile's (stored or the local demo one) > prompt
    chosen_client_id = resolved.client_id
    if not chosen_client_id:
        if not env.can_prompt():
            raise UsageError(f"no client id for profile '{resolved.name}'",
                             "Pass --client-id ID or set DASCTL_CLIENT_ID.")
        chosen_client_id = _ask("Client id: ", hidden=False)
        if not chosen_client_id:
            raise UsageError("no client id given", "Pass --client-id ID or set DASCTL_CLIENT_ID.")

    # secret: stdin > DASCTL_CLIENT_SECRET > the local demo secret > hidden prompt; never a flag value
    secret: core.ClientSecret | None = None
    if client_secret_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UsageError("--client-secret-stdin: stdin had no secret on its first line")
        secret = core.ClientSecret(line, "stdin")
    elif env.env.get(config.ENV_CLIENT_SECRET):
        secret = core.ClientSecret(env.env[config.ENV_CLIENT_SECRET],
                                   f"environment ({config.ENV_CLIENT_SECRET})")
    elif resolved.is_local and chosen_client_id == config.DEMO_CLIENT_ID:
        secret = core.ClientSecret(config.DEMO_CLIENT_SECRET, core.BUILT_IN_SECRET)
    elif env.can_prompt():
        value = _ask(f"Client secret for {chosen_client_id} (hidden): ", hidden=True)
        if not value:
            raise UsageError("no client secret given")
        secret = core.ClientSecret(value, "prompt")
    else:
        raise UsageError(
            f"no client secret for client '{chosen_client_id}', and stdin is not a terminal to ask for it",
            "Pipe it in with --client-secret-stdin, or set DASCTL_CLIENT_SECRET.",
        )
    register_secret(secret.value)

    network = NetworkSettings.from_profile(resolved)
    token = core.login(resolved, chosen_client_id, secret, network)

    # store what the user chose (flags, environment, answers); derived defaults stay derived
    values: dict[str, object] = {
        key: resolved.get(key) for key in ("url", "auth_url", "ca_bundle", *(
            f"audio_url.{p}" for p in resolved.audio_urls))
        if resolved.sources.get(key) in (config.SOURCE_FLAG, config.SOURCE_ENV)
    }
    if resolved.sources.get("client_id") != config.SOURCE_FILE and not (
            resolved.is_local and chosen_client_id == config.DEMO_CLIENT_ID):
        values["client_id"] = chosen_client_id
    made_default = config.store_profile_values(resolved.name, values,
                                               make_default_if_unset=not resolved.is_local)

    store = SecretStore()
    if secret.source == core.BUILT_IN_SECRET:
        store.delete(resolved.name, CLIENT_SECRET)
    else:
        stored = store.put(resolved.name, CLIENT_SECRET, secret.value)
        if stored.keyring_problem:
            warn(f"{stored.keyring_problem}; stored the client secret in {stored.location} (mode 0600)")
    audiohook = env.env.get(config.ENV_AUDIOHOOK_SECRET)
    if audiohook:
        register_secret(audiohook)
        result = store.put(resolved.name, AUDIOHOOK_SECRET, audiohook)
        say(f"Stored the AudioHook secret from {config.ENV_AUDIOHOOK_SECRET} in {result.location}.")

    say(f"Logged in to profile '{resolved.name}' (client {chosen_client_id}) at {resolved.url}; "
         f"token valid for {describe_lifetime(token.lifetime)}.")
    if made_default:
        say(f"Profile '{resolved.name}' is now the default (change it with "
             "`dasctl config set default_profile NAME`).")
    if env.env.get(config.ENV_TOKEN):
        warn("DASCTL_TOKEN is set: it overrides these credentials until you unset it.")


def logout(profile: ProfileOption = None) -> None:
    """Forget a profile's stored client secret and cached tokens (its URLs stay)."""
    from dasctl import auth as core
    from dasctl import config
    from dasctl.auth.secrets import AUDIOHOOK_SECRET, CLIENT_SECRET, SecretStore

    resolved = config.load_profile(profile_name(profile), allow_missing=True)
    store = SecretStore()
    places = store.delete(resolved.name, CLIENT_SECRET) + store.delete(resolved.name, AUDIOHOOK_SECRET)
    tokens = core.forget_tokens(resolved)
    cleared = f"cleared {tokens} cached token{'s' if tokens != 1 else ''}"
    built_in = core.client_secret(resolved)
    if built_in is not None and built_in.source == core.BUILT_IN_SECRET:
        # nothing to remove: the demo secret is part of dasctl, so the profile still works after this
        say(f"Profile '{resolved.name}' uses the emulator's demo secret, which is built into dasctl and "
            f"cannot be removed; {cleared}. `dasctl auth status` still works: it fetches a new token.")
    elif places:
        where = ", ".join(sorted(set(places)))
        say(f"Logged out of profile '{resolved.name}': removed the stored secret ({where}); {cleared}.")
    elif tokens:
        say(f"Profile '{resolved.name}' had no stored secret; {cleared}.")
    else:
        say(f"Profile '{resolved.name}' had no stored secret or cached token; nothing to forget.")
    for variable in (config.ENV_TOKEN, config.ENV_CLIENT_SECRET):
        if os.environ.get(variable):
            warn(f"{variable} is still set in the environment and will still be used.")


def _status_document(resolved: Profile, token: Token | None, credentials: str | None,
                     env_token: bool) -> dict[str, Any]:
    import math
    import time
    from datetime import datetime, timezone

    expires_at = token.expires_at if token is not None and math.isfinite(token.expires_at) else None
    return {
        "schema": AUTH_STATUS_SCHEMA,
        "profile": resolved.name,
        "profile_source": resolved.sources.get("profile"),
        "url": resolved.url,
        "auth_url": resolved.auth_url,
        "client_id": resolved.client_id,
        "credentials": credentials,
        "logged_in": token is not None,
        "dasctl_token_override": env_token,
        "token": None if token is None else {
            "masked": _mask(token.access_token),
            "type": token.token_type,
            "source": token.source,
            "expires_at": None if expires_at is None
            else datetime.fromtimestamp(expires_at, timezone.utc).isoformat(timespec="seconds"),
            "expires_in": None if expires_at is None else max(0, round(expires_at - time.time())),
        },
    }


def _mask(value: str) -> str:
    from dasctl.auth import mask

    return mask(value)


def status(profile: ProfileOption = None, json_output: JsonOption = False) -> None:
    """Show the profile, its URLs, client id, where the token comes from and when it expires."""
    from dasctl import auth as core
    from dasctl import config
    from dasctl.errors import DasctlError
    from dasctl.results import json_line

    resolved = config.load_profile(profile_name(profile))
    provider = core.TokenProvider(resolved)
    env_token = provider.env_token() is not None
    secret = core.client_secret(resolved) if resolved.client_id else None
    credentials = "DASCTL_TOKEN" if env_token else (secret.source if secret else None)
    token: Token | None = None
    problem: DasctlError | None = None
    try:
        token = provider.token()
    except DasctlError as error:  # still show what we know, then fail with the right exit code
        problem = error
    document = _status_document(resolved, token, credentials, env_token)
    if json_output:
        if problem is not None:
            document["error"] = {"kind": problem.kind, "message": problem.message}
        print(json_line(document))
    else:
        from dasctl.safe_text import quoted

        # the profile's values came from a file or the environment: quoted where a terminal could act on them
        rows = [
            ("profile", f"{quoted(resolved.name)} (from {document['profile_source']})"),
            ("url", quoted(resolved.url)),
            ("auth_url", quoted(resolved.auth_url)),
            ("client_id", quoted(resolved.client_id) if resolved.client_id else "(none)"),
            ("credentials", (f"{credentials} (part of dasctl: `dasctl logout` cannot remove it)"
                             if credentials == core.BUILT_IN_SECRET else credentials) or "(none stored)"),
        ]
        if token is not None:
            info = document["token"]
            expiry = ("expiry unknown" if info["expires_at"] is None
                      else f"expires {info['expires_at']} (in {describe_lifetime(info['expires_in'])})")
            rows.append(("token", f"{quoted(info['masked'])} from {quoted(token.source)}, {expiry}"))
        else:
            rows.append(("token", "(none)"))
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"{name.ljust(width)}  {value}")
        if env_token:
            say("DASCTL_TOKEN is set: it overrides the profile's stored credentials.")
    if problem is not None:
        raise problem


def token(profile: ProfileOption = None) -> None:
    """Print a valid access token on stdout (refreshed when needed), for other tools."""
    from dasctl import auth as core
    from dasctl import config

    resolved = config.load_profile(profile_name(profile))
    print(core.TokenProvider(resolved).token().access_token)


LOGIN_HELP = compose_help(
    "Check client credentials by fetching a token, then store the profile and the secret.",
    "The secret goes to the system keyring, else a 0600 file; it is never taken from the command line. "
    "The built-in `local` profile needs no input: it uses the emulator's public demo client.",
    examples=[
        "dasctl login   # the local emulator (`dasctl serve`)",
        "dasctl login --profile prod --client-id my-client --url https://api.eu.veri-das.com \\",
        "      --audio-url twilio=wss://audio.example.com/twilio",
        "printf '%s\\n' \"$SECRET\" | dasctl login --profile prod --client-secret-stdin",
    ],
    exit_codes="""
    0 logged in
    2 usage error (a missing client id or secret, and no terminal to ask)
    4 the token endpoint refused the credentials
    6 the token endpoint could not be reached
    """,
)
LOGOUT_HELP = compose_help(
    "Forget a profile's stored client secret and cached tokens (its URLs stay).",
    examples=["dasctl logout", "dasctl logout --profile prod"],
)
STATUS_HELP = compose_help(
    "Show the profile, its URLs, client id, where the token comes from and when it expires.",
    examples=["dasctl auth status", "dasctl auth status --profile prod --json | jq .token.expires_at"],
    exit_codes="""
    0 logged in (a valid token)
    4 not logged in, or the credentials are refused
    6 the token endpoint could not be reached
    """,
)
TOKEN_HELP = compose_help(
    "Print a valid access token on stdout (refreshed when needed), for other tools.",
    examples=['curl -H "Authorization: Bearer $(dasctl auth token)" "$URL"'],
    exit_codes="""
    0 a token was printed
    4 not logged in, or the credentials are refused
    6 the token endpoint could not be reached
    """,
)


def install(app: typer.Typer) -> None:
    """Add login, logout and the auth group to the application."""
    app.command("login", help=LOGIN_HELP)(login)
    app.command("logout", help=LOGOUT_HELP)(logout)
    auth_app.command("status", help=STATUS_HELP)(status)
    auth_app.command("token", help=TOKEN_HELP)(token)
    app.add_typer(auth_app, name="auth")

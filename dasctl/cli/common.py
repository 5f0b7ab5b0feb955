"""Global options shared by every command, and the Environment built from them."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Annotated

import typer

from dasctl.environment import Environment

if TYPE_CHECKING:
    from dasctl.config import Profile
    from dasctl.session import RegisterOptions
    from dasctl.store import Store


@dataclass
class GlobalOptions:
    profile: str | None = None
    verbosity: int = 0
    quiet: bool = False
    no_color: bool = False


OPTIONS = GlobalOptions()


def environment() -> Environment:
    """The process environment with the global options applied."""
    return Environment(no_color=OPTIONS.no_color, verbosity=OPTIONS.verbosity, quiet=OPTIONS.quiet)


def say(message: str) -> None:
    """A status line for people on stderr; nothing with --quiet."""
    if not OPTIONS.quiet:
        print(message, file=sys.stderr)


def warn(message: str, stream: IO[str] | None = None) -> None:
    """A warning on stderr (or the given stream), shown even with --quiet."""
    out = stream if stream is not None else sys.stderr
    out.write(f"dasctl: warning: {message}\n")
    out.flush()


def color_stderr() -> bool:
    return bool(
        sys.stderr.isatty()
        and not OPTIONS.no_color
        and "NO_COLOR" not in os.environ
        and os.environ.get("TERM") != "dumb"
    )


def profile_name(command_value: str | None) -> str | None:
    """A command's own --profile wins over the global one (the environment and default come later)."""
    return command_value or OPTIONS.profile


# Options that several commands repeat, declared once.
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        help="Profile to use (default: DASCTL_PROFILE, else the file's default_profile, else 'local').",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ProtocolOption = Annotated[
    str, typer.Option("--protocol", help="Audio channel protocol: twilio or audiohook.")
]
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        help="Anti-spoofing threshold, 0..1 (profile: authenticity_threshold).",
        show_default=False,
    ),
]
DurationOption = Annotated[
    float | None,
    typer.Option(
        "--duration",
        help="Seconds of voice to collect (profile: audio_total_duration).",
        show_default=False,
    ),
]
ModelHashOption = Annotated[
    str | None,
    typer.Option(
        "--model-hash", help="Biometric model to enroll with (profile: model_hash).", show_default=False
    ),
]


StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="URL",
        help="Credential store: a SQLite file or postgresql://USER@HOST/DB (default: DASCTL_STORE, the "
        "profile's store, else store.db in dasctl's data directory).",
        show_default=False,
    ),
]


def open_store_option(flag: str | None, profile: Profile | None = None) -> Store:
    """The store by precedence: --store > DASCTL_STORE > the profile's `store` > the default file."""
    from dasctl.config import parse_store_url
    from dasctl.store import open_store

    if flag is not None:
        url = parse_store_url(flag, "--store") if flag.strip() else flag
        from dasctl.config import store_url_password

        if store_url_password(url):
            warn("the --store URL carries a password, which other users can see in the process list; "
                 "use PGPASSWORD or ~/.pgpass instead")
        return open_store(url)
    if profile is not None and profile.store:
        return open_store(profile.store)
    return open_store(None)


def load_register_request(
    profile: str | None,
    *,
    protocol: str,
    model_hash: str | None,
    threshold: float | None,
    duration: float | None,
    speed: float,
    timeout: float,
    call_id: str | None = None,
) -> tuple[Profile, RegisterOptions]:
    """The profile with register's per-request flags applied, and the session options they make."""
    from dasctl.config import load_profile
    from dasctl.errors import UsageError
    from dasctl.session import RegisterOptions

    resolved = load_profile(
        profile_name(profile),
        flags={
            "model_hash": model_hash,
            "authenticity_threshold": threshold,
            "audio_total_duration": duration,
        },
        flag_names={"authenticity_threshold": "--threshold", "audio_total_duration": "--duration"},
    )
    if not resolved.model_hash:
        raise UsageError(
            f"profile '{resolved.name}' has no model hash",
            "Pass --model-hash, set DASCTL_MODEL_HASH, or `dasctl config set model_hash HASH`.",
        )
    resolved.audio_url(protocol)  # no URL for this protocol: a usage error now, not after connecting
    options = RegisterOptions(
        protocol=protocol,
        authenticity_threshold=resolved.authenticity_threshold,
        audio_total_duration=resolved.audio_total_duration,
        model_hash=resolved.model_hash,
        call_id=call_id,
        speed=speed,
        timeout=timeout,
    )
    return resolved, options

"""Global options shared by every command, and the Environment built from them.

Writing a command (the convention every command follows; cli/usage.py renders it):
- help: `app.command("name", help=compose_help(summary, details, examples=[...], exit_codes=...))` from
  dasctl.cli.usage. The summary is one whole sentence (`dasctl --help` lists it, never cut); examples
  are command lines without the `$ `; exit_codes one `N meaning` per line, where more than 0 and 2 apply.
- values: give every option that takes one a `metavar=` saying what it is (SECONDS, URL, FILE, NAME,
  `a|b` for choices); the help test fails on `<str>`-style placeholders and a missing EXAMPLES.
- errors: raise dasctl.errors.UsageError(message, hint) for bad input, in plain words; hints name a
  command that exists and carry `--profile NAME` when they are about a profile. Parser errors are
  already reworded in one place (usage.usage_error); never print `Error:` yourself.
- completion: profile, protocol and channel options take `autocompletion=` from the callbacks below.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from dasctl.environment import Environment

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from dasctl.config import Profile
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
    from dasctl.safe_text import line

    if not OPTIONS.quiet:
        print(line(message, keep_newlines=True), file=sys.stderr)  # dasctl's own lines stay lines


def warn(message: str, stream: IO[str] | None = None) -> None:
    """A warning on stderr (or the given stream), shown even with --quiet."""
    from dasctl.safe_text import line

    out = stream if stream is not None else sys.stderr
    out.write(f"dasctl: warning: {line(message, keep_newlines=True)}\n")
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
        metavar="NAME",
        help="Profile to use (default: DASCTL_PROFILE, else the file's default_profile, else 'local').",
        show_default=False,
        autocompletion=lambda incomplete: complete_profile(incomplete),
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ProtocolOption = Annotated[
    str,
    typer.Option(
        "--protocol",
        metavar="twilio|audiohook",
        help="Audio channel protocol.",
        autocompletion=lambda incomplete: complete_protocol(incomplete),
    ),
]
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        metavar="0..1",
        help="Anti-spoofing threshold, 0..1 (profile: authenticity_threshold).",
        show_default=False,
    ),
]
DurationOption = Annotated[
    float | None,
    typer.Option(
        "--duration",
        metavar="SECONDS",
        help="Seconds of voice to collect (profile: audio_total_duration).",
        show_default=False,
    ),
]
ModelHashOption = Annotated[
    str | None,
    typer.Option(
        "--model-hash",
        metavar="HASH",
        help="Biometric model to enroll with (profile: model_hash).",
        show_default=False,
    ),
]


# register and verify stream one file at a time and check these themselves (with a hint that says what
# the values mean), so the declarations carry no range.
SpeedOption = Annotated[
    float,
    typer.Option("--speed", metavar="N", help="Streaming speed: 1 = real time, 0 = as fast as possible."),
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", metavar="SECONDS", help="Seconds to wait for the service at each step."),
]
# watch and reenroll run many sessions and let the parser refuse an out-of-range value before any starts.
BatchSpeedOption = Annotated[
    float, typer.Option("--speed", min=0.0, help="Send audio at N x real time (0: as fast as possible).")
]
BatchTimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the service at each step.")
]
EventsOption = Annotated[
    bool, typer.Option("--events", help="Write every service event as an NDJSON line on stdout.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]


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


StoreKeyFileOption = Annotated[
    Path | None,
    typer.Option("--store-key-file", metavar="FILE", show_default=False,
                 help="The store's key file (default: DASCTL_STORE_KEY_FILE, DASCTL_STORE_KEY, the profile's "
                      "store_key_file, else the local key in the OS keyring or config directory)."),
]


def key_file_flag(key_file: Path | None) -> dict[str, str | None]:
    """--store-key-file as a load_profile flag: the profile's store_key_file, set on the command line."""
    return {"store_key_file": None if key_file is None else str(key_file)}


def open_store_option(flag: str | None, profile: Profile | None = None, *, create: bool = True) -> Store:
    """The store by precedence: --store > DASCTL_STORE > the profile's `store` > the default file; its key
    by the profile's store_key_file resolution (flag > DASCTL_STORE_KEY_FILE > file), then vault.py."""
    from dasctl.config import parse_store_url
    from dasctl.store import open_store as open_any_store
    from dasctl.store.vault import key_settings

    settings = key_settings(profile)

    def open_store(url: str | None) -> Store:
        return open_any_store(url, key=settings, warn=warn, create=create)

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


def warn_of_stale_profile_model(store: Store, profile: Profile, stream: IO[str] | None = None) -> None:
    """register and watch: warn when the profile names a model the store's speakers were moved away from."""
    from dasctl.reenroll import profile_model_warning

    message = profile_model_warning(store, profile)
    if message:
        warn(message, stream)


T = TypeVar("T")


def run_sessions(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) for commands that hold sessions: SIGTERM and SIGHUP cancel the main task, as
    asyncio's runner does on Ctrl-C, so every session closes its channels on the way out; the caller
    sees asyncio.CancelledError. dasctl.cli.main sends them down SIGINT's path, but where SIGINT is
    ignored (`dasctl register ... &` in a script) that path raises KeyboardInterrupt wherever the loop
    happens to be, and an HTTP session can be left unclosed. An ignored SIGHUP (nohup) stays ignored;
    the handlers from before the run come back after it. Plain signal.signal handlers, as asyncio's
    runner uses for SIGINT: the loop's add/remove_signal_handler would leave SIG_DFL behind, a window in
    which SIGTERM kills the process (143) instead of ending it as an interruption.
    """
    import asyncio
    import signal

    signums = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    signums = [signum for signum in signums if signal.getsignal(signum) is not signal.SIG_IGN]
    previous = {signum: signal.getsignal(signum) for signum in signums}

    async def cancellable() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def cancel(signum: int, frame: object) -> None:
            from dasctl.cli import note_signal

            note_signal(signum)
            if task is None or task.done():
                raise KeyboardInterrupt  # the sessions are over: end as Ctrl-C ends the rest
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop is closing
                raise KeyboardInterrupt from None

        for signum in signums:
            try:
                signal.signal(signum, cancel)
            except (ValueError, OSError):  # not the main thread
                pass
        return await main

    try:
        return asyncio.run(cancellable())
    finally:
        for signum, handler in previous.items():
            try:
                signal.signal(signum, handler)
            except (ValueError, TypeError, OSError):
                pass


# Shell completion callbacks: called on every <Tab>, so cheap (no numpy, socketio or audio imports).
def complete_profile(incomplete: str) -> list[str]:
    from dasctl import config

    try:
        names = config.profile_names()
    except Exception:  # a broken profiles file must not break the user's shell
        names = [config.LOCAL_PROFILE]
    return [name for name in names if name.startswith(incomplete)]


def check_protocol(protocol: str) -> None:
    """--protocol as every command that opens sessions checks it, before anything starts."""
    from dasctl.config import AUDIO_PROTOCOLS
    from dasctl.errors import UsageError

    if protocol not in AUDIO_PROTOCOLS:
        raise UsageError(f"--protocol {protocol!r} is not one of: {', '.join(AUDIO_PROTOCOLS)}")


def complete_protocol(incomplete: str) -> list[str]:
    from dasctl.config import AUDIO_PROTOCOLS

    return [name for name in AUDIO_PROTOCOLS if name.startswith(incomplete)]


def complete_channel(incomplete: str) -> list[str]:
    names = ("mix", "left", "right", "customer", "agent", "0", "1")
    return [name for name in names if name.startswith(incomplete)]

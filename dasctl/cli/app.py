"""The Typer application: global options, the command groups (one module each), and `run()`."""

from __future__ import annotations

import copy
import os
import sys
from typing import Annotated

import typer

from dasctl import __version__
from dasctl.cli import common
from dasctl.cli.usage import compose_help

EXIT_CODES = """
    0 success
    1 internal error (a bug: report it with the -vv output)
    2 usage error
    3 input audio unusable
    4 authentication
    5 the service said no
    6 service unreachable or failed (worth retrying)
    7 batch finished with some files failed
    130 interrupted
"""

app = typer.Typer(
    name="dasctl",
    help=compose_help(
        "Enroll speakers in das-Peak Streaming from recorded calls.",
        examples=[
            "dasctl serve --log-file serve.log &   # the local emulator, quiet in the background",
            "dasctl login",
            "dasctl register call.wav",
            "dasctl watch /data/calls --once",
        ],
        exit_codes=EXIT_CODES,
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dasctl {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-p", metavar="NAME", help="Profile to use (env DASCTL_PROFILE).",
                     autocompletion=common.complete_profile),
    ] = None,
    verbose: Annotated[
        int, typer.Option(
            "--verbose", "-v", count=True, show_default=False, help="More detail on stderr (-vv: debug)."
        )
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results and errors.")] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colour (also NO_COLOR, TERM=dumb).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True,
                           help="Print the version and exit (-v: also the libraries', for bug reports).")
    ] = False,
) -> None:
    common.OPTIONS.profile = profile
    common.OPTIONS.verbosity = verbose
    common.OPTIONS.quiet = quiet
    common.OPTIONS.no_color = no_color

    from dasctl import logs

    logs.configure(verbose, sys.stderr)


def versions() -> list[tuple[str, str]]:
    """dasctl's version and those of the libraries a bug report needs (imported only when asked)."""
    import platform
    from importlib import metadata

    rows = [("dasctl", __version__), ("Python", f"{platform.python_version()} ({sys.executable})")]
    try:
        import soundfile

        rows.append(("libsndfile", str(soundfile.__libsndfile_version__)))
    except (ImportError, OSError) as error:
        rows.append(("libsndfile", f"unavailable ({error})"))
    for label, distribution in (("soundfile", "soundfile"), ("soxr", "soxr"),
                                ("python-socketio", "python-socketio"), ("typer", "typer")):
        try:
            rows.append((label, metadata.version(distribution)))
        except metadata.PackageNotFoundError:
            rows.append((label, "not installed"))
    return rows


def version() -> None:
    """Print the versions of dasctl, Python and the audio and network libraries, for bug reports."""
    rows = versions()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


SHELLS = ("bash", "zsh", "fish")


def completion(
    shell: Annotated[str, typer.Argument(metavar="bash|zsh|fish", help="The shell to complete in.",
                                         autocompletion=lambda: list(SHELLS))],
) -> None:
    """Print the shell completion script for bash, zsh or fish."""
    from typer._completion_shared import get_completion_script

    from dasctl.errors import UsageError

    if shell not in SHELLS:
        raise UsageError(f"no completion for shell {shell!r}", f"Use one of: {', '.join(SHELLS)}.")
    print(get_completion_script(prog_name="dasctl", complete_var=COMPLETE_VAR, shell=shell))


COMPLETE_VAR = "_DASCTL_COMPLETE"

COMPLETION_HELP = compose_help(
    "Print the shell completion script for bash, zsh or fish.",
    "Commands, options, every choice, profile names, and speaker ids and model hashes from the credential "
    "store complete. Install the script as below; it asks dasctl for the words, so it stays right after an "
    "upgrade.",
    examples=[
        "mkdir -p ~/.local/share/bash-completion/completions",
        "dasctl completion bash > ~/.local/share/bash-completion/completions/dasctl",
        "mkdir -p ~/.zfunc && dasctl completion zsh > ~/.zfunc/_dasctl   # and fpath=(~/.zfunc $fpath)",
        "mkdir -p ~/.config/fish/completions",
        "dasctl completion fish > ~/.config/fish/completions/dasctl.fish",
        "eval \"$(dasctl completion bash)\"   # this shell only",
    ],
)

VERSION_HELP = compose_help(
    "Print the versions of dasctl, Python and the audio and network libraries, for bug reports.",
    examples=["dasctl version", "dasctl --version -v   # the same"],
)


def _install_commands() -> None:
    from dasctl.cli import auth, config, credentials, reenroll, register, serve, transcode, verify, watch
    from dasctl.cli import stream as live_call_commands

    for module in (auth, register, watch, credentials, verify, reenroll, serve, transcode, config):
        module.install(app)
    live_call_commands.install(app)  # stream, call-id
    app.command("completion", help=COMPLETION_HELP)(completion)
    app.command("version", help=VERSION_HELP)(version)


_install_commands()


def _version_only(args: list[str]) -> bool:
    """`dasctl --version -v`: the flags are only --version and verbosity."""
    return "--version" in args and all(arg in ("--version", "-v", "-vv", "--verbose") for arg in args)


#: global options that take a value (the next word is not the command's name)
_GLOBAL_VALUE_OPTIONS = ("--profile", "-p")


def _invoked(args: list[str]) -> str | None:
    """The command's name when the words before it are only global options; None otherwise."""
    words = iter(args)
    for word in words:
        if word in _GLOBAL_VALUE_OPTIONS:
            next(words, None)  # its value
        elif not word.startswith("-"):
            return word
        elif word in ("-h", "--help", "--version"):
            return None
    return None


def _only_the_invoked(args: list[str]) -> typer.Typer:
    """The application with only the invoked command or group: Typer turns every parameter annotation of
    every command into click options on each run, which is most of a command's start-up. The whole tree
    when the words name no known command (help, completion, a typo to suggest a fix for)."""
    name = _invoked(args)
    if name is None or os.environ.get(COMPLETE_VAR):
        return app
    commands = [info for info in app.registered_commands if info.name == name]
    groups = [info for info in app.registered_groups if info.name == name]
    if not commands and not groups:
        return app
    lean = copy.copy(app)
    lean.registered_commands, lean.registered_groups = commands, groups
    return lean


def run(args: list[str]) -> int:
    """Run the command line; parser errors become dasctl's UsageError (one style, exit 2)."""
    from typer import _click
    from typer.exceptions import Abort
    from typer.main import get_command

    from dasctl.cli import plain_values, usage

    if _version_only(args) and len(args) > 1:
        version()
        return 0
    command = usage.adopt(get_command(_only_the_invoked(args)))
    plain_values.install(command)  # no pydantic for plain values: a third of a short command's start-up
    if not os.environ.get(COMPLETE_VAR):
        from dasctl.cli.global_options import hoist

        # `dasctl credentials list --profile team` is read as `dasctl -p team credentials list`
        args = hoist(command, args)
    try:
        if os.environ.get(COMPLETE_VAR):
            from typer.completion import completion_init

            from dasctl.cli.completion import attach

            completion_init()
            attach(command)  # values: choices, speaker ids and model hashes from the store
        result = command.main(args=args, prog_name="dasctl", complete_var=COMPLETE_VAR,
                              standalone_mode=False)
    except _click.exceptions.NoArgsIsHelpError as bare:
        # `dasctl` or `dasctl config` alone: the help is what was asked for (as gh), on stdout
        print(bare.ctx.get_help())
        return 0
    except _click.exceptions.UsageError as error:
        raise usage.usage_error(error) from None
    except Abort:
        from dasctl.errors import Interrupted

        raise Interrupted("aborted") from None
    return result if isinstance(result, int) else 0

"""The Typer application: global options and the command groups, one module each."""

from __future__ import annotations

from typing import Annotated

import typer

from dasctl import __version__
from dasctl.cli import common

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 internal error; 2 usage error; 3 input audio unusable; "
    "4 authentication; 5 the service said no; 6 service unreachable or failed (worth retrying); "
    "7 batch finished with some files failed; 130 interrupted."
)

app = typer.Typer(
    name="dasctl",
    help="Enroll speakers in das-Peak Streaming from recorded calls.\n\n" + EXIT_CODES_HELP,
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
        str | None, typer.Option("--profile", "-p", help="Profile to use (env DASCTL_PROFILE).")
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
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    common.OPTIONS.profile = profile
    common.OPTIONS.verbosity = verbose
    common.OPTIONS.quiet = quiet
    common.OPTIONS.no_color = no_color
    import sys

    from dasctl import logs

    logs.configure(verbose, sys.stderr)


def _install_commands() -> None:
    from dasctl.cli import auth, config, credentials, register, serve, transcode, watch

    for module in (auth, register, watch, credentials, serve, transcode, config):
        module.install(app)


_install_commands()

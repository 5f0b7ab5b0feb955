"""Entry point. Kept free of heavy imports so `dasctl --version` starts fast."""

from __future__ import annotations

import sys
import traceback


def _report(message: str, hint: str | None, color: bool) -> None:
    prefix = "\x1b[1;31merror:\x1b[0m" if color else "error:"
    print(f"dasctl: {prefix} {message}", file=sys.stderr)
    if hint:
        print(f"  {hint}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run dasctl; map every outcome to the exit codes of DESIGN.md."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--version"]:
        from dasctl import __version__

        print(f"dasctl {__version__}")
        return 0

    from dasctl.cli import common
    from dasctl.errors import DasctlError, ExitCode
    from dasctl.logs import redact

    try:
        from dasctl.cli.app import run

        status = run(args)
        if status:
            return status
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except DasctlError as error:
        if common.OPTIONS.verbosity >= 2:
            sys.stderr.write(redact(traceback.format_exc()))
        _report(redact(error.message), redact(error.hint) if error.hint else None, common.color_stderr())
        return int(error.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # the reader went away (`dasctl ... | head`): nothing left to say to it
        sys.stderr.close()
        return 1
    except Exception as error:  # a bug: say so plainly, traceback only at -vv
        if common.OPTIONS.verbosity >= 2:
            sys.stderr.write(redact(traceback.format_exc()))
            _report(f"internal error: {type(error).__name__}", None, common.color_stderr())
        else:
            _report(
                f"internal error: {type(error).__name__}: {redact(str(error))}",
                "This is a bug in dasctl. Run again with -vv for the traceback, and report it.",
                common.color_stderr(),
            )
        return int(ExitCode.INTERNAL)
    return 0

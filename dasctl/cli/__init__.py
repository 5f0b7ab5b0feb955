"""Entry point. Kept free of heavy imports so `dasctl --version` starts fast."""

from __future__ import annotations

import errno
import os
import signal
import sys
import traceback
from types import FrameType


def _report(message: str, hint: str | None, color: bool) -> None:
    prefix = "\x1b[1;31merror:\x1b[0m" if color else "error:"
    print(f"dasctl: {prefix} {message}", file=sys.stderr)
    if hint:
        print(f"  {hint}", file=sys.stderr)


def _like_sigint(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP take Ctrl-C's path, whoever handles SIGINT at the moment: Python's
    KeyboardInterrupt, asyncio's runner (cancels the main task, so sessions close), or a command's own
    loop handler (watch's graceful stop). Temporary files go away in the same `finally` blocks."""
    handler = signal.getsignal(signal.SIGINT)
    if handler in (signal.SIG_IGN, signal.SIG_DFL, None):  # e.g. `dasctl ... &` in a script ignores SIGINT
        raise KeyboardInterrupt
    signal.raise_signal(signal.SIGINT)


def _end_signals_like_sigint() -> None:
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        try:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue  # `nohup dasctl ...`: keep ignoring the hangup
            signal.signal(signum, _like_sigint)
        except (ValueError, OSError):  # main() called from a thread other than the main one
            pass


def _stdout_closed() -> int:
    """The reader of stdout went away (`dasctl ... | head`): say nothing, as `cat` would, and make sure
    Python's own flush at exit does not fail a second time (the advice of Python's signal docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass
    from dasctl.errors import ExitCode

    return int(ExitCode.STDOUT_CLOSED)


def _is_broken_pipe(error: BaseException | None) -> bool:
    return isinstance(error, OSError) and error.errno == errno.EPIPE


def main(argv: list[str] | None = None) -> int:
    """Run dasctl; map every outcome to the exit codes of docs/architecture.md §5."""
    args = sys.argv[1:] if argv is None else list(argv)
    _end_signals_like_sigint()
    code = _run(args)
    try:
        sys.stdout.flush()  # here, not at exit, where a closed stdout would be a traceback and exit 120
    except BrokenPipeError:
        closed = _stdout_closed()
        return closed if code == 0 else code
    except (OSError, ValueError):
        pass
    return code


def _run(args: list[str]) -> int:
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
        if _is_broken_pipe(exit_.__context__):
            return _stdout_closed()  # click turns EPIPE into exit 1; it is no bug
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
        return _stdout_closed()
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

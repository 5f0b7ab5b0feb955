"""Entry point. Kept free of heavy imports so `dasctl --version` starts fast."""

from __future__ import annotations

import errno
import gc
import os
import signal
import sys
import traceback
from types import FrameType
from typing import Any


def _report(message: str, hint: str | None, color: bool) -> None:
    from dasctl.safe_text import line  # messages carry speaker ids, paths and library errors

    prefix = "\x1b[1;31merror:\x1b[0m" if color else "error:"
    print(f"dasctl: {prefix} {line(message)}", file=sys.stderr)
    if hint:
        print(f"  {line(hint)}", file=sys.stderr)


def _like_sigint(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP take Ctrl-C's path, whoever handles SIGINT at the moment: Python's
    KeyboardInterrupt, asyncio's runner (cancels the main task, so sessions close), or a command's own
    loop handler (watch's graceful stop). Temporary files go away in the same `finally` blocks."""
    note_signal(signum)
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


def _traceback_text() -> str:
    """The current exception's traceback for -vv: redacted, and escaped as every other line is."""
    from dasctl.logs import redact
    from dasctl.safe_text import line

    return line(redact(traceback.format_exc()), keep_newlines=True)


#: signals dasctl's handlers saw: the exit is 130 even when the KeyboardInterrupt they raised was swallowed
#: (raised inside a weakref callback or a __del__, Python only prints it), or came once the work was over
_late_signals: list[int] = []


def note_signal(signum: int) -> None:
    """Remember that a signal asked this run to end (every handler of dasctl's calls it)."""
    import warnings

    _late_signals.append(signum)
    # sessions cut short on purpose leave coroutines never awaited: not worth a warning on the way out
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited")


def _note_late_signal(signum: int, frame: FrameType | None) -> None:
    note_signal(signum)


def _quiet_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """Errors Python can only print (in a __del__, a weakref callback), mostly objects half made when a
    signal landed: a traceback only at -vv, as for every other error."""
    from dasctl.cli import common

    # a signal that lands while dasctl.cli.common is still being imported finds it without OPTIONS: the
    # options are not parsed yet, so this is not -vv (an AttributeError here was a traceback on stderr)
    options = getattr(common, "OPTIONS", None)
    if options is not None and options.verbosity >= 2:
        sys.__unraisablehook__(unraisable)


def _finishing() -> None:
    """From here on a signal is only noted (the exit code says so): raised as KeyboardInterrupt while the
    last line is flushed, or while the interpreter exits, it would be a traceback, or a death by SIGINT."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        try:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, _note_late_signal)
        except (ValueError, OSError):  # not the main thread
            pass


#: The garbage collector's first threshold in the program (Python's default: 700 new objects). A command
#: spends most of its start importing (typer, aiohttp, socketio, numpy: some 50,000 objects that live as
#: long as it does), and at 700 about 120 collections ran during a session command's imports, finding
#: nothing to free: 52-57 ms of their 361-378 ms of CPU, 11-12 ms of 314-340 at this threshold. gc still
#: collects, after every 50,000 new objects, so garbage in cycles stays bounded in a long `watch`.
GC_THRESHOLD = 50_000
#: numpy's OpenBLAS starts a thread per core when it loads, and they spin waiting for work dasctl never
#: gives them (its arrays are per-sample arithmetic, the emulator's matrices a few hundred rows): 70 ms of
#: CPU per process on 2 cores (`python -c "import numpy"`: 0.18 -> 0.11 CPU-s). The program asks for one
#: thread unless the user chose otherwise; the Python API leaves its caller's process as it is.
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "1")
#: aiohttp makes two default TLS contexts as it is imported, reading the system's trust store into each
#: (40 ms of CPU in every session process: `register --speed 0` 350 ms), and dasctl gives aiohttp a
#: context of its own for every connection. The program has that module's default contexts read the trust
#: at their first handshake instead (dasctl.net.default_trust_read_at_first_handshake); the Python API
#: leaves its caller's imports alone.
DEFAULT_TRUST_DEFERRED_IN = "aiohttp.connector"


class _DefaultTrustDeferred:
    """An import hook for DEFAULT_TRUST_DEFERRED_IN alone, used once (then it leaves sys.meta_path)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != DEFAULT_TRUST_DEFERRED_IN:
            return None
        from importlib.machinery import PathFinder

        sys.meta_path.remove(self)
        spec = PathFinder.find_spec(name, path, target)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_with_trust_deferred(module: Any) -> None:
            from dasctl.net import default_trust_read_at_first_handshake

            with default_trust_read_at_first_handshake():
                exec_module(module)

        loader.exec_module = exec_with_trust_deferred  # type: ignore[method-assign]
        return spec


def main(argv: list[str] | None = None) -> int:
    """Run dasctl; map every outcome to the exit codes of docs/architecture.md §5. A signal at any moment
    is exit 130 (141 when stdout was closed), never a traceback or a death by the signal."""
    if argv is None:  # the program itself; a caller's process keeps its own gc and BLAS settings
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
        os.environ.setdefault(*BLAS_THREADS)  # before anything imports numpy
        if DEFAULT_TRUST_DEFERRED_IN not in sys.modules:
            sys.meta_path.insert(0, _DefaultTrustDeferred())
    from dasctl.errors import ExitCode

    _late_signals.clear()
    before = _handlers() if argv is not None else {}  # called in a process that goes on: give them back
    try:
        code = _main(argv)
    except KeyboardInterrupt:  # a signal between the command's own handlers and _finishing
        _finishing()
        code = int(ExitCode.INTERRUPTED)
    for signum, handler in before.items():
        try:
            signal.signal(signum, handler)
        except (ValueError, TypeError, OSError):  # not the main thread, or a handler from C
            pass
    if argv is None and _block_late_signals():
        note_signal(signal.SIGTERM)  # one came while the last cleanups ran: the exit code says so
    if _late_signals and code != ExitCode.STDOUT_CLOSED:
        code = int(ExitCode.INTERRUPTED)
    if argv is None:
        _exit_now(code)
    return code


def _block_late_signals() -> bool:
    """Hold SIGINT, SIGTERM and SIGHUP back until the process ends (a pending one dies with it): Python's
    finalization gives them their default action again, so one landing while the interpreter shuts down
    was a death by the signal (-15, -2), seen under load. True when one was already pending."""
    wanted = set()
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            wanted.add(signum)
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
        return bool(wanted & set(signal.sigpending()))
    except (AttributeError, OSError, ValueError):  # no POSIX signal masks here, or not the main thread
        return False


def _exit_now(code: int) -> None:
    """End the program here, with its exit code, without the interpreter's finalization: it gives SIGINT,
    SIGTERM and SIGHUP their default action back while threads may still take them (a late signal was a
    death by it, -15, under load), and CPython remembers a KeyboardInterrupt that passed through some of
    its C frames even when dasctl caught it, ending the process by SIGINT (-2). Every cleanup of dasctl's
    has run by now; the atexit functions (logging's flush among them) and the buffers are what is left."""
    import atexit

    try:
        atexit._run_exitfuncs()
    except Exception:  # an exit function's failure must not change the exit code
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _handlers() -> dict[int, Any]:
    found: dict[int, Any] = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            found[signum] = signal.getsignal(signum)
    return found


def _main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    _end_signals_like_sigint()
    if argv is None:  # the program itself, not a caller's process
        sys.unraisablehook = _quiet_unraisable
    code = _run(args)
    _finishing()
    try:
        sys.stdout.flush()  # here, not at exit, where a closed stdout would be a traceback and exit 120
    except BrokenPipeError:
        closed = _stdout_closed()
        return closed if code == 0 else code
    except (OSError, ValueError):
        pass
    return code


def _caused_by_interrupt(error: BaseException) -> bool:
    """A KeyboardInterrupt that Python wrapped on its way (a signal while a class was being made becomes
    "RuntimeError: Error calling __set_name__"): an interruption, not a bug."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


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
        from dasctl.safe_text import line

        print(line(str(code)), file=sys.stderr)
        return 1
    except DasctlError as error:
        if common.OPTIONS.verbosity >= 2:
            sys.stderr.write(_traceback_text())
        _report(redact(error.message), redact(error.hint) if error.hint else None, common.color_stderr())
        return int(error.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return _stdout_closed()
    except Exception as error:  # a bug: say so plainly, traceback only at -vv
        if _caused_by_interrupt(error):
            return int(ExitCode.INTERRUPTED)
        if common.OPTIONS.verbosity >= 2:
            sys.stderr.write(_traceback_text())
            _report(f"internal error: {type(error).__name__}", None, common.color_stderr())
        else:
            _report(
                f"internal error: {type(error).__name__}: {redact(str(error))}",
                "This is a bug in dasctl. Run again with -vv for the traceback, and report it.",
                common.color_stderr(),
            )
        return int(ExitCode.INTERNAL)
    except BaseException as error:
        # asyncio.CancelledError out of a command's event loop: a signal cancelled it where the command had
        # no handler of its own (asyncio is not imported here: `dasctl --version` stays fast)
        if type(error).__name__ == "CancelledError" or _caused_by_interrupt(error):
            return int(ExitCode.INTERRUPTED)
        raise
    return 0

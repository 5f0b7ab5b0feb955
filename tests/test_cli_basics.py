"""The command line's frame: version, help, usage errors, and how errors become exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dasctl.errors import (
    AudioError,
    AuthError,
    BatchFailed,
    ExitCode,
    Interrupted,
    ServiceRejected,
    ServiceUnavailable,
    UsageError,
    exit_code_for_event,
    is_retryable,
)
from dasctl.events import (
    ConsumerReady,
    ServiceEvent,
    SessionError,
    SessionResult,
    VadStatus,
    parse_event,
)


def test_version(dasctl):
    result = dasctl("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("dasctl ")
    assert result.stderr == ""


def test_help_lists_commands_and_exit_codes(dasctl):
    result = dasctl("--help")
    assert result.returncode == 0
    for command in ("login", "register", "watch", "serve", "transcode", "config", "auth", "logout"):
        assert command in result.stdout
    # the help text wraps with the terminal width: compare with white space folded
    assert "130 interrupted" in " ".join(result.stdout.split())


def test_unknown_command_is_a_usage_error(dasctl):
    result = dasctl("frobnicate")
    assert result.returncode == 2
    assert result.stderr.startswith("dasctl: error: unknown command 'frobnicate' for `dasctl`")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unknown_option_is_a_usage_error(dasctl):
    result = dasctl("--no-such-flag")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("x"), 2),
        (AudioError("x"), 3),
        (AuthError("x"), 4),
        (ServiceRejected("x"), 5),
        (ServiceUnavailable("x"), 6),
        (BatchFailed("x"), 7),
        (Interrupted("x"), 130),
    ],
)
def test_error_classes_carry_design_exit_codes(error, code):
    assert int(error.exit_code) == code


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ("result-success", 0),
        ("result-fail-spoof", 5),
        ("result-fail-score", 5),
        ("error-parameters", 5),
        ("error-audio", 5),
        ("error-das-Peak", 6),
        ("error-consumer-not-ready", 6),
        ("result-fail-something-new", 5),
        ("error-something-new", 6),
    ],
)
def test_terminal_events_map_to_exit_codes(event, code):
    assert exit_code_for_event(event) == code


def test_only_the_unavailable_class_is_retryable():
    assert is_retryable(ExitCode.UNAVAILABLE)
    assert not any(is_retryable(c) for c in ExitCode if c != ExitCode.UNAVAILABLE)


def test_parse_event_is_lenient_and_typed():
    ready = parse_event("info-consumer-ready", ({"event": "info-consumer-ready", "content": "ready"},))
    assert isinstance(ready, ConsumerReady) and not ready.terminal
    vad = parse_event("info-vad-status", ({"audio_seconds": "5.13", "vad_percentage": 102, "new": 1},))
    assert isinstance(vad, VadStatus) and vad.audio_seconds == 5.13 and vad.vad_percentage == 102
    result = parse_event(
        "result-success",
        ({"authenticity": 0.99, "voice_audio_collected": 5.13, "credential": "abc"}, b"\xff\x7f"),
    )
    assert isinstance(result, SessionResult) and result.success and result.terminal
    assert result.credential == "abc" and result.collected_audio == b"\xff\x7f"
    error = parse_event("error-das-Peak", ({"content": "backend down"},))
    assert isinstance(error, SessionError) and error.terminal and error.content == "backend down"
    unknown = parse_event("info-new-thing", ("not a dict",))
    assert type(unknown) is ServiceEvent and not unknown.terminal
    assert parse_event("info-vad-status", ()).audio_seconds == 0.0


def test_internal_errors_are_one_line_without_traceback():
    # A bug anywhere must surface as exit 1 with a short message, not a traceback.
    code = (
        "import sys; from dasctl.cli import main;"
        "from dasctl.cli.app import app;"
        "app.command('boom')(lambda: 1/0);"
        "sys.exit(main(sys.argv[1:]))"
    )
    quiet = subprocess.run([sys.executable, "-c", code, "boom"], capture_output=True, text=True)
    assert quiet.returncode == 1
    assert "internal error: ZeroDivisionError" in quiet.stderr
    assert "Traceback" not in quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code, "-vv", "boom"], capture_output=True, text=True)
    assert loud.returncode == 1
    assert "Traceback" in loud.stderr


def test_a_library_task_failing_unseen_is_one_line_and_its_traceback_only_at_vv() -> None:
    # asyncio reports an exception nobody retrieved (a library's background task, as a command ends)
    code = """if True:
        import asyncio, gc, sys
        from dasctl.cli import main
        from dasctl.cli.app import app

        async def job():
            async def fail():
                raise ValueError("in flight\\nat disconnect")
            task = asyncio.ensure_future(fail())
            await asyncio.sleep(0.01)
            del task
            gc.collect()

        app.command("unseen")(lambda: asyncio.run(job()))
        sys.exit(main(sys.argv[1:]))
    """
    quiet = subprocess.run([sys.executable, "-c", code, "unseen"], capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr
    (line,) = quiet.stderr.splitlines()
    assert "Task exception was never retrieved" in line and "ValueError: in flight at disconnect" in line
    assert line.endswith("(the traceback with -vv)")
    loud = subprocess.run([sys.executable, "-c", code, "-vv", "unseen"], capture_output=True, text=True)
    assert "Traceback" in loud.stderr and "ValueError: in flight" in loud.stderr


def test_dasctl_errors_print_message_and_hint():
    code = (
        "import sys; from dasctl.cli import main; from dasctl.cli.app import app;"
        "from dasctl.errors import AuthError\n"
        "def f():\n    raise AuthError('not logged in', 'Run `dasctl login`.')\n"
        "app.command('fail')(f); sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run([sys.executable, "-c", code, "fail"], capture_output=True, text=True)
    assert result.returncode == 4
    assert result.stderr.splitlines() == ["dasctl: error: not logged in", "  Run `dasctl login`."]
    assert result.stdout == ""

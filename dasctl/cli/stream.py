"""`dasctl stream` (the platform's part of a live call: the audio of a call id) and `dasctl call-id`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer

from dasctl.cli import common
from dasctl.cli.transcode import ChannelOption
from dasctl.cli.usage import compose_help
from dasctl.errors import Interrupted, UsageError

if TYPE_CHECKING:
    from dasctl.stream import StreamOutcome, StreamProgress

HELP = compose_help(
    "Send recordings as a call's audio to the service's audio consumer (the platform's part of a live call).",
    """
    Audio only: opens the profile's audio channel (--protocol) for the call id and sends the recordings one
    after another, paced (--speed, 1 = real time), as Genesys AudioHook or Twilio Media Streams would. The
    signalling for that call id is someone else's: `dasctl register --attach CALL_ID` in another terminal,
    or your integration. The service refuses audio for a call id no session waits for; --wait SECONDS keeps
    trying until the session appears, so either side may start first. A progress line goes to stderr;
    nothing goes to stdout.
    """,
    examples=[
        "dasctl stream call.wav --call-id 4f0c2a61-52f5-4b8e-9a39-3a4f1c0a9e7d --wait 30",
        "dasctl stream hello.wav name.wav --call-id $ID --protocol audiohook",
        "ID=$(dasctl call-id)   # then `dasctl register --attach $ID --speaker alice` elsewhere",
    ],
    exit_codes="""
    0 the audio was sent (the service closed the channel when it had enough, or the audio ended)
    2 usage error
    3 audio unusable
    4 the audio consumer refused the handshake (API key, signature, token)
    6 unreachable, refused the call id (after --wait), or the channel closed early
    130 interrupted
    """,
)

CALL_ID_HELP = compose_help(
    "Print a fresh call id (a UUID) for a live call, and how to use it with the local emulator.",
    """
    The call id ties a call's audio to its session. Give the same one to `dasctl register --attach` (the
    signalling) and to `dasctl stream --call-id` or the platform (the audio). The id goes to stdout; the two
    command lines for the local emulator go to stderr.
    """,
    examples=["dasctl call-id", "ID=$(dasctl call-id)"],
)

# register and verify take these (a live call: signalling only)
AttachOption = Annotated[
    str | None,
    typer.Option(
        "--attach",
        metavar="CALL_ID",
        help="A live call: drive only the signalling for this call id (or `new`); the platform sends "
        "the audio (AudioHook / Media Streams, or `dasctl stream`). No FILE then.",
        show_default=False,
    ),
]
AttachWaitOption = Annotated[
    float,
    typer.Option(
        "--wait", metavar="SECONDS", help="With --attach: how long the call's first audio may take to arrive."
    ),
]

#: The progress line is redrawn at most this often on a terminal.
REDRAW_INTERVAL = 0.1


class ProgressLine:
    """stream's own small line on stderr: `\\r`-redrawn on a terminal, a line per change otherwise."""

    def __init__(self, stream: IO[str], live: bool, quiet: bool, call_id: str) -> None:
        self.stream = stream
        self.live = live
        self.quiet = quiet
        self.call_id = call_id
        self.last = ""
        self.last_state = ""
        self.drawn_at = 0.0

    def text(self, progress: StreamProgress) -> str:
        position = f"{progress.position:.1f} s"
        if progress.duration:
            position += f" of {progress.duration:.1f} s"
        if progress.state == "streaming":
            return f"stream: call {self.call_id}: sent {position}"
        if progress.state == "waiting for the session":
            tries = f"{progress.attempts} tries"
            return f"stream: call {self.call_id}: refused, trying again ({tries}): {progress.refusal}"
        return f"stream: call {self.call_id}: {progress.state} at {position}"

    def update(self, progress: StreamProgress) -> None:
        # here, not at the top: dasctl.stream imports asyncio, which every other command would pay for
        from dasctl.stream import STREAMING

        if self.quiet:
            return
        changed = progress.state != self.last_state
        self.last_state = progress.state
        if self.live:
            now = time.monotonic()
            if changed or now - self.drawn_at >= REDRAW_INTERVAL:
                self.drawn_at = now
                line = self.text(progress)
                self.stream.write("\r" + line + " " * max(0, len(self.last) - len(line)))
                self.stream.flush()
                self.last = line
        elif changed and progress.state != "done" and (progress.attempts == 1 or progress.state == STREAMING):
            # while waiting for the session, the first refusal says it all: no line per try
            self.stream.write(self.text(progress) + "\n")
            self.stream.flush()

    def end(self, outcome: StreamOutcome | None) -> None:
        if self.quiet:
            return
        if self.live and self.last:
            self.stream.write("\n")
        if outcome is not None:
            how = (
                "the service closed the channel: it had enough audio"
                if outcome.closed_by_service
                else "all the audio was sent; the channel is closed"
            )
            self.stream.write(f"stream: call {outcome.call_id}: {how} ({outcome.position:.2f} s)\n")
        self.stream.flush()


def stream(
    files: Annotated[
        list[str], typer.Argument(metavar="FILE", help="Recordings to send, in order; - reads stdin.")
    ],
    call_id: Annotated[
        str,
        typer.Option("--call-id", metavar="UUID", help="The call the audio belongs to (its session's id)."),
    ],
    protocol: common.ProtocolOption = "twilio",
    speed: common.SpeedOption = 1.0,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            help="Keep trying a refused open this long (the session may come later).",
        ),
    ] = 0.0,
    channel: ChannelOption = "mix",
    timeout: common.TimeoutOption = 60.0,
    quiet: common.QuietOption = False,
    profile: common.ProfileOption = None,
) -> None:
    """Send recordings as a call's audio to the audio consumer."""
    import asyncio
    import contextlib

    from dasctl.audio import open_audio, parse_channel
    from dasctl.config import load_profile
    from dasctl.net import NetworkSettings
    from dasctl.session import parse_call_id
    from dasctl.stream import ChainedAudio, StreamOptions, stream_call

    environment = common.environment()
    common.check_protocol(protocol)
    call = parse_call_id(call_id, "--call-id")
    if files.count("-") > 1:
        raise UsageError("stdin (-) can be given only once")
    for name in files:
        if name != "-" and not Path(name).is_file():
            raise UsageError(f"{name}: no such file", "Check the path; use - to read the audio from stdin.")
    if speed < 0:
        raise UsageError(f"--speed {speed:g} is negative", "Use 1 for real time, 0 for as fast as possible.")
    if wait < 0 or timeout <= 0:
        raise UsageError("--wait must be 0 or more and --timeout positive")
    parse_channel(channel)
    resolved = load_profile(common.profile_name(profile))
    resolved.audio_url(protocol)  # no URL for this protocol: a usage error now, not after connecting
    options = StreamOptions(call_id=call, protocol=protocol, speed=speed, wait=wait, timeout=timeout)
    line = ProgressLine(environment.stderr, environment.live_display, quiet or environment.quiet, call)
    outcome: StreamOutcome | None = None
    try:
        with contextlib.ExitStack() as opened:
            # every recording is opened (and checked) before the channel: a bad third file costs nothing
            parts = [opened.enter_context(open_audio(name, channel=channel)) for name in files]
            network = NetworkSettings.from_profile(resolved)
            outcome = common.run_sessions(
                stream_call(ChainedAudio(list(parts)), options, resolved, network, line.update)
            )
    except (KeyboardInterrupt, asyncio.CancelledError):
        line.end(None)
        raise Interrupted("interrupted; the audio channel was closed") from None
    except BaseException:
        line.end(None)
        raise
    line.end(outcome)


def call_id() -> None:
    """Print a fresh call id."""
    from dasctl.config import load_profile
    from dasctl.session.attach import new_call_id, stream_command

    call = new_call_id()
    print(call)
    sys.stdout.flush()
    try:
        local = load_profile(common.profile_name(None)).is_local
    except Exception:  # a broken profiles file: the id is still good
        local = False
    if local and not common.OPTIONS.quiet:
        common.say("with the local emulator (`dasctl serve`), in two terminals:")
        common.say(f"  dasctl register --attach {call} --speaker SPEAKER")
        common.say(f"  {stream_command(call, 'twilio')}")


def install(app: typer.Typer) -> None:
    """Add this module's commands to the application."""
    app.command("stream", help=HELP)(stream)
    app.command("call-id", help=CALL_ID_HELP)(call_id)

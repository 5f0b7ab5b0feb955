"""Progress of register sessions behind one small interface: rich live bar, plain lines, NDJSON events, none.

Chosen once from the Environment: the live bar only on an interactive stderr; plain lines otherwise
(sparse, never `\\r`); nothing with --quiet. `--events` adds NDJSON lines on stdout. Rich is imported
here and in the CLI only.
"""

from __future__ import annotations

import math
import time
from typing import IO, TYPE_CHECKING, Any, Protocol

from dasctl import results, session
from dasctl.batch import NoProgress
from dasctl.display import fit_name
from dasctl.safe_text import line, quoted

if TYPE_CHECKING:
    from dasctl.environment import Environment
    from dasctl.session import Progress

#: The live bar redraws at most this often (it is also redrawn on every state change).
REDRAW_INTERVAL = 0.05
#: Widest file label in the live bar: the whole line (label, bar, voice, position, time left, state)
#: fits in 90 columns.
LABEL_WIDTH = 20
#: Columns of everything on the bar's line but the name: bar (10), voice (19), position (up to 17),
#: time left (5), state (up to 21) and the spaces between them.
BAR_COLUMNS = 80

_STATE_TEXT = {
    session.CONNECTING: "connecting",
    session.INITIALIZING: "initializing",
    session.STREAMING: "streaming audio",
    session.PAUSED: "paused by the service",
    session.WAITING: "waiting for result",
    session.DONE: "done",
}


class RegisterDisplay(Protocol):
    """What `dasctl register` tells the display, file by file."""

    def begin(self, name: str, index: int, total: int) -> None: ...

    def update(self, progress: Progress) -> None: ...

    def end(self) -> None: ...


def voice_text(progress: Progress) -> str:
    """`voice 2.10/5 s  42%`: the figure the bar is about."""
    return f"voice {progress.voice_seconds:.2f}/{progress.target_seconds:g} s {progress.vad_percentage:3d}%"


def state_text(progress: Progress) -> str:
    if progress.state == session.DONE and progress.event is not None:
        return progress.event.name
    return _STATE_TEXT.get(progress.state, progress.state)


def short_name(name: str, width: int = LABEL_WIDTH) -> str:
    """The file's base name, cut in the middle only when longer than `width`."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1] or name
    return fit_name(base, width)


def label_width(columns: int | None, prefix: str = "") -> int:
    """Room for the file's name on the bar's line: what the terminal has beyond the other columns."""
    if not columns:
        return LABEL_WIDTH
    return max(LABEL_WIDTH, columns - BAR_COLUMNS - len(prefix))


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class Pace:
    """Where the session is in the file and how long it has left, at the speed audio is going out.

    The session ends when the service has enough voice, often before the file does: the estimate is
    the sooner of the file's end and the point where, at the voice density heard so far, the voice
    target would be reached. None until there is a speed to go by."""

    def __init__(self) -> None:
        self.streaming_since: float | None = None

    def observe(self, progress: Progress) -> None:
        if self.streaming_since is None and progress.state == session.STREAMING:
            self.streaming_since = progress.elapsed - progress.audio_seconds_sent

    def position(self, progress: Progress) -> str:
        """`audio 0:12/0:52` (or `audio 0:12` when the length is unknown, e.g. stdin)."""
        if progress.state in (session.AWAITING_AUDIO, session.HEARING):
            return "live call"  # the platform sends the audio (--attach): none of it is ours to count
        sent = clock(progress.audio_seconds_sent)
        if progress.audio_duration:
            return f"audio {sent}/{clock(progress.audio_duration)}"
        return f"audio {sent}"

    def remaining(self, progress: Progress) -> float | None:
        if self.streaming_since is None or progress.state != session.STREAMING:
            return None
        streamed_for = progress.elapsed - self.streaming_since
        sent = progress.audio_seconds_sent
        if streamed_for <= 0.5 or sent <= 0:
            return None
        speed = sent / streamed_for  # audio seconds per wall second (1 at --speed 1)
        audio_left: float | None = None
        if progress.audio_duration:
            audio_left = max(0.0, progress.audio_duration - sent)
        voice = progress.voice_seconds
        if voice > 0:
            voice_left = max(0.0, progress.target_seconds - voice) * sent / voice
            audio_left = voice_left if audio_left is None else min(audio_left, voice_left)
        return None if audio_left is None else audio_left / speed

    def eta(self, progress: Progress, words: bool = True) -> str:
        """`~0:40 left` (the bar, short of room, says `~0:40`)."""
        left = self.remaining(progress)
        if left is None or progress.vad_percentage >= 100:
            return ""
        return f"~{clock(math.ceil(left))}" + (" left" if words else "")


class PlainLines:
    """For logs and pipes: one line per state change, per quarter of the voice target and per quarter
    of the file, never `\\r`. Lines come in the order things happened: the last voice figure heard
    while streaming is printed before "waiting for result"."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.begin("", 0, 1)

    def say(self, text: str) -> None:
        self.stream.write(line(f"{self.name}: {text}") + "\n")
        self.stream.flush()

    def begin(self, name: str, index: int, total: int) -> None:
        self.name = quoted(name) if total == 1 else f"[{index + 1}/{total}] {quoted(name)}"
        self.state = ""
        self.quarter = -1
        self.file_quarter = 0
        self.said_voice = ""
        self.said_line = ""
        self.started = time.monotonic()
        self.pace = Pace()

    def progress_line(self, progress: Progress) -> None:
        text = f"{voice_text(progress)}, {self.pace.position(progress)}"
        eta = self.pace.eta(progress)
        line = f"{text}, {eta}" if eta else text
        if line != self.said_line:  # a voice quarter and a file quarter crossed together: say it once
            self.say(line)
        self.said_line = line
        self.said_voice = voice_text(progress)

    def update(self, progress: Progress) -> None:
        self.pace.observe(progress)
        if progress.state != self.state:
            leaving_stream = self.state == session.STREAMING
            self.state = progress.state
            if leaving_stream and progress.vad is not None and voice_text(progress) != self.said_voice:
                self.progress_line(progress)  # what was heard comes before what happened next
            if progress.state == session.DONE and progress.event is not None:
                # the display's own clock too: a session that took time never reads "after 0.0 s"
                took = max(progress.elapsed, time.monotonic() - self.started)
                self.say(f"{progress.event.name} after {took:.1f} s ({voice_text(progress).strip()})")
            elif progress.state == session.STREAMING:
                self.say(f"{_STATE_TEXT[progress.state]} (call id {progress.call_id})")
            else:
                self.say(_STATE_TEXT.get(progress.state, progress.state))
            return
        if progress.state not in (session.STREAMING, session.HEARING):
            if progress.vad is not None and progress.state != session.DONE:
                self.quarter = max(self.quarter, min(progress.vad_percentage // 25, 4))
            return
        quarter = min(progress.vad_percentage // 25, 4) if progress.vad is not None else 0
        file_quarter = 0
        if progress.audio_duration:
            file_quarter = min(int(4 * progress.audio_seconds_sent / progress.audio_duration), 4)
        if quarter > self.quarter or file_quarter > self.file_quarter:
            self.quarter = max(self.quarter, quarter)
            self.file_quarter = max(self.file_quarter, file_quarter)
            if quarter > 0 or file_quarter > 0:
                self.progress_line(progress)

    def end(self) -> None:
        pass


def _terminal_columns(stream: IO[str]) -> int | None:
    """The terminal's own width: an exported COLUMNS (which rich would take) goes stale on a resize."""
    import os

    try:
        return os.get_terminal_size(stream.fileno()).columns or None
    except (OSError, ValueError, AttributeError):
        return None


class LiveBar:
    """An interactive terminal: a rich bar of voice collected against the target, with where the file
    is and how long is left, redrawn in place."""

    def __init__(self, stream: IO[str], color: bool) -> None:
        from rich.console import Console

        self.console = Console(file=stream, force_terminal=True, no_color=not color, highlight=False)
        self.progress: Any = None
        self.task: Any = None
        self.last_draw = 0.0
        self.state = ""
        self.pace = Pace()

    def begin(self, name: str, index: int, total: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        prefix = f"[{index + 1}/{total}] " if total > 1 else ""
        self.pace = Pace()
        columns = _terminal_columns(self.console.file)
        if columns:
            self.console.width = columns
        label = prefix + short_name(quoted(name), label_width(columns, prefix))
        self.progress = Progress(
            # markup=False: the label is a file name and the state may be the service's event name
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=10),
            TextColumn("{task.fields[voice]}", markup=False),
            TextColumn("{task.fields[position]}", markup=False),
            TextColumn("{task.fields[eta]}", markup=False),
            TextColumn("{task.fields[state]}", markup=False),
            console=self.console,
            auto_refresh=False,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            label, total=100, voice="voice 0.0 s   0%", position="audio 0:00", eta="", state="connecting"
        )
        self.progress.refresh()

    def update(self, progress: Progress) -> None:
        if self.progress is None:
            return
        self.pace.observe(progress)
        now = time.monotonic()
        changed = progress.state != self.state
        self.state = progress.state
        state = quoted(state_text(progress))
        eta = self.pace.eta(progress, words=False)
        self.progress.update(
            self.task,
            completed=min(progress.vad_percentage, 100),
            voice=f"voice {progress.voice_seconds:.1f}/{progress.target_seconds:g} s "
            f"{progress.vad_percentage:3d}%",
            position=self.pace.position(progress),
            eta=eta or clock(progress.elapsed),
            state=state,
        )
        if changed or progress.event is not None or now - self.last_draw >= REDRAW_INTERVAL:
            self.last_draw = now
            self.progress.refresh()

    def end(self) -> None:
        if self.progress is not None:
            self.progress.refresh()
            self.progress.stop()
            self.progress = None


class EventLines:
    """--events: every service event as one NDJSON line on stdout (flushed), never the audio bytes."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.name = ""

    def begin(self, name: str, index: int, total: int) -> None:
        self.name = name

    def update(self, progress: Progress) -> None:
        if progress.event is not None:
            document = results.event_document(self.name, progress.call_id, progress.event, progress.elapsed)
            self.stream.write(results.json_line(document) + "\n")
            self.stream.flush()

    def end(self) -> None:
        pass


class Displays:
    """Several displays at once (a status display on stderr and NDJSON events on stdout)."""

    def __init__(self, *displays: RegisterDisplay) -> None:
        self.displays = displays

    def begin(self, name: str, index: int, total: int) -> None:
        for display in self.displays:
            display.begin(name, index, total)

    def update(self, progress: Progress) -> None:
        for display in self.displays:
            display.update(progress)

    def end(self) -> None:
        for display in self.displays:
            display.end()


def choose_display(environment: Environment, *, quiet: bool = False, events: bool = False) -> RegisterDisplay:
    """The display: live bar on a capable terminal, plain lines otherwise, none when quiet."""
    status: RegisterDisplay
    if quiet or environment.quiet:
        status = NoProgress()  # --quiet: nothing at all
    elif environment.live_display:
        status = LiveBar(environment.stderr, environment.color)
    else:
        status = PlainLines(environment.stderr)
    if events:
        return Displays(status, EventLines(environment.stdout))
    return status

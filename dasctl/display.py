"""Progress of register sessions behind one small interface: rich live bar, plain lines, NDJSON events, none.

Chosen once from the Environment: the live bar only on an interactive stderr; plain lines otherwise
(sparse, never `\\r`); nothing with --quiet. `--events` adds NDJSON lines on stdout. Rich is imported
here and in the CLI only.
"""

from __future__ import annotations

import time
from typing import IO, TYPE_CHECKING, Any, Protocol

from dasctl import results, session

if TYPE_CHECKING:
    from dasctl.environment import Environment
    from dasctl.session import Progress

#: The live bar redraws at most this often (it is also redrawn on every state change).
REDRAW_INTERVAL = 0.05
#: Widest file label in the live bar (the whole line must fit in 100 columns).
LABEL_WIDTH = 24

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
    """`voice 2.10/5.0 s  42%`: the figure the bar is about."""
    return f"voice {progress.voice_seconds:.2f}/{progress.target_seconds:g} s {progress.vad_percentage:3d}%"


def state_text(progress: Progress) -> str:
    if progress.state == session.DONE and progress.event is not None:
        return progress.event.name
    return _STATE_TEXT.get(progress.state, progress.state)


def short_name(name: str, width: int = LABEL_WIDTH) -> str:
    """The file's base name, cut in the middle when long, so the bar fits in 100 columns."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1] or name
    if len(base) <= width:
        return base
    keep = width - 1
    return base[: keep - keep // 2] + "…" + base[len(base) - keep // 2 :]


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class NoDisplay:
    """--quiet: nothing at all."""

    def begin(self, name: str, index: int, total: int) -> None:
        pass

    def update(self, progress: Progress) -> None:
        pass

    def end(self) -> None:
        pass


class PlainLines:
    """For logs and pipes: one line per state change and per quarter of the voice target, never `\\r`."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.name = ""
        self.state = ""
        self.quarter = -1

    def say(self, text: str) -> None:
        self.stream.write(f"{self.name}: {text}\n")
        self.stream.flush()

    def begin(self, name: str, index: int, total: int) -> None:
        self.name = name if total == 1 else f"[{index + 1}/{total}] {name}"
        self.state = ""
        self.quarter = -1

    def update(self, progress: Progress) -> None:
        if progress.state != self.state:
            self.state = progress.state
            if progress.state == session.DONE and progress.event is not None:
                self.say(
                    f"{progress.event.name} after {progress.elapsed:.1f} s ({voice_text(progress).strip()})"
                )
            elif progress.state == session.STREAMING:
                self.say(f"{_STATE_TEXT[progress.state]} (call id {progress.call_id})")
            else:
                self.say(_STATE_TEXT.get(progress.state, progress.state))
        if progress.vad is not None and progress.state != session.DONE:
            quarter = min(progress.vad_percentage // 25, 4)
            if quarter > self.quarter:
                self.quarter = quarter
                if quarter > 0:
                    self.say(f"{voice_text(progress)}, audio sent {progress.audio_seconds_sent:.1f} s")

    def end(self) -> None:
        pass


class LiveBar:
    """An interactive terminal: a rich bar of voice collected against the target, redrawn in place."""

    def __init__(self, stream: IO[str], color: bool) -> None:
        from rich.console import Console

        self.console = Console(file=stream, force_terminal=True, no_color=not color, highlight=False)
        self.progress: Any = None
        self.task: Any = None
        self.last_draw = 0.0
        self.state = ""

    def begin(self, name: str, index: int, total: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        label = short_name(name)
        if total > 1:
            label = f"[{index + 1}/{total}] {label}"
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[voice]}"),
            TextColumn("audio {task.fields[sent]}"),
            TextColumn("{task.fields[elapsed]}"),
            TextColumn("{task.fields[state]}"),
            console=self.console,
            auto_refresh=False,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            label, total=100, voice="voice 0.00 s   0%", sent="0.0 s", elapsed="0:00", state="connecting"
        )
        self.progress.refresh()

    def update(self, progress: Progress) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        changed = progress.state != self.state
        self.state = progress.state
        state = state_text(progress)
        self.progress.update(
            self.task,
            completed=min(progress.vad_percentage, 100),
            voice=voice_text(progress),
            sent=f"{progress.audio_seconds_sent:.1f} s",
            elapsed=clock(progress.elapsed),
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
        status = NoDisplay()
    elif environment.live_display:
        status = LiveBar(environment.stderr, environment.color)
    else:
        status = PlainLines(environment.stderr)
    if events:
        return Displays(status, EventLines(environment.stdout))
    return status

"""What `dasctl reenroll` shows on stderr: one live bar over the batch on a terminal, plain lines elsewhere.

The bar says how many speakers are done, failed and left, the rate and the time left; it is fed by the
core's callbacks (dasctl/reenroll.py), which knows nothing of rich.
"""

from __future__ import annotations

import time
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dasctl.environment import Environment
    from dasctl.reenroll import SpeakerResult

from dasctl.safe_text import line, quoted

PREFIX = "dasctl: reenroll:"


class ReenrollDisplay(Protocol):
    def begin(self, total: int, model_hash: str) -> None: ...

    def started(self, speaker: str) -> None: ...

    def finished(self, result: SpeakerResult) -> None: ...

    def end(self) -> None: ...


class Tally:
    """Done / failed / left, and the rate since the first result."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.failed = 0
        self.began = time.monotonic()

    @property
    def left(self) -> int:
        return max(0, self.total - self.done - self.failed)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.began
        finished = self.done + self.failed
        return finished / elapsed if elapsed > 0 and finished else 0.0

    def eta(self) -> str:
        rate = self.rate()
        if not rate:
            return "--:--"
        seconds = int(self.left / rate)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def count(self, result: SpeakerResult) -> None:
        if result.ok:
            self.done += 1
        else:
            self.failed += 1


def _failure_text(result: SpeakerResult) -> str:
    error = result.error
    message = error.message if error is not None else str((result.document.get("error") or {}).get("message"))
    return line(message if message.startswith(result.speaker) else f"{quoted(result.speaker)}: {message}")


class NoReenrollDisplay:
    def __init__(self) -> None:
        self.tally = Tally()

    def begin(self, total: int, model_hash: str) -> None:
        self.tally.total = total

    def started(self, speaker: str) -> None:
        pass

    def finished(self, result: SpeakerResult) -> None:
        self.tally.count(result)

    def end(self) -> None:
        pass


class PlainReenrollDisplay(NoReenrollDisplay):
    """One line per speaker finished, and a line at the start: fit for logs."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream

    def line(self, text: str) -> None:
        try:
            self.stream.write(f"{PREFIX} {line(text)}\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def begin(self, total: int, model_hash: str) -> None:
        super().begin(total, model_hash)
        self.line(f"{total} speaker(s) to re-enroll with model {quoted(model_hash)}")

    def finished(self, result: SpeakerResult) -> None:
        super().finished(result)
        tally = self.tally
        position = f"[{tally.done + tally.failed}/{tally.total}]"
        if result.ok:
            self.line(f"{position} {quoted(result.speaker)}: {result.status} "
                      f"(was {quoted(result.previous_model_hash)})")
        else:
            self.line(f"{position} {_failure_text(result)}")


class LiveReenrollDisplay(NoReenrollDisplay):
    """A terminal: one rich bar over the batch, redrawn in place; failures printed above it."""

    def __init__(self, stream: IO[str], color: bool) -> None:
        super().__init__()
        from rich.console import Console

        self.console = Console(file=stream, force_terminal=True, no_color=not color, highlight=False)
        self.progress: Any = None
        self.task: Any = None
        self.running = 0

    def begin(self, total: int, model_hash: str) -> None:
        super().begin(total, model_hash)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn(f"re-enroll → {quoted(model_hash)}", markup=False),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}", markup=False),
            TextColumn("{task.fields[rate]}", markup=False),
            TextColumn("ETA {task.fields[eta]}", markup=False),
            console=self.console,
            transient=False,
            refresh_per_second=8,
        )
        self.progress.start()
        self.task = self.progress.add_task("", total=total, counts=self._counts(), rate="", eta="--:--")

    def _counts(self) -> str:
        tally = self.tally
        return f"done {tally.done}  failed {tally.failed}  left {tally.left}  running {self.running}"

    def started(self, speaker: str) -> None:
        self.running += 1
        self._draw()

    def finished(self, result: SpeakerResult) -> None:
        super().finished(result)
        self.running = max(0, self.running - 1)
        if not result.ok and self.progress is not None:
            self.progress.console.print(f"{PREFIX} {_failure_text(result)}", markup=False)
        self._draw()

    def _draw(self) -> None:
        if self.progress is None:
            return
        tally = self.tally
        self.progress.update(
            self.task,
            completed=tally.done + tally.failed,
            counts=self._counts(),
            rate=f"{tally.rate():.1f}/s",
            eta=tally.eta(),
        )

    def end(self) -> None:
        if self.progress is not None:
            self._draw()
            self.progress.stop()
            self.progress = None


def choose_reenroll_display(environment: Environment, *, quiet: bool = False) -> ReenrollDisplay:
    """The live bar on a capable terminal, plain lines otherwise, nothing when quiet."""
    if quiet or environment.quiet:
        return NoReenrollDisplay()
    if environment.live_display:
        return LiveReenrollDisplay(environment.stderr, environment.color)
    return PlainReenrollDisplay(environment.stderr)

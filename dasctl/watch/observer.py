"""What the runner tells a display (status lines, files starting, progressing, finishing) and its totals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dasctl.session import Progress

class WatchObserver(Protocol):
    """What the runner tells a display: status lines, files starting, progressing and finishing."""

    def status(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def started(self, name: str, attempt: int) -> None: ...
    def progress(self, name: str, progress: Progress) -> None: ...
    def finished(self, name: str, report: dict[str, Any]) -> None: ...
    def totals(self, totals: WatchTotals) -> None: ...
    def close(self) -> None: ...


class SilentObserver:
    """An observer that shows nothing (library use, unit tests)."""

    def status(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def started(self, name: str, attempt: int) -> None:
        pass

    def progress(self, name: str, progress: Progress) -> None:
        pass

    def finished(self, name: str, report: dict[str, Any]) -> None:
        pass

    def totals(self, totals: WatchTotals) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class WatchTotals:
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    queued: int = 0
    waiting: int = 0  # seen, not settled
    retrying: int = 0
    skipped: int = 0  # already reported by an earlier run (the journal has their outcome)
    opted_out: int = 0  # skipped, never sent: the customer opted out


def summary_line(totals: WatchTotals, elapsed: float, failed_earlier: int, failed_dir: Path | None) -> str:
    """The closing line's figures: lines this run printed, files an earlier run reported, and whether
    some of those failed (so that a rerun that prints nothing still says not all is enrolled)."""
    summary = f"{totals.done} done, {totals.failed} failed"
    if totals.skipped:
        summary += f", {totals.skipped} already reported"
    if totals.opted_out:
        summary += f", {totals.opted_out} skipped (opted out)"
    summary += f" in {elapsed:.1f} s"
    if failed_earlier:
        where = failed_dir or "`dasctl credentials history SPEAKER`"
        summary += f"; {failed_earlier} failed earlier (see {where}; --retry-failed runs them again)"
    return summary

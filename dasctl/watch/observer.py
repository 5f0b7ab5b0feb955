"""What the runner tells a display (status lines, files starting, progressing, finishing) and its totals."""

from __future__ import annotations

from collections.abc import Mapping
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
    def skipped(self, name: str, reason: str) -> None: ...
    def summary(self, figures: dict[str, Any]) -> None: ...
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

    def skipped(self, name: str, reason: str) -> None:
        pass

    def summary(self, figures: dict[str, Any]) -> None:
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


def summary_line(totals: WatchTotals, elapsed: float, failed_earlier: int, failed_dir: Path | None,
                 skipped: Mapping[str, str] | None = None) -> str:
    """The closing line's figures: lines this run printed, files an earlier run reported, and whether
    some of those failed (so that a rerun that prints nothing still says not all is enrolled); then the
    files of the folder it did not take, and why (a cron job must not read "0 failed" as "all done")."""
    summary = f"{totals.done} done, {totals.failed} failed"
    if totals.skipped:
        summary += f", {totals.skipped} already reported"
    if totals.opted_out:
        summary += f", {totals.opted_out} skipped (opted out)"
    summary += f" in {elapsed:.1f} s"
    if failed_earlier:
        where = failed_dir or "`dasctl credentials history SPEAKER`"
        summary += f"; {failed_earlier} failed earlier (see {where}; --retry-failed runs them again)"
    if skipped:
        summary += f"; {skipped_text(skipped)}"
    return summary


#: names shown per reason in the summary (-v names every one as it is skipped)
SKIPPED_NAMES_SHOWN = 3


def skipped_text(skipped: Mapping[str, str]) -> str:
    """`5 files skipped: 3 not audio (notes.txt, a.csv, b.pdf), 2 excluded by --pattern (x.mp3, y.mp3)`."""
    by_reason = skipped_figures(skipped)
    parts = []
    for reason, names in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        shown = ", ".join(names[:SKIPPED_NAMES_SHOWN]) + (", ..." if len(names) > SKIPPED_NAMES_SHOWN else "")
        parts.append(f"{len(names)} {reason} ({shown})")
    count = len(skipped)
    return f"{count} file{'s' if count != 1 else ''} skipped: " + ", ".join(parts)


def skipped_figures(skipped: Mapping[str, str]) -> dict[str, list[str]]:
    """The skipped files by reason, for the JSON summary: {"not audio": ["notes.txt", ...], ...}."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in sorted(skipped.items()):
        by_reason.setdefault(reason, []).append(name)
    return by_reason

"""stdout's half of watch's exactly-once order: print a file's line, then mark it printed in the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dasctl.errors import ExitCode
from dasctl.watch.inbox import FileIdentity
from dasctl.watch.observer import WatchObserver, WatchTotals
from dasctl.watch.settings import TextOut, ndjson_line


class StdoutClosed(Exception):
    """The reader went away (`| head -n1`)."""


#: the last line of a piped run: what it did, so a cron job reads "all enrolled" from one line
SUMMARY_SCHEMA = "dasctl.watch-summary/1"


class ResultLines:
    """One line per finished file, each printed once per run; a kill between the line and its mark
    repeats it (identical) on the next run, and nothing else can."""

    def __init__(
        self,
        out: TextOut,
        render: Callable[[dict[str, Any]], str],
        observer: WatchObserver,
        totals: WatchTotals,
    ) -> None:
        self.out = out
        self.render = render
        self.observer = observer
        self.totals = totals
        self.closed = False
        self.printed: set[FileIdentity] = set()  # lines this run printed (replays included)
        self.any_failed = False

    def print(self, identity: FileIdentity, report: dict[str, Any], *, replay: bool = False) -> bool:
        """Print a line and count it; whether it was printed now (False: already printed this run).
        StdoutClosed the first time stdout is found closed. The caller marks it printed in the store
        (off the event loop, tried again while the store is unreachable)."""
        if self.closed or identity in self.printed:
            return False
        try:
            self.out.write(self.render(report) + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError, OSError) as error:
            self.closed = True
            raise StdoutClosed() from error
        self.printed.add(identity)
        if report.get("exit_code") == ExitCode.OK:
            self.totals.done += 1
        else:
            self.totals.failed += 1
            self.any_failed = True
        self.observer.finished(identity.relpath, report)
        if replay:
            self.observer.status(f"{identity.relpath}: reported from the store (finished by a past run)")
        return True

    def summary(self, figures: dict[str, Any]) -> None:
        """End NDJSON output with the run's summary (schema SUMMARY_SCHEMA). Only NDJSON: on a terminal
        the summary is stderr's closing line, and human result lines get no trailer."""
        if self.closed or self.render is not ndjson_line:
            return
        try:
            self.out.write(ndjson_line({"schema": SUMMARY_SCHEMA, **figures}) + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.closed = True

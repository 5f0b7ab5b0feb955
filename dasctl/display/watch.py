"""What `dasctl watch` shows on stderr: live bars on a terminal, sparse plain lines everywhere else."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any

from dasctl.environment import Environment
from dasctl.safe_text import line, quoted
from dasctl.watch import TextOut, WatchObserver, WatchTotals, ndjson_line

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID
    from rich.text import Text

    from dasctl.session import Progress
    from dasctl.watch.dry_run import Plan
    from dasctl.watch.status import InboxStatus

PREFIX = "dasctl: watch:"


def _failure_text(name: str, report: dict[str, Any]) -> str:
    """The error's message, which usually names the file already; else prefixed with it (quoted)."""
    message = str((report.get("error") or {}).get("message") or "failed")
    return message if message.startswith(name) else f"{quoted(name)}: {message}"


def human_result_line(report: dict[str, Any], speaker: Callable[[str], str | None]) -> str:
    """A result for a person: `done  file.wav  speaker  authenticity 0.99` or `failed  file.wav  reason`."""
    raw = str(report.get("file", ""))
    name = quoted(raw)
    if report.get("exit_code") == 0:
        parts = ["done  ", name, quoted(speaker(raw) or "")]
        if report.get("authenticity") is not None:
            parts.append(f"authenticity {report['authenticity']:.2f}")
        return "  ".join(part for part in parts if part)
    reason = _failure_text(raw, report)
    reason = reason[len(raw) + 2:] if reason.startswith(f"{raw}: ") else reason
    return f"failed  {name}  {line(reason)}"


class PlainWatchDisplay:
    """One line per status change, no redraws: fit for log files and supervisors' journals."""

    def __init__(
        self, stream: IO[str], *, verbosity: int = 0, quiet: bool = False, results_here: bool = False
    ) -> None:
        self.stream = stream
        self.verbosity = verbosity
        self.quiet = quiet
        self.results_here = results_here  # the terminal already shows each result line

    def _line(self, text: str) -> None:
        try:
            self.stream.write(f"{PREFIX} {line(text)}\n")
            self.stream.flush()
        except (OSError, ValueError):  # stderr gone: the journal and stdout still carry everything
            pass

    def status(self, message: str) -> None:
        if not self.quiet:
            self._line(message)

    def warning(self, message: str) -> None:
        self._line(f"warning: {message}")

    def started(self, name: str, attempt: int) -> None:
        if self.verbosity >= 1 and not self.quiet:
            self._line(f"{quoted(name)}: started" + (f" (attempt {attempt})" if attempt > 1 else ""))

    def progress(self, name: str, progress: Progress) -> None:
        pass

    def finished(self, name: str, report: dict[str, Any]) -> None:
        if self.quiet or self.results_here:
            return
        if report.get("exit_code") != 0:
            self._line(f"failed: {_failure_text(name, report)}")
        elif self.verbosity >= 1:
            self._line(f"done: {quoted(name)}")

    def totals(self, totals: WatchTotals) -> None:
        pass

    def skipped(self, name: str, reason: str) -> None:
        if self.verbosity >= 1 and not self.quiet:
            self._line(f"skipped {name}: {reason}")

    def summary(self, figures: dict[str, Any]) -> None:
        pass  # the closing status line says it in words

    def close(self) -> None:
        pass


class JsonWatchDisplay:
    """`--log-format json`: one JSON object per event on stderr (ts, level, msg, file, speaker, call_id,
    outcome, worker), for a log shipper. Never a credential: only named, plain fields are written."""

    def __init__(self, stream: IO[str], *, worker: str, verbosity: int = 0) -> None:
        self.stream = stream
        self.worker = worker
        self.verbosity = verbosity

    def _event(self, level: str, msg: str, **fields: object) -> None:
        from dasctl.logs import json_line

        try:
            self.stream.write(json_line(level, msg, worker=self.worker, **fields) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def status(self, message: str) -> None:
        self._event("info", message)

    def warning(self, message: str) -> None:
        self._event("warning", message)

    def started(self, name: str, attempt: int) -> None:
        self._event("info", "started", file=name, attempt=attempt)

    def progress(self, name: str, progress: Progress) -> None:
        pass

    def finished(self, name: str, report: dict[str, Any]) -> None:
        ok = report.get("exit_code") == 0
        outcome, error = report.get("outcome"), report.get("error")
        event = outcome.get("event") if isinstance(outcome, dict) else None
        error = error if isinstance(error, dict) else {}
        self._event(
            "info" if ok else "error", "done" if ok else _failure_text(name, report), file=name,
            speaker=report.get("speaker"), call_id=report.get("call_id"),
            outcome=event or (error or {}).get("kind") or ("done" if ok else "failed"),
            exit_code=report.get("exit_code"), attempts=report.get("attempts"),
        )

    def totals(self, totals: WatchTotals) -> None:
        pass

    def skipped(self, name: str, reason: str) -> None:
        self._event("info", f"skipped: {reason}", file=name, outcome="skipped")

    def summary(self, figures: dict[str, Any]) -> None:
        self._event("info", "summary", **figures)

    def close(self) -> None:
        pass


class _TotalsLine:
    """The bottom line of the live display, rendered from the runner's current totals."""

    def __init__(self) -> None:
        self.totals = WatchTotals()

    def __rich__(self) -> Any:
        from rich.text import Text

        t = self.totals
        text = Text()
        text.append(f"{t.done} done", style="green")
        text.append("  ")
        text.append(f"{t.failed} failed", style="red" if t.failed else "")
        text.append(f"  {t.in_flight} in flight  {t.queued} queued")
        if t.retrying:
            text.append(f"  {t.retrying} waiting to retry", style="yellow")
        if t.waiting:
            text.append(f"  {t.waiting} settling")
        return text


class LiveWatchDisplay:
    """One bar per file in flight (voice collected, as a share of what the service wants) plus totals."""

    def __init__(self, console: Console, *, results_here: bool = False, verbosity: int = 0) -> None:
        from rich.console import Group
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.verbosity = verbosity
        self.bars: RichProgress = Progress(
            # markup=False: the description is a file name, never rich markup
            TextColumn("{task.description}", justify="left", markup=False),
            BarColumn(bar_width=30),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[state]}", style="dim", markup=False),
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,
        )
        self.totals_line = _TotalsLine()
        self.live = Live(Group(self.bars, self.totals_line), console=console, refresh_per_second=8,
                         transient=True)
        self.tasks: dict[str, TaskID] = {}
        # Result lines print above the bars (console.print through the Live) instead of a done/failed line.
        self.results_here = results_here
        self.live.start()

    def _print(self, text: str | Text, **style: Any) -> None:
        try:
            self.live.console.print(text, **style)
        except OSError:  # the terminal hung up (EIO): the journal and stdout still carry everything
            pass

    def status(self, message: str) -> None:
        self._print(f"{PREFIX} {line(message)}", markup=False, highlight=False)

    def warning(self, message: str) -> None:
        self._print(f"{PREFIX} warning: {line(message)}", style="yellow", markup=False, highlight=False)

    def started(self, name: str, attempt: int) -> None:
        label = quoted(name) if attempt == 1 else f"{quoted(name)} (attempt {attempt})"
        if name in self.tasks:
            self.bars.update(self.tasks[name], description=label, completed=0, state="connecting")
        else:
            self.tasks[name] = self.bars.add_task(label, total=100, state="connecting")

    def progress(self, name: str, progress: Progress) -> None:
        task = self.tasks.get(name)
        if task is not None:
            self.bars.update(task, completed=min(100, progress.vad_percentage), state=progress.state)

    def finished(self, name: str, report: dict[str, Any]) -> None:
        task = self.tasks.pop(name, None)
        if task is not None:
            self.bars.remove_task(task)
        if self.results_here:
            return
        from rich.text import Text

        from dasctl.display.safe import data_text, line_text

        if report.get("exit_code") == 0:
            self._print(Text.assemble(("done", "green"), " ", data_text(name)), highlight=False)
        else:
            reason = line_text(_failure_text(name, report))
            self._print(Text.assemble(("failed", "red"), " ", reason), highlight=False)

    def totals(self, totals: WatchTotals) -> None:
        self.totals_line.totals = totals

    def skipped(self, name: str, reason: str) -> None:
        if self.verbosity >= 1:
            self.live.console.print(f"{PREFIX} skipped {quoted(name)}: {reason}", markup=False,
                                    highlight=False)

    def summary(self, figures: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        try:
            self.live.stop()
        except OSError:
            pass


class LiveResultLines:
    """Result lines printed through the Live's console: above the bars, never glued to or under them."""

    def __init__(self, display: LiveWatchDisplay) -> None:
        self.display = display

    def write(self, text: str, /) -> int:
        for text_line in text.splitlines():
            self.display.live.console.print(line(text_line), markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass


def _same_terminal(a: IO[str], b: IO[str]) -> bool:
    try:
        first, second = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (first.st_rdev, first.st_dev, first.st_ino) == (second.st_rdev, second.st_dev, second.st_ino)


def make_display(
    environment: Environment, *, human_results: bool = False, log_format: str = "text", worker: str = ""
) -> WatchObserver:
    """JSON events with --log-format json; else live bars when stderr is an interactive terminal, else
    plain lines."""
    if log_format == "json":
        return JsonWatchDisplay(environment.stderr, worker=worker, verbosity=environment.verbosity)
    results_here = human_results and _same_terminal(environment.stdout, environment.stderr)
    if environment.live_display:
        from rich.console import Console

        console = Console(file=environment.stderr, no_color=not environment.color, highlight=False)
        return LiveWatchDisplay(console, results_here=results_here, verbosity=environment.verbosity)
    return PlainWatchDisplay(environment.stderr, verbosity=environment.verbosity, quiet=environment.quiet,
                             results_here=results_here)


def result_output(
    environment: Environment,
    display: WatchObserver,
    *,
    json: bool,
    speaker: Callable[[str], str | None],
) -> tuple[TextOut, Callable[[dict[str, Any]], str]]:
    """Where result lines go and in which form: NDJSON unless stdout is a terminal (as gh does) or --json;
    on the terminal that shows the live bars, through the bars' console."""
    if json or not environment.stdout_isatty:
        return environment.stdout, ndjson_line

    def render(report: dict[str, Any]) -> str:
        return human_result_line(report, speaker)

    if isinstance(display, LiveWatchDisplay) and display.results_here:
        return LiveResultLines(display), render
    return environment.stdout, render


def print_plan(environment: Environment, plans: Iterable[Plan], *, json: bool) -> None:
    """`watch --dry-run`: a table on a terminal, one JSON object per file piped (or with --json); then
    the count of each action on stderr."""
    from collections import Counter

    from dasctl.results import json_line

    counts: Counter[str] = Counter()
    if json or not environment.stdout_isatty:
        for item in plans:
            counts[item.action] += 1
            environment.stdout.write(json_line(item.document()) + "\n")
        environment.stdout.flush()
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("FILE", "ACTION", "SPEAKER", "WHY"):
            table.add_column(column, overflow="fold")
        from dasctl.display.safe import data_text

        for item in plans:  # file names and speaker ids are not dasctl's: quoted, never read as markup
            counts[item.action] += 1
            table.add_row(data_text(item.file), item.action, data_text(item.speaker or ""),
                          data_text(item.reason or ""))
        Console(file=environment.stdout, no_color=not environment.color, highlight=False).print(table)
    if not environment.quiet:
        said = ", ".join(f"{count} {action}" for action, count in sorted(counts.items())) or "no files"
        environment.stderr.write(f"{PREFIX} dry run, nothing sent: {said}\n")


def print_status(environment: Environment, statuses: Iterable[InboxStatus], *, json: bool) -> None:
    """`watch status`: a few lines per inbox for people, one JSON object per inbox piped (or --json)."""
    from dasctl.results import json_line

    machine = json or not environment.stdout_isatty
    shown = 0
    for status in statuses:
        shown += 1
        if machine:
            environment.stdout.write(json_line(status.document()) + "\n")
            continue
        lines = [f"{status.inbox}  (store {status.store})"]
        if status.watchers:
            for watcher in status.watchers:
                held = f", {watcher.claims} file(s) in hand" if watcher.claims is not None else ""
                lines.append(f"  watcher {watcher.name} since {watcher.since or '?'}{held}")
        else:
            lines.append("  no watcher is working on it")
        left = f"{status.left}" + ("" if status.unseen is not None else " known to the store (the folder "
                                                                     "is not readable here)")
        lines.append(f"  {status.done} done, {status.failed} failed, {left} left")
        if status.oldest_waiting:
            lines.append(f"  oldest waiting: {status.oldest_waiting} (since {status.oldest_waiting_since})")
        environment.stdout.write("\n".join(lines) + "\n")
    if shown == 0 and not environment.quiet:
        environment.stderr.write(f"{PREFIX} the store has no watch state yet\n")
    environment.stdout.flush()

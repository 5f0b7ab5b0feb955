"""The journal file of earlier dasctl versions (`DIR/.dasctl-watch.jsonl`), read once to import it.

watch's state now lives in the store (state.py); an old journal is replayed here, imported, and left
alone. The words (states) are the same in both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dasctl.errors import UsageError
from dasctl.watch.inbox import FileIdentity

JOURNAL_SCHEMA = "dasctl.watch-journal/1"
DEFAULT_JOURNAL_NAME = ".dasctl-watch.jsonl"

# states of a recording
STARTED = "started"
DONE = "done"
FAILED = "failed"
RETRY = "retry"  # a transient failure; the file will be tried again
ABORTED = "aborted"  # cancelled by a shutdown; the file will be tried again on the next run
REPORTED = "reported"  # (old journal only) the stdout line for the latest final record was printed
FINAL_STATES = (DONE, FAILED)


@dataclass(slots=True)
class JournalEntry:
    """What is known about one file identity: its state, attempts, and its final report until printed."""

    state: str
    attempts: int = 0
    final: dict[str, Any] | None = None  # the latest done/failed report, kept only until it is reported
    reported: bool = False  # whether the latest done/failed report was printed
    call_id: str | None = None


class LegacyJournal:
    """An old journal file, replayed: what each file identity reached, in the order they finished."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.entries: dict[FileIdentity, JournalEntry] = {}
        # identities in the order they last reached a final state (a dict: ordered, O(1) to move)
        self.order: dict[FileIdentity, None] = {}
        self.skipped_lines = 0

    @classmethod
    def read(cls, path: Path) -> LegacyJournal:
        """Replay the file (a line torn by a crash never counted); UsageError when it cannot be read."""
        journal = cls(path)
        try:
            with journal.path.open("rb") as handle:
                for raw in handle:
                    try:
                        record = json.loads(raw)
                    except ValueError:
                        journal.skipped_lines += 1
                        continue
                    if isinstance(record, dict) and record.get("schema") == JOURNAL_SCHEMA:
                        journal._apply(record)
                    else:
                        journal.skipped_lines += 1
        except OSError as error:
            raise UsageError(f"cannot read the journal {path}: {error.strerror}") from error
        return journal

    def _apply(self, record: dict[str, Any]) -> None:
        identity = FileIdentity.from_record(record)
        state = record.get("state")
        if identity is None or not isinstance(state, str):
            self.skipped_lines += 1
            return
        entry = self.entries.get(identity)
        if entry is None:
            entry = self.entries[identity] = JournalEntry(state)
        attempt = record.get("attempt")
        # Only attempts that ended count against a file's retries; one cut short by a crash does not.
        if isinstance(attempt, int) and state in (RETRY, *FINAL_STATES):
            entry.attempts = max(entry.attempts, attempt)
        if isinstance(record.get("call_id"), str):
            entry.call_id = record["call_id"]
        if state == REPORTED:
            if entry.final is not None:
                entry.reported = True
            return
        entry.state = state
        if state in FINAL_STATES:
            report = record.get("report")
            entry.final = report if isinstance(report, dict) else {}
            entry.reported = False
            self.order.pop(identity, None)
            self.order[identity] = None

    def in_order(self) -> list[tuple[FileIdentity, JournalEntry]]:
        """Unfinished files first, then finished ones in the order they finished (their lines' order)."""
        unfinished = [(i, e) for i, e in self.entries.items() if i not in self.order]
        return unfinished + [(identity, self.entries[identity]) for identity in self.order]

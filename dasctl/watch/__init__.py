"""`dasctl watch`: enroll every recording that lands in a folder, several at once, resumable.

One file per part, each testable alone:
- `inbox`: which files count (pattern, recursion, exclusions), how each is identified, when one has settled.
- `journal`: the append-only record of truth (JSON lines, fsynced); replaying it tells what is done.
- `retries`: `RetryPolicy` / `ServiceHealth` decide when to try again and when the service counts as gone.
- `report`: the stdout line for one file.
- `observer`: what the runner tells a display.
- `runner`: `WatchRunner` schedules sessions on one asyncio loop and emits one JSON line per file.
- `file_session`: the real register session, wired in.
"""

from dasctl.watch.file_session import register_file_session
from dasctl.watch.inbox import DEFAULT_PATTERNS, TEMP_SUFFIXES, FileIdentity, Inbox, SettledFile
from dasctl.watch.journal import (
    ABORTED,
    DEFAULT_JOURNAL_NAME,
    DONE,
    FAILED,
    FINAL_STATES,
    JOURNAL_SCHEMA,
    REPORTED,
    RETRY,
    STARTED,
    Journal,
    JournalBusy,
    JournalEntry,
)
from dasctl.watch.observer import SilentObserver, WatchObserver, WatchTotals
from dasctl.watch.report import OUTPUT_SCHEMA, build_report
from dasctl.watch.retries import RetryPolicy, ServiceHealth
from dasctl.watch.runner import FileSession, TextOut, TokenCheck, WatchRunner, WatchSettings, ndjson_line

__all__ = [
    "ABORTED", "DEFAULT_JOURNAL_NAME", "DEFAULT_PATTERNS", "DONE", "FAILED", "FINAL_STATES", "JOURNAL_SCHEMA",
    "OUTPUT_SCHEMA", "REPORTED", "RETRY", "STARTED", "TEMP_SUFFIXES", "FileIdentity", "FileSession", "Inbox",
    "Journal", "JournalBusy", "JournalEntry", "RetryPolicy", "ServiceHealth", "SettledFile", "SilentObserver",
    "TextOut", "TokenCheck", "WatchObserver", "WatchRunner", "WatchSettings", "WatchTotals", "build_report",
    "ndjson_line", "register_file_session",
]

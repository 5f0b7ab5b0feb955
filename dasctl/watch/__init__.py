"""`dasctl watch`: enroll every recording that lands in a folder, several at once, resumable.

One file per part, each testable alone:
- `inbox`: which files count (pattern, recursion, exclusions), how each is identified, when one has settled.
- `state`: watch's record of truth, in the store; `journal`: the old journal file, imported once.
- `retries`: `RetryPolicy` / `ServiceHealth` decide when to try again and when the service counts as gone.
- `report`: the stdout line and the enrollment record of one file; `speakers`: whose voice a file is.
- `observer`: what the runner tells a display; `settings`: what a run is told.
- `runner`: `WatchRunner` schedules sessions on one asyncio loop; `intake`: which settled files become
  work and which are done already; `attempts`: the steps of one file
  (session, retry, durable outcome, its line); `lines`: print a line, then mark it printed.
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
    RETRY,
    STARTED,
    JournalEntry,
    LegacyJournal,
)
from dasctl.watch.observer import SilentObserver, WatchObserver, WatchTotals
from dasctl.watch.report import OUTPUT_SCHEMA, build_enrollment, build_report
from dasctl.watch.retries import RetryPolicy, ServiceHealth
from dasctl.watch.runner import WatchRunner
from dasctl.watch.settings import FileSession, SessionTap, TextOut, TokenCheck, WatchSettings, ndjson_line
from dasctl.watch.speakers import SpeakerNaming, SpeakerNotFound
from dasctl.watch.state import WatchState

__all__ = [
    "ABORTED", "DEFAULT_JOURNAL_NAME", "DEFAULT_PATTERNS", "DONE", "FAILED", "FINAL_STATES", "JOURNAL_SCHEMA",
    "OUTPUT_SCHEMA", "RETRY", "STARTED", "TEMP_SUFFIXES", "FileIdentity", "FileSession", "Inbox",
    "JournalEntry", "LegacyJournal", "RetryPolicy", "ServiceHealth", "SessionTap", "SettledFile",
    "SilentObserver",
    "SpeakerNaming", "SpeakerNotFound", "TextOut", "TokenCheck", "WatchObserver", "WatchRunner",
    "WatchSettings", "WatchState", "WatchTotals", "build_enrollment", "build_report", "ndjson_line",
    "register_file_session",
]

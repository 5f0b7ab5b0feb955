"""What a watch run is told (WatchSettings), and the small types the runner and its callers share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dasctl import events
from dasctl.watch.inbox import DEFAULT_PATTERNS, FileIdentity
from dasctl.watch.retries import RetryPolicy
from dasctl.watch.speakers import SpeakerNaming

if TYPE_CHECKING:
    from dasctl.session import Progress, RegisterOutcome
    from dasctl.watch.consents import ConsentSource

@dataclass
class SessionTap:
    """What the store keeps of an attempt besides its outcome; the session fills it before streaming."""

    keep: bool = False  # whether to fill it at all (--no-store: no)
    source: tuple[int, str] | None = None  # (size, sha256) of the recording
    sent: bytearray | None = None  # the mu-law sent, for when the service returns no enrollment audio
    channel: dict[str, Any] = field(default_factory=dict)  # the channel sent: "channel" (and "side")


class FileSession(Protocol):
    """Runs one register session for a file: (path, call_id, on_progress, tap) -> outcome."""

    def __call__(
        self, path: Path, call_id: str, on_progress: Callable[[Progress], None], tap: SessionTap, /
    ) -> Awaitable[RegisterOutcome]: ...

#: Fetches a token (a health check and a warm cache before the first session).
TokenCheck = Callable[[], Awaitable[object]]


class TextOut(Protocol):
    """Where result lines go: stdout, or a console that prints above live bars."""

    def write(self, text: str, /) -> object: ...
    def flush(self) -> None: ...


def ndjson_line(report: dict[str, Any]) -> str:
    """The machine form of a result: one compact JSON line, as every machine output of dasctl."""
    from dasctl.results import json_line

    return json_line(report)


@dataclass
class WatchSettings:
    root: Path
    patterns: Sequence[str] = DEFAULT_PATTERNS
    recursive: bool = False
    concurrency: int = 4
    once: bool = False
    done_dir: Path | None = None
    failed_dir: Path | None = None
    journal_path: Path | None = None  # an old journal file to import (default: DIR/.dasctl-watch.jsonl)
    settle: float = 2.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_failed: bool = False
    unreachable_budget: float = 120.0
    grace: float = 10.0
    rescan_interval: float = 30.0
    model_hash: str | None = None
    protocol: str = "twilio"
    audio_total_duration: float | None = None
    speakers: SpeakerNaming = field(default_factory=SpeakerNaming)
    consents: ConsentSource | None = None  # --consent-from: each enrollment's consent reference
    keep_enrollments: bool = True  # --no-store: False (watch's own state is kept either way)
    profile: str | None = None  # for the enrollment records: which profile, which service
    service_url: str | None = None
    summary_line: bool = False  # --summary: NDJSON output ends with the run's summary (lines.SUMMARY_SCHEMA)


@dataclass
class WorkItem:
    path: Path
    identity: FileIdentity
    attempts: int  # attempts already made
    unreachable: int = 0  # consecutive failures to reach the service for this file


@dataclass
class Attempt:
    """What one attempt saw, filled in by the progress callback."""

    started: float
    reached_service: bool = False
    audio_seconds_sent: float = 0.0
    last_vad: events.VadStatus | None = None
    marks: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] | None = None  # set once the final record is durable
    speaker: str | None = None
    consent: str | None = None  # its consent reference (--consent-from)
    tap: SessionTap = field(default_factory=SessionTap)

    def saw(self, progress: Progress, elapsed: float) -> bool:
        """Take in a progress report; True the first time it shows the service answered."""
        state = getattr(progress, "state", "")
        mark = TIMING_FOR_STATE.get(state)
        if mark and mark not in self.marks:
            self.marks[mark] = elapsed
        sent = getattr(progress, "audio_seconds_sent", None)
        if isinstance(sent, (int, float)):
            self.audio_seconds_sent = float(sent)
        vad = getattr(progress, "vad", None)
        if isinstance(vad, events.VadStatus):
            self.last_vad = vad
        first_answer = bool(state) and state != "connecting" and not self.reached_service
        self.reached_service = self.reached_service or first_answer
        return first_answer


# Progress states -> the timing names session.RegisterOutcome uses (seconds since the attempt began).
TIMING_FOR_STATE = {
    "initializing": "connected",
    "streaming": "consumer_ready",
    "waiting for result": "audio_done",
    "done": "finished",
}

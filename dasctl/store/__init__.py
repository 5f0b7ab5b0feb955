"""The credential store: every enrollment, verification and watch state, kept (docs/store.md).

das-Peak keeps no credentials (docs/protocol.md §6), so dasctl does. One small interface (`Store`), two
backends: SQLite (the embedded default, `sqlite.py`) and PostgreSQL (`postgres.py`, the `postgres`
extra). Callers use only what is in this module; the SQL lives in the backends.

No Typer or rich here: the store is library code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from dasctl.errors import ServiceUnavailable, UsageError

#: Where a record came from.
ORIGINS = ("register", "watch", "reenroll", "import")


@dataclass
class EnrollmentRecord:
    """One register attempt, successful or not. A successful one is the speaker's current credential
    until a later success supersedes it (superseded, never deleted)."""

    speaker: str
    ok: bool
    origin: str = "register"  # one of ORIGINS
    outcome: str | None = None  # terminal event name (result-success, result-fail-spoof, ...) or error kind
    error: str | None = None  # the error message for a failed attempt
    credential: str | None = None
    model_hash: str | None = None
    profile: str | None = None
    service_url: str | None = None
    call_id: str | None = None
    protocol: str | None = None
    authenticity: float | None = None
    voice_seconds: float | None = None
    source_path: str | None = None
    source_size: int | None = None
    source_sha256: str | None = None
    audio: bytes | None = None  # enrollment audio, 8 kHz mu-law (not loaded by list/history)
    document: dict[str, Any] | None = None  # the JSON document that was printed for it
    # set by the store
    id: int | None = None
    created_at: str | None = None  # ISO 8601 UTC, e.g. 2026-11-25T17:42:00.123Z
    superseded_at: str | None = None
    has_audio: bool = False


@dataclass
class VerificationRecord:
    """One verify session against a speaker's credential: the audit trail."""

    speaker: str
    ok: bool
    outcome: str | None = None  # result-success, result-fail-score, ..., or error kind
    error: str | None = None
    score: float | None = None
    authenticity: float | None = None
    voice_seconds: float | None = None
    call_id: str | None = None
    model_hash: str | None = None
    enrollment_id: int | None = None  # the credential verified against, when it came from the store
    profile: str | None = None
    service_url: str | None = None
    protocol: str | None = None
    source_path: str | None = None
    source_sha256: str | None = None
    document: dict[str, Any] | None = None
    id: int | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class WatchKey:
    """A recording in a watched folder, as `watch` knows it: a re-recorded file is a new key."""

    relpath: str
    size: int
    mtime_ns: int


@dataclass
class WatchFile:
    """What the store says about one recording of one watched folder."""

    key: WatchKey
    state: str  # started / retry / aborted / done / failed (watch's words)
    attempts: int = 0  # attempts that ended (done, failed or retry)
    call_id: str | None = None
    report: dict[str, Any] | None = None  # the latest final (done/failed) report line
    reported: bool = False  # whether that report line was printed
    updated_at: str | None = None


class StoreError(ServiceUnavailable):
    """The store could not be reached or written (exit 6: worth retrying). The message names the store."""

    kind = "store"


class StoreUnusable(UsageError):
    """The store is not ours or cannot be used as it is: a foreign or corrupt file, a newer schema
    (exit 2)."""

    kind = "store"


class StoreBusy(UsageError):
    """Another `dasctl watch` holds this folder's watch state (exit 2)."""

    kind = "store"


class Store(Protocol):
    """The credential store. Every method is one transaction; safe for several processes at once."""

    #: where the store is, for messages: a file path, or a URL with the password masked
    location: str

    # -- enrollments ---------------------------------------------------------------------------
    def record_enrollment(self, record: EnrollmentRecord) -> EnrollmentRecord:
        """Keep one attempt; a success supersedes the speaker's current credential in the same
        transaction. Idempotent on (speaker, call_id, ok) when call_id is set: the first record is
        returned."""
        ...

    def current(self, speaker: str, *, with_audio: bool = False) -> EnrollmentRecord | None:
        """The speaker's current (latest successful, not superseded) enrollment, or None."""
        ...

    def enrollment_audio(self, enrollment_id: int) -> bytes | None:
        """The kept 8 kHz mu-law enrollment audio of one enrollment."""
        ...

    def list_current(
        self,
        *,
        speaker_glob: str | None = None,
        model_hash: str | None = None,
        stale_for: str | None = None,
    ) -> Iterator[EnrollmentRecord]:
        """Current enrollments by speaker (no audio loaded): matching a glob (fnmatch syntax), made with
        a model hash, or stale for one (made with any other model)."""
        ...

    def speaker_ids(self, prefix: str = "", limit: int = 200) -> list[str]:
        """Up to `limit` speaker ids starting with `prefix`, in order (shell completion)."""
        ...

    def holds_model(self, model_hash: str) -> bool:
        """Whether any speaker's current credential was made with this model (stops at the first)."""
        ...

    def current_models(self) -> dict[str, int]:
        """How many speakers' current credential each model hash made ("" for none recorded)."""
        ...

    def enrollments(self, *, speaker_glob: str | None = None) -> Iterator[EnrollmentRecord]:
        """Every enrollment attempt (superseded and failed included; no audio loaded), by speaker then
        age: what `credentials export` writes."""
        ...

    def list_current_lines(
        self,
        *,
        speaker_glob: str | None = None,
        model_hash: str | None = None,
        stale_for: str | None = None,
    ) -> Iterator[str]:
        """list_current as compact dasctl.credential/1 JSON lines (records.credential_document, without
        the newline): what `credentials list --json` prints, built as fast as the backend can."""
        ...

    def history(self, speaker: str) -> list[EnrollmentRecord | VerificationRecord]:
        """Every enrollment attempt and verification of a speaker, oldest first (no audio loaded)."""
        ...

    def remove(self, speaker: str) -> int:
        """Delete everything kept about a speaker; the number of records removed."""
        ...

    # -- verifications -------------------------------------------------------------------------
    def record_verification(self, record: VerificationRecord) -> VerificationRecord:
        """Keep one verification (the audit trail)."""
        ...

    # -- watch state (the journal of `dasctl watch`, per watched folder) ---------------------------
    def watch_lock(self, inbox: str) -> AbstractContextManager[None]:
        """Hold a folder's watch state for this process; StoreBusy when another watch holds it."""
        ...

    def watch_files(self, inbox: str) -> Iterator[WatchFile]:
        """What the store knows about every recording of this folder."""
        ...

    def watch_inboxes(self) -> list[str]:
        """Every watched folder the store has state for."""
        ...

    def watch_file(self, inbox: str, key: WatchKey) -> WatchFile | None:
        """What the store says now about one recording of this folder, or None."""
        ...

    def watch_update(
        self,
        inbox: str,
        key: WatchKey,
        state: str,
        *,
        attempt: int | None = None,
        call_id: str | None = None,
        report: dict[str, Any] | None = None,
        enrollment: EnrollmentRecord | None = None,
        report_stored: bool = False,
    ) -> EnrollmentRecord | None:
        """Record a recording's new state; with a final report (and its enrollment) in one transaction,
        durable before it returns, and marked not yet reported. The enrollment as kept (its id); with
        report_stored, the kept report also carries its `stored` object (records.stored_fields)."""
        ...

    def watch_reported(self, inbox: str, key: WatchKey) -> None:
        """Mark the latest final report of a recording as printed."""
        ...

    def close(self) -> None: ...


def open_store(url: str | None = None, env: Mapping[str, str] | None = None) -> Store:
    """Open (creating and migrating as needed) the store at `url`: None or a path for SQLite (default:
    the data directory, or DASCTL_STORE when set), `postgresql://...` for PostgreSQL."""
    import os

    from dasctl import config

    environ = os.environ if env is None else env
    url = url or environ.get(config.ENV_STORE) or None
    if url is None:
        from dasctl.store.sqlite import SqliteStore

        try:
            config.private_dir(config.data_dir(environ))  # dasctl's own directory: 0700
        except OSError as error:
            raise StoreUnusable(f"cannot create the data directory {config.data_dir(environ)}: "
                                f"{error.strerror}") from None
        return SqliteStore(config.store_path(environ), environ)
    scheme = url.split(":", 1)[0].lower() if "://" in url else ""
    if scheme in config.POSTGRES_SCHEMES:
        try:
            from dasctl.store.postgres import PostgresStore
        except ImportError:
            raise UsageError(
                "a postgresql:// store needs psycopg, which is not installed",
                "Install it with: pip install 'dasctl[postgres]'",
            ) from None
        return PostgresStore(url)
    if scheme:
        raise UsageError(f"unsupported store URL scheme {scheme!r}",
                         "Use a file path (SQLite) or postgresql://USER@HOST/DB.")
    from pathlib import Path

    from dasctl.store.sqlite import SqliteStore

    return SqliteStore(Path(url), environ)


__all__ = [
    "ORIGINS", "EnrollmentRecord", "VerificationRecord", "WatchKey", "WatchFile", "Store", "StoreError",
    "StoreUnusable", "StoreBusy", "open_store",
]

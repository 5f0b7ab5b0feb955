"""The credential store: every enrollment, verification and watch state, kept (docs/store.md).

das-Peak keeps no credentials (docs/protocol.md §6), so dasctl does. One small interface (`Store`), two
backends: SQLite (the embedded default, `sqlite.py`) and PostgreSQL (`postgres.py`, the `postgres`
extra). Callers use only what is in this module; the SQL lives in the backends.

No Typer or rich here: the store is library code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dasctl.errors import ServiceUnavailable, UsageError

if TYPE_CHECKING:
    from dasctl.store.audit import AuditRow
    from dasctl.store.consent import OptOut
    from dasctl.store.retention import PurgeReport, RetentionPolicy
    from dasctl.store.vault import KeySettings

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
    consent: str | None = None  # the consent reference it was enrolled under (register --consent)
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
    #: the default store, not made yet: a read-only command sees it empty (and makes nothing)
    absent: bool
    #: a store a read-only command opened where it cannot be written (read-only media, a 0444 file):
    #: metadata reads, and a secret does not (its read would have to be audited in the store)
    read_only: bool

    # -- enrollments ---------------------------------------------------------------------------
    def record_enrollment(self, record: EnrollmentRecord) -> EnrollmentRecord:
        """Keep one attempt; a success supersedes the speaker's current credential in the same
        transaction. Idempotent on (speaker, call_id, ok) when call_id is set: the first record is
        returned."""
        ...

    def current(
        self, speaker: str, *, with_audio: bool = False, reveal: bool = True
    ) -> EnrollmentRecord | None:
        """The speaker's current (latest successful, not superseded) enrollment, or None. `reveal`: with
        its credential (needs the key); without, metadata only."""
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
        reveal: bool = False,
    ) -> Iterator[EnrollmentRecord]:
        """Current enrollments by speaker (no audio loaded): matching a glob (fnmatch syntax), made with
        a model hash, or stale for one (made with any other model). The credential only when `reveal`."""
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

    def enrollments(
        self, *, speaker_glob: str | None = None, reveal: bool = False
    ) -> Iterator[EnrollmentRecord]:
        """Every enrollment attempt (superseded and failed included; no audio loaded), by speaker then
        age: what `credentials export` writes. The credential and document only when `reveal`."""
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

    def history(self, speaker: str, *, reveal: bool = False) -> list[EnrollmentRecord | VerificationRecord]:
        """Every enrollment attempt and verification of a speaker, oldest first (no audio loaded; the
        credentials only when `reveal`)."""
        ...

    def remove(self, speaker: str) -> int:
        """Delete everything kept about a speaker; the number of records removed."""
        ...

    # -- moving records between stores (moving.py) ----------------------------------------------
    def import_enrollment(self, record: EnrollmentRecord) -> bool:
        """Keep a record from another store as it was (times, origin); False when already here. The newest
        success by created_at is current, whatever the order records arrive in."""
        ...

    def import_verification(self, record: VerificationRecord) -> bool:
        """Keep a verification from another store, its time kept; False when already here."""
        ...

    def watch_state_rows(self, *, reveal: bool) -> Iterator[dict[str, Any]]:
        """Every watched file's state, for export (the report only when `reveal`)."""
        ...

    def import_watch_file(self, row: dict[str, Any]) -> bool:
        """Keep a watched file's state from another store; False when already known."""
        ...

    def verifications(self, *, speaker_glob: str | None = None) -> Iterator[VerificationRecord]:
        """Every verification by speaker then age (metadata only)."""
        ...

    # -- verifications -------------------------------------------------------------------------
    def record_verification(self, record: VerificationRecord) -> VerificationRecord:
        """Keep one verification (the audit trail)."""
        ...

    # -- watch state (the journal of `dasctl watch`, per watched folder) ---------------------------
    def watch_lock(self, inbox: str) -> AbstractContextManager[None]:
        """Hold a folder's watch state for this process; StoreBusy when another watch holds it."""
        ...

    def watch_files(self, inbox: str, *, reveal: bool = True, owed_only: bool = False) -> Iterator[WatchFile]:
        """What the store knows about every recording of this folder (the reports only when `reveal`:
        they hold credentials, so need the key; a status or a dry run needs none; with `owed_only`, only
        the reports whose line is not yet marked printed, all a starting watch needs)."""
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

    # -- consent (consent.py) -------------------------------------------------------------------------
    def opt_out_of(self, speaker: str) -> OptOut | None:
        """The speaker's opt-out record, or None."""
        ...

    def refusal(self, speaker: str) -> str | None:
        """Why nothing may be sent or kept for this speaker ("the customer X opted out on DATE"), or None."""
        ...

    def refuse_opted_out(self, speaker: str) -> None:
        """OptedOut (exit 5) when the speaker opted out: what register/verify/reenroll check first."""
        ...

    def opt_outs(self) -> list[OptOut]:
        ...

    def opt_out(self, speaker: str, reason: str | None = None, *, at: str | None = None,
                who: str | None = None) -> int:
        """Destroy the speaker's secrets, keep the metadata, record the opt-out; records destroyed."""
        ...

    def opt_in(self, speaker: str) -> bool:
        """Lift an opt-out; False when there was none."""
        ...

    def import_opt_out(self, opted: OptOut) -> bool:
        ...

    # -- retention (retention.py) -------------------------------------------------------------------
    def purge(self, policy: RetentionPolicy, *, dry_run: bool = False, command: str = "purge") -> PurgeReport:
        """Destroy what is past the policy's limits (or count it); audited."""
        ...

    # -- the audit log (audit.py) ------------------------------------------------------------------
    def audit(self, command: str, speakers: list[str], count: int, detail: str | None = None) -> None:
        """Append a row: a secret was read or something destroyed (when, who, what, whom, how many)."""
        ...

    def audit_rows(self, *, since: str | None = None, until: str | None = None) -> Iterator[AuditRow]:
        """The audit log, oldest first, within [since, until)."""
        ...

    def import_audit(self, row: AuditRow) -> bool:
        """Keep an audit row from another store as it was; False when already here."""
        ...

    # -- encryption at rest (sealing.py) --------------------------------------------------------------
    @property
    def encrypted(self) -> bool:
        """Whether this process holds the store's key (secrets can be read and written)."""
        ...

    def require_secrets(self, *, write: bool = True) -> None:
        """StoreKeyError (exit 4, naming where dasctl looked for the key) unless secrets can be read and
        written, and StoreError (exit 6) when a write would fail: checked before any session starts."""
        ...

    def integrity_problems(self) -> list[str]:
        """A full integrity check of the store (`credentials check`): every problem, none when sound."""
        ...

    def rekey(self, new_kek: bytes) -> tuple[int, int]:
        """Re-wrap the store's data keys under a new key; (re-wrapped, already under it). Resumable."""
        ...

    def key_status(self) -> dict[str, Any]:
        """Which key opens the store, its data keys and how many values each one seals."""
        ...

    def close(self) -> None: ...


def _warn(message: str) -> None:
    import sys

    sys.stderr.write(f"dasctl: warning: {message}\n")
    sys.stderr.flush()


def open_store(
    url: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    key: KeySettings | None = None,
    warn: Callable[[str], None] = _warn,
    create: bool = True,
) -> Store:
    """Open (creating and migrating as needed) the store at `url`: None or a path for SQLite (default:
    the data directory, or DASCTL_STORE when set), `postgresql://...` for PostgreSQL. Its key is found by
    `key` (the --store-key-file setting) and the environment (vault.py); without one, metadata still
    reads and `require_secrets` says why secrets do not."""
    import os

    from dasctl import config
    from dasctl.store.vault import KeySettings, resolve_key

    environ = os.environ if env is None else env
    url = url or environ.get(config.ENV_STORE) or None
    settings = key or KeySettings()
    if url is None:
        from dasctl.store.sqlite import SqliteStore

        try:
            if create or config.data_dir(environ).exists():
                config.private_dir(config.data_dir(environ))  # dasctl's own directory: 0700
        except OSError as error:
            raise StoreUnusable(f"cannot create the data directory {config.data_dir(environ)}: "
                                f"{error.strerror}") from None
        return SqliteStore(config.store_path(environ), environ,
                           resolve_key(settings, environ, local=True, warn=warn), create=create, default=True,
                           warn=warn)
    scheme = url.split(":", 1)[0].lower() if "://" in url else ""
    if scheme in config.POSTGRES_SCHEMES:
        try:
            from dasctl.store.postgres import PostgresStore
        except ImportError:
            raise UsageError(
                "a postgresql:// store needs psycopg, which is not installed",
                "Install it with: pip install 'dasctl[postgres]'",
            ) from None
        return PostgresStore(url, resolve_key(settings, environ, local=False, warn=warn))
    if scheme:
        raise UsageError(f"unsupported store URL scheme {scheme!r}",
                         "Use a file path (SQLite) or postgresql://USER@HOST/DB.")
    from pathlib import Path

    from dasctl.store.sqlite import SqliteStore

    return SqliteStore(Path(url), environ, resolve_key(settings, environ, local=True, warn=warn),
                       create=create, warn=warn)


__all__ = [
    "ORIGINS", "EnrollmentRecord", "VerificationRecord", "WatchKey", "WatchFile", "Store", "StoreError",
    "StoreUnusable", "StoreBusy", "open_store",
]

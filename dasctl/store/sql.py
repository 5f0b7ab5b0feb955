"""What the SQLite and PostgreSQL backends share: the queries and the record <-> row mapping.

The SQL here is the dialect both databases speak (qmark placeholders, converted by the PostgreSQL backend).
Where the two differ, the backend says so by overriding a small hook: how a write transaction starts and
serialises (`_write`), how a new row's id comes back (`_insert_id`), "is distinct from" (`IS_DISTINCT`),
and how a speaker's writes are serialised (`_lock_speaker`).
"""

from __future__ import annotations

import fnmatch
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any

from dasctl.store import (
    EnrollmentRecord,
    StoreError,
    VerificationRecord,
    WatchFile,
    WatchKey,
)
from dasctl.store.migrations import MIGRATIONS, MIGRATIONS_TABLE, statements

ENROLLMENT_COLUMNS = (
    "speaker", "ok", "origin", "outcome", "error", "credential", "model_hash", "profile", "service_url",
    "call_id", "protocol", "authenticity", "voice_seconds", "source_path", "source_size", "source_sha256",
    "document", "created_at", "superseded_at", "audio_size",
)
VERIFICATION_COLUMNS = (
    "speaker", "ok", "outcome", "error", "score", "authenticity", "voice_seconds", "call_id", "model_hash",
    "enrollment_id", "profile", "service_url", "protocol", "source_path", "source_sha256", "document",
    "created_at",
)
WATCH_COLUMNS = (
    "relpath", "size", "mtime_ns", "state", "attempts", "call_id", "report", "reported", "updated_at",
)
_ENROLLMENT_SELECT = "SELECT id, " + ", ".join(ENROLLMENT_COLUMNS) + " FROM enrollments"
# listing leaves out the (possibly large) printed document: a list shows fields, not documents
_LIST_COLUMNS = tuple("NULL" if c == "document" else c for c in ENROLLMENT_COLUMNS)
_LIST_SELECT = "SELECT id, " + ", ".join(_LIST_COLUMNS) + " FROM enrollments"
_VERIFICATION_SELECT = "SELECT id, " + ", ".join(VERIFICATION_COLUMNS) + " FROM verifications"

# watch's words (dasctl/watch): attempts that ended count against a file's retries
_ENDED_STATES = ("retry", "done", "failed")


def now_iso() -> str:
    """The current time as the store writes it: ISO 8601 UTC, milliseconds (2026-11-25T17:42:00.123Z)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _unjson(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def enrollment_from_row(row: Sequence[Any]) -> EnrollmentRecord:
    (id_, speaker, ok, origin, outcome, error, credential, model_hash, profile, service_url, call_id,
     protocol, authenticity, voice_seconds, source_path, source_size, source_sha256, document, created_at,
     superseded_at, audio_size) = row
    return EnrollmentRecord(
        speaker=speaker, ok=bool(ok), origin=origin, outcome=outcome, error=error, credential=credential,
        model_hash=model_hash, profile=profile, service_url=service_url, call_id=call_id, protocol=protocol,
        authenticity=_float(authenticity), voice_seconds=_float(voice_seconds), source_path=source_path,
        source_size=source_size, source_sha256=source_sha256, document=_unjson(document), id=id_,
        created_at=created_at, superseded_at=superseded_at, has_audio=audio_size is not None,
    )


def verification_from_row(row: Sequence[Any]) -> VerificationRecord:
    (id_, speaker, ok, outcome, error, score, authenticity, voice_seconds, call_id, model_hash, enrollment_id,
     profile, service_url, protocol, source_path, source_sha256, document, created_at) = row
    return VerificationRecord(
        speaker=speaker, ok=bool(ok), outcome=outcome, error=error, score=_float(score),
        authenticity=_float(authenticity), voice_seconds=_float(voice_seconds), call_id=call_id,
        model_hash=model_hash, enrollment_id=enrollment_id, profile=profile, service_url=service_url,
        protocol=protocol, source_path=source_path, source_sha256=source_sha256, document=_unjson(document),
        id=id_, created_at=created_at,
    )


def glob_prefix(pattern: str) -> str:
    """The literal start of an fnmatch pattern (narrows the rows read before fnmatch decides)."""
    for index, char in enumerate(pattern):
        if char in "*?[":
            return pattern[:index]
    return pattern


class SqlStore:
    """The Store protocol over a DB-API connection; the backends add connecting and their dialect."""

    location: str
    #: column types the migrations leave open ({id}, {real}, {bigint}, {blob})
    types: dict[str, str]
    #: "a differs from b, NULL included"
    IS_DISTINCT = "IS NOT"

    def __init__(self) -> None:
        self._lock = threading.RLock()  # one connection, used by one thread at a time

    # -- the backend's part -------------------------------------------------------------------
    def _write(self) -> AbstractContextManager[Any]:
        """A write transaction (a cursor), serialised against other writers, committed on exit."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Any]:
        """A cursor for reading one consistent snapshot."""
        raise NotImplementedError

    def _insert_id(self, cursor: Any, sql: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    def _lock_speaker(self, cursor: Any, speaker: str) -> None:
        """Serialise writes about one speaker (SQLite: the write transaction already does)."""

    def _sql(self, sql: str) -> str:
        return sql

    def _error(self, action: str, error: Exception) -> StoreError:
        return StoreError(f"cannot {action} the store {self.location}: {error}")

    # -- migrations -----------------------------------------------------------------------------
    def _migrate(self, cursor: Any, applied: set[str]) -> None:
        """Apply the migrations not yet recorded (inside the caller's write transaction)."""
        for name, function in MIGRATIONS:
            if name in applied:
                continue
            for statement in statements(name, function, self.types):
                cursor.execute(statement)
            cursor.execute(self._sql(f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)"),
                           (name, now_iso()))

    # -- enrollments ----------------------------------------------------------------------------
    def record_enrollment(self, record: EnrollmentRecord) -> EnrollmentRecord:
        with self._write() as cursor:
            return self._record_enrollment(cursor, record)

    def _record_enrollment(self, cursor: Any, record: EnrollmentRecord) -> EnrollmentRecord:
        self._lock_speaker(cursor, record.speaker)
        if record.call_id is not None:
            cursor.execute(self._sql(_ENROLLMENT_SELECT + " WHERE speaker = ? AND call_id = ? AND ok = ?"),
                           (record.speaker, record.call_id, int(record.ok)))
            row = cursor.fetchone()
            if row is not None:
                return enrollment_from_row(row)
        created_at = now_iso()
        if record.ok:
            cursor.execute(
                self._sql("UPDATE enrollments SET superseded_at = ? "
                          "WHERE speaker = ? AND ok = 1 AND superseded_at IS NULL"),
                (created_at, record.speaker),
            )
        audio = record.audio
        values = (
            record.speaker, int(record.ok), record.origin, record.outcome, record.error, record.credential,
            record.model_hash, record.profile, record.service_url, record.call_id, record.protocol,
            record.authenticity, record.voice_seconds, record.source_path, record.source_size,
            record.source_sha256, _json(record.document), created_at, None,
            None if audio is None else len(audio),
        )
        sql = self._sql(f"INSERT INTO enrollments ({', '.join(ENROLLMENT_COLUMNS)}) "
                        f"VALUES ({', '.join('?' for _ in ENROLLMENT_COLUMNS)})")
        new_id = self._insert_id(cursor, sql, values)
        if audio is not None:
            cursor.execute(self._sql("INSERT INTO enrollment_audio (enrollment_id, audio) VALUES (?, ?)"),
                           (new_id, audio))
        kept = EnrollmentRecord(
            **{**record.__dict__, "id": new_id, "created_at": created_at, "superseded_at": None,
               "has_audio": audio is not None},
        )
        if record.ok:  # its line of `credentials list --json` while it is current (migration m003)
            from dasctl.results import json_line
            from dasctl.store.records import credential_document

            cursor.execute(self._sql("UPDATE enrollments SET listing = ? WHERE id = ?"),
                           (json_line(credential_document(kept)), new_id))
        return kept

    def current(self, speaker: str, *, with_audio: bool = False) -> EnrollmentRecord | None:
        with self._read() as cursor:
            cursor.execute(
                self._sql(_ENROLLMENT_SELECT + " WHERE speaker = ? AND ok = 1 AND superseded_at IS NULL"),
                (speaker,),
            )
            row = cursor.fetchone()
            if row is None:
                return None
            record = enrollment_from_row(row)
            if with_audio and record.has_audio:
                record.audio = self._audio(cursor, record.id)
            return record

    def _audio(self, cursor: Any, enrollment_id: int | None) -> bytes | None:
        cursor.execute(self._sql("SELECT audio FROM enrollment_audio WHERE enrollment_id = ?"),
                       (enrollment_id,))
        row = cursor.fetchone()
        return None if row is None else bytes(row[0])

    def enrollment_audio(self, enrollment_id: int) -> bytes | None:
        with self._read() as cursor:
            return self._audio(cursor, enrollment_id)

    def list_current(
        self,
        *,
        speaker_glob: str | None = None,
        model_hash: str | None = None,
        stale_for: str | None = None,
    ) -> Iterator[EnrollmentRecord]:
        sql, params = self._current_query(_LIST_SELECT, speaker_glob, model_hash, stale_for)
        with self._read() as cursor:
            cursor.execute(self._sql(sql), params)
            rows = cursor.fetchall()
        for row in rows:
            if speaker_glob and not fnmatch.fnmatchcase(row[1], speaker_glob):
                continue
            yield enrollment_from_row(row)

    def speaker_ids(self, prefix: str = "", limit: int = 200) -> list[str]:
        sql = "SELECT DISTINCT speaker FROM enrollments"
        params: list[Any] = []
        if prefix:  # a range on the speaker index, as list_current's glob prefix
            sql += " WHERE speaker >= ? AND speaker < ?"
            params += [prefix, prefix + "\U0010ffff"]
        sql += " ORDER BY speaker LIMIT ?"
        params.append(int(limit))
        with self._read() as cursor:
            cursor.execute(self._sql(sql), params)
            return [str(row[0]) for row in cursor.fetchall()]

    def holds_model(self, model_hash: str) -> bool:
        with self._read() as cursor:
            cursor.execute(self._sql("SELECT 1 FROM enrollments WHERE ok = 1 AND superseded_at IS NULL"
                                     " AND model_hash = ? LIMIT 1"), [model_hash])
            return cursor.fetchone() is not None

    def current_models(self) -> dict[str, int]:
        with self._read() as cursor:
            cursor.execute("SELECT model_hash, COUNT(*) FROM enrollments"
                           " WHERE ok = 1 AND superseded_at IS NULL GROUP BY model_hash")
            return {str(model or ""): int(count) for model, count in cursor.fetchall()}

    def list_current_lines(
        self,
        *,
        speaker_glob: str | None = None,
        model_hash: str | None = None,
        stale_for: str | None = None,
    ) -> Iterator[str]:
        from dasctl.results import json_line
        from dasctl.store.records import credential_document

        records = self.list_current(speaker_glob=speaker_glob, model_hash=model_hash, stale_for=stale_for)
        return (json_line(credential_document(record)) for record in records)

    def _current_query(
        self, select: str, speaker_glob: str | None, model_hash: str | None, stale_for: str | None
    ) -> tuple[str, list[Any]]:
        sql = select + " WHERE ok = 1 AND superseded_at IS NULL"
        params: list[Any] = []
        if speaker_glob:
            prefix = glob_prefix(speaker_glob)
            if prefix:  # a range on the index; fnmatch below decides exactly, the same in both backends
                sql += " AND speaker >= ? AND speaker < ?"
                params += [prefix, prefix + "\U0010ffff"]
        if model_hash is not None:
            sql += " AND model_hash = ?"
            params.append(model_hash)
        if stale_for is not None:
            sql += f" AND model_hash {self.IS_DISTINCT} ?"
            params.append(stale_for)
        return sql + " ORDER BY speaker", params

    def enrollments(self, *, speaker_glob: str | None = None) -> Iterator[EnrollmentRecord]:
        sql, params = _ENROLLMENT_SELECT, []
        prefix = glob_prefix(speaker_glob) if speaker_glob else ""
        if prefix:
            sql += " WHERE speaker >= ? AND speaker < ?"
            params = [prefix, prefix + "\U0010ffff"]
        with self._read() as cursor:
            cursor.execute(self._sql(sql + " ORDER BY speaker, id"), params)
            rows = cursor.fetchall()
        for row in rows:
            if speaker_glob and not fnmatch.fnmatchcase(row[1], speaker_glob):
                continue
            yield enrollment_from_row(row)

    def history(self, speaker: str) -> list[EnrollmentRecord | VerificationRecord]:
        with self._read() as cursor:
            cursor.execute(self._sql(_ENROLLMENT_SELECT + " WHERE speaker = ? ORDER BY id"), (speaker,))
            enrollments = [enrollment_from_row(row) for row in cursor.fetchall()]
            cursor.execute(self._sql(_VERIFICATION_SELECT + " WHERE speaker = ? ORDER BY id"), (speaker,))
            verifications = [verification_from_row(row) for row in cursor.fetchall()]
        entries: list[EnrollmentRecord | VerificationRecord] = [*enrollments, *verifications]
        # the same millisecond: an enrollment comes before the verification made against it
        entries.sort(key=lambda r: (r.created_at or "", isinstance(r, VerificationRecord), r.id or 0))
        return entries

    def remove(self, speaker: str) -> int:
        with self._write() as cursor:
            self._lock_speaker(cursor, speaker)
            cursor.execute(self._sql("DELETE FROM enrollment_audio WHERE enrollment_id IN "
                                     "(SELECT id FROM enrollments WHERE speaker = ?)"), (speaker,))
            cursor.execute(self._sql("DELETE FROM enrollments WHERE speaker = ?"), (speaker,))
            removed = int(cursor.rowcount)
            cursor.execute(self._sql("DELETE FROM verifications WHERE speaker = ?"), (speaker,))
            return removed + int(cursor.rowcount)

    # -- verifications --------------------------------------------------------------------------
    def record_verification(self, record: VerificationRecord) -> VerificationRecord:
        created_at = now_iso()
        values = (
            record.speaker, int(record.ok), record.outcome, record.error, record.score, record.authenticity,
            record.voice_seconds, record.call_id, record.model_hash, record.enrollment_id, record.profile,
            record.service_url, record.protocol, record.source_path, record.source_sha256,
            _json(record.document), created_at,
        )
        sql = self._sql(f"INSERT INTO verifications ({', '.join(VERIFICATION_COLUMNS)}) "
                        f"VALUES ({', '.join('?' for _ in VERIFICATION_COLUMNS)})")
        with self._write() as cursor:
            new_id = self._insert_id(cursor, sql, values)
        return VerificationRecord(**{**record.__dict__, "id": new_id, "created_at": created_at})

    # -- watch state ----------------------------------------------------------------------------
    def watch_files(self, inbox: str) -> Iterator[WatchFile]:
        # in the order files reached a final state (the order their lines are owed), unfinished first
        with self._read() as cursor:
            cursor.execute(self._sql(f"SELECT {', '.join(WATCH_COLUMNS)} FROM watch_files WHERE inbox = ? "
                                     "ORDER BY COALESCE(final_seq, 0), relpath"), (inbox,))
            rows = cursor.fetchall()
        for relpath, size, mtime_ns, state, attempts, call_id, report, reported, updated_at in rows:
            yield WatchFile(
                key=WatchKey(relpath, int(size), int(mtime_ns)), state=state, attempts=int(attempts),
                call_id=call_id, report=_unjson(report), reported=bool(reported), updated_at=updated_at,
            )

    def watch_inboxes(self) -> list[str]:
        """Every watched folder the store has state for."""
        with self._read() as cursor:
            cursor.execute("SELECT DISTINCT inbox FROM watch_files ORDER BY inbox")
            return [row[0] for row in cursor.fetchall()]

    def watch_file(self, inbox: str, key: WatchKey) -> WatchFile | None:
        """What the store says now about one recording (several watchers share an inbox: the memory of
        one of them is not the truth)."""
        where = "inbox = ? AND relpath = ? AND size = ? AND mtime_ns = ?"
        with self._read() as cursor:
            cursor.execute(self._sql(f"SELECT {', '.join(WATCH_COLUMNS)} FROM watch_files WHERE {where}"),
                           (inbox, key.relpath, key.size, key.mtime_ns))
            row = cursor.fetchone()
        if row is None:
            return None
        relpath, size, mtime_ns, state, attempts, call_id, report, reported, updated_at = row
        return WatchFile(
            key=WatchKey(relpath, int(size), int(mtime_ns)), state=state, attempts=int(attempts),
            call_id=call_id, report=_unjson(report), reported=bool(reported), updated_at=updated_at,
        )

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
        from dasctl.store.records import stored_fields

        updated_at = now_iso()
        where = "inbox = ? AND relpath = ? AND size = ? AND mtime_ns = ?"
        key_params = (inbox, key.relpath, key.size, key.mtime_ns)
        kept: EnrollmentRecord | None = None
        with self._write() as cursor:
            if enrollment is not None:
                kept = self._record_enrollment(cursor, enrollment)
                if report is not None and report_stored:  # the line says where its record is (register's way)
                    report = {**report, "stored": stored_fields(kept, self.location)}
            cursor.execute(self._sql("SELECT attempts, call_id, report, reported, final_seq "
                                     f"FROM watch_files WHERE {where}"), key_params)
            row = cursor.fetchone()
            attempts, old_call_id, old_report, reported, final_seq = row if row else (0, None, None, 0, None)
            # only attempts that ended count against a file's retries; one cut short by a crash does not
            if attempt is not None and state in _ENDED_STATES:
                attempts = max(int(attempts), attempt)
            report_text = old_report
            if report is not None:
                report_text, reported = _json(report), 0
                cursor.execute(
                    self._sql("SELECT COALESCE(MAX(final_seq), 0) + 1 FROM watch_files WHERE inbox = ?"),
                    (inbox,),
                )
                final_seq = cursor.fetchone()[0]
            values = (state, attempts, call_id if call_id is not None else old_call_id, report_text, reported,
                      final_seq, updated_at)
            if row is None:
                cursor.execute(
                    self._sql("INSERT INTO watch_files (inbox, relpath, size, mtime_ns, state, attempts, "
                              "call_id, report, reported, final_seq, updated_at) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                    (*key_params, *values),
                )
            else:
                cursor.execute(
                    self._sql("UPDATE watch_files SET state = ?, attempts = ?, call_id = ?, report = ?, "
                              f"reported = ?, final_seq = ?, updated_at = ? WHERE {where}"),
                    (*values, *key_params),
                )
        return kept

    def watch_reported(self, inbox: str, key: WatchKey) -> None:
        with self._write() as cursor:
            cursor.execute(
                self._sql("UPDATE watch_files SET reported = 1, updated_at = ? "
                          "WHERE inbox = ? AND relpath = ? AND size = ? AND mtime_ns = ? "
                          "AND report IS NOT NULL"),
                (now_iso(), inbox, key.relpath, key.size, key.mtime_ns),
            )

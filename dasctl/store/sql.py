"""What the SQLite and PostgreSQL backends share: the queries (the row <-> record mapping is rows.py).

The SQL here is the dialect both databases speak (qmark placeholders, converted by the PostgreSQL backend).
Where the two differ, the backend says so by overriding a small hook: how a write transaction starts and
serialises (`_write`), how a new row's id comes back (`_insert_id`), "is distinct from" (`IS_DISTINCT`),
and how a speaker's writes are serialised (`_lock_speaker`).
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from dasctl.store import (
    EnrollmentRecord,
    StoreError,
    VerificationRecord,
    WatchFile,
    WatchKey,
)
from dasctl.store.audit import Audit
from dasctl.store.consent import Consent
from dasctl.store.migrations import MIGRATIONS, MIGRATIONS_TABLE, statements
from dasctl.store.moving import Moving
from dasctl.store.retention import Retention
from dasctl.store.rows import (
    ENROLLMENT_COLUMNS,
    ENROLLMENT_SELECT,
    LIST_SELECT,
    VERIFICATION_COLUMNS,
    VERIFICATION_SELECT,
    WATCH_COLUMNS,
    enrollment_from_row,
    from_json,
    glob_prefix,
    now_iso,
    to_json,
    verification_from_row,
)
from dasctl.store.sealing import Sealing

# watch's words (dasctl/watch): attempts that ended count against a file's retries
_ENDED_STATES = ("retry", "done", "failed")


class SqlStore(Sealing, Moving, Audit, Consent, Retention):
    """The Store protocol over a DB-API connection; the backends add connecting and their dialect.
    Secrets are sealed on the way in and opened only when asked for (`reveal`): sealing.py."""

    location: str
    absent = False  # SqliteStore: True for the default store not made yet
    read_only = False  # SqliteStore: True for a read-only command's store on read-only media
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

    def _enrollment(self, row: Sequence[Any], reveal: bool) -> EnrollmentRecord:
        """A record from its row: the credential and document opened when `reveal`, else None (what
        metadata commands see, with or without the key)."""
        record = enrollment_from_row(row)
        if reveal:
            record.credential = self._open_text(row[6], "enrollments.credential", record.speaker)
            record.document = from_json(self._open_text(row[17], "enrollments.document", record.speaker))
        return record

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
            cursor.execute(self._sql(ENROLLMENT_SELECT + " WHERE speaker = ? AND call_id = ? AND ok = ?"),
                           (record.speaker, record.call_id, int(record.ok)))
            row = cursor.fetchone()
            if row is not None:
                return self._enrollment(row, reveal=True)
        created_at = now_iso()
        if record.ok:
            cursor.execute(
                self._sql("UPDATE enrollments SET superseded_at = ? "
                          "WHERE speaker = ? AND ok = 1 AND superseded_at IS NULL"),
                (created_at, record.speaker),
            )
        return self._insert_enrollment(cursor, record, created_at, None)

    def _insert_enrollment(
        self, cursor: Any, record: EnrollmentRecord, created_at: str, superseded_at: str | None
    ) -> EnrollmentRecord:
        """Insert one record, its secrets sealed, its audio apart, its listing line made when current."""
        audio = record.audio
        speaker = record.speaker
        values = (
            speaker, int(record.ok), record.origin, record.outcome, record.error,
            self._seal_text(record.credential, "enrollments.credential", speaker),
            record.model_hash, record.profile, record.service_url, record.call_id, record.protocol,
            record.authenticity, record.voice_seconds, record.source_path, record.source_size,
            record.source_sha256, self._seal_text(to_json(record.document), "enrollments.document", speaker),
            created_at, superseded_at, None if audio is None else len(audio), record.consent,
        )
        sql = self._sql(f"INSERT INTO enrollments ({', '.join(ENROLLMENT_COLUMNS)}) "
                        f"VALUES ({', '.join('?' for _ in ENROLLMENT_COLUMNS)})")
        new_id = self._insert_id(cursor, sql, values)
        if audio is not None:
            cursor.execute(self._sql("INSERT INTO enrollment_audio (enrollment_id, audio) VALUES (?, ?)"),
                           (new_id, self._seal_bytes(audio, "enrollment_audio.audio", speaker)))
        kept = EnrollmentRecord(
            **{**record.__dict__, "id": new_id, "created_at": created_at, "superseded_at": superseded_at,
               "has_audio": audio is not None},
        )
        # its line of `credentials list --json` while it is current (migration m003)
        if record.ok and superseded_at is None:
            from dasctl.results import json_line
            from dasctl.store.records import credential_document

            # metadata only: listing never needs the key, so the line never holds the credential
            listed = EnrollmentRecord(**{**kept.__dict__, "credential": None})
            cursor.execute(self._sql("UPDATE enrollments SET listing = ? WHERE id = ?"),
                           (json_line(credential_document(listed)), new_id))
        return kept

    def current(
        self, speaker: str, *, with_audio: bool = False, reveal: bool = True
    ) -> EnrollmentRecord | None:
        with self._read() as cursor:
            cursor.execute(
                self._sql(ENROLLMENT_SELECT + " WHERE speaker = ? AND ok = 1 AND superseded_at IS NULL"),
                (speaker,),
            )
            row = cursor.fetchone()
            if row is None:
                return None
            record = self._enrollment(row, reveal)
            if with_audio and record.has_audio:
                record.audio = self._audio(cursor, record.id)
            return record

    def _audio(self, cursor: Any, enrollment_id: int | None) -> bytes | None:
        cursor.execute(self._sql("SELECT a.audio, e.speaker FROM enrollment_audio a JOIN enrollments e "
                                 "ON e.id = a.enrollment_id WHERE a.enrollment_id = ?"), (enrollment_id,))
        row = cursor.fetchone()
        return None if row is None else self._open_bytes(row[0], "enrollment_audio.audio", row[1])

    def enrollment_audio(self, enrollment_id: int) -> bytes | None:
        with self._read() as cursor:
            return self._audio(cursor, enrollment_id)

    def list_current(
        self,
        *,
        speaker_glob: str | None = None,
        model_hash: str | None = None,
        stale_for: str | None = None,
        reveal: bool = False,
    ) -> Iterator[EnrollmentRecord]:
        select = ENROLLMENT_SELECT if reveal else LIST_SELECT
        sql, params = self._current_query(select, speaker_glob, model_hash, stale_for)
        with self._read() as cursor:
            cursor.execute(self._sql(sql), params)
            rows = cursor.fetchall()
        for row in rows:
            if speaker_glob and not fnmatch.fnmatchcase(row[1], speaker_glob):
                continue
            yield self._enrollment(row, reveal)

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

    def enrollments(
        self, *, speaker_glob: str | None = None, reveal: bool = False
    ) -> Iterator[EnrollmentRecord]:
        for row in self._rows_by_speaker(ENROLLMENT_SELECT, speaker_glob):
            yield self._enrollment(row, reveal)

    def _rows_by_speaker(self, select: str, speaker_glob: str | None) -> list[Sequence[Any]]:
        """The rows of a `SELECT id, speaker, ...` by speaker then id, of the speakers matching the glob."""
        sql, params = select, []
        prefix = glob_prefix(speaker_glob) if speaker_glob else ""
        if prefix:  # a range on the index; fnmatch below decides exactly, the same in both backends
            sql += " WHERE speaker >= ? AND speaker < ?"
            params = [prefix, prefix + "\U0010ffff"]
        with self._read() as cursor:
            cursor.execute(self._sql(sql + " ORDER BY speaker, id"), params)
            rows = cursor.fetchall()
        return [row for row in rows if not speaker_glob or fnmatch.fnmatchcase(row[1], speaker_glob)]

    def history(self, speaker: str, *, reveal: bool = False) -> list[EnrollmentRecord | VerificationRecord]:
        with self._read() as cursor:
            cursor.execute(self._sql(ENROLLMENT_SELECT + " WHERE speaker = ? ORDER BY id"), (speaker,))
            enrollments = [self._enrollment(row, reveal) for row in cursor.fetchall()]
            cursor.execute(self._sql(VERIFICATION_SELECT + " WHERE speaker = ? ORDER BY id"), (speaker,))
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
            self._seal_text(to_json(record.document), "verifications.document", record.speaker), created_at,
        )
        sql = self._sql(f"INSERT INTO verifications ({', '.join(VERIFICATION_COLUMNS)}) "
                        f"VALUES ({', '.join('?' for _ in VERIFICATION_COLUMNS)})")
        with self._write() as cursor:
            new_id = self._insert_id(cursor, sql, values)
        return VerificationRecord(**{**record.__dict__, "id": new_id, "created_at": created_at})

    # -- watch state ----------------------------------------------------------------------------
    def watch_files(self, inbox: str, *, reveal: bool = True, owed_only: bool = False) -> Iterator[WatchFile]:
        # in the order files reached a final state (the order their lines are owed), unfinished first;
        # a report not needed is not read (a year's inbox holds 1 KB of sealed line per file)
        report = "NULL" if not reveal else "CASE WHEN reported = 0 THEN report END" if owed_only else "report"
        columns = ", ".join(report if column == "report" else column for column in WATCH_COLUMNS)
        with self._read() as cursor:
            cursor.execute(self._sql(f"SELECT {columns} FROM watch_files WHERE inbox = ? "
                                     "ORDER BY COALESCE(final_seq, 0), relpath"), (inbox,))
            rows = cursor.fetchall()
        for row in rows:
            yield self._watch_file(inbox, row)

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
        return None if row is None else self._watch_file(inbox, row)

    def _watch_file(self, inbox: str, row: Sequence[Any]) -> WatchFile:
        """A watch_files row (WATCH_COLUMNS) as a WatchFile, its sealed report opened."""
        relpath, size, mtime_ns, state, attempts, call_id, report, reported, updated_at = row
        report = self._open_text(report, "watch_files.report", inbox, relpath)
        return WatchFile(
            key=WatchKey(relpath, int(size), int(mtime_ns)), state=state, attempts=int(attempts),
            call_id=call_id, report=from_json(report), reported=bool(reported), updated_at=updated_at,
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
                report_text = self._seal_text(to_json(report), "watch_files.report", inbox, key.relpath)
                reported = 0
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

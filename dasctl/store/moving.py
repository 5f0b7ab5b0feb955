"""Records that come from another store (`credentials import`): kept as they were, times and origin
included, added once however often they arrive, and never made current by the order they arrive in.

Mixed into SqlStore (sql.py), whose `_insert_enrollment` seals and inserts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dasctl.store import EnrollmentRecord, VerificationRecord
from dasctl.store.parts import StoreParts
from dasctl.store.rows import (
    VERIFICATION_COLUMNS,
    VERIFICATION_SELECT,
    from_json,
    now_iso,
    to_json,
    verification_from_row,
)

WATCH_FILE_SCHEMA = "dasctl.watch-file/1"


class Moving(StoreParts):
    """Import and the verification listing export needs."""

    def import_enrollment(self, record: EnrollmentRecord) -> bool:
        """Keep a record from another store; False when it is here already (by call id, else by content).
        Of a speaker's successes the newest by `created_at` is current, whatever the order of arrival."""
        created_at = record.created_at or now_iso()
        with self._write() as cursor:
            self._lock_speaker(cursor, record.speaker)
            if record.call_id is not None:
                cursor.execute(self._sql("SELECT id FROM enrollments WHERE speaker = ? AND call_id = ? "
                                         "AND ok = ?"), (record.speaker, record.call_id, int(record.ok)))
            else:
                cursor.execute(self._sql("SELECT id FROM enrollments WHERE speaker = ? AND created_at = ? "
                                         "AND ok = ? AND call_id IS NULL AND COALESCE(outcome, '') = ? "
                                         "AND COALESCE(model_hash, '') = ?"),
                               (record.speaker, created_at, int(record.ok), record.outcome or "",
                                record.model_hash or ""))
            if cursor.fetchone() is not None:
                return False
            superseded_at = record.superseded_at
            if record.ok and superseded_at is None:
                cursor.execute(self._sql("SELECT id, created_at FROM enrollments "
                                         "WHERE speaker = ? AND ok = 1 AND superseded_at IS NULL"),
                               (record.speaker,))
                current = cursor.fetchone()
                if current is not None and current[1] > created_at:
                    superseded_at = current[1]  # the newer one here stays current
                elif current is not None:
                    cursor.execute(self._sql("UPDATE enrollments SET superseded_at = ? WHERE id = ?"),
                                   (created_at, current[0]))
            self._insert_enrollment(cursor, record, created_at, superseded_at)
            return True

    def import_verification(self, record: VerificationRecord) -> bool:
        """Keep a verification from another store, its time kept; False when it is here already."""
        created_at = record.created_at or now_iso()
        with self._write() as cursor:
            if record.call_id is not None:
                cursor.execute(self._sql("SELECT id FROM verifications WHERE speaker = ? AND call_id = ?"),
                               (record.speaker, record.call_id))
            else:
                cursor.execute(self._sql("SELECT id FROM verifications WHERE speaker = ? AND created_at = ? "
                                         "AND call_id IS NULL"), (record.speaker, created_at))
            if cursor.fetchone() is not None:
                return False
            document = self._seal_text(to_json(record.document), "verifications.document", record.speaker)
            values = (
                record.speaker, int(record.ok), record.outcome, record.error, record.score,
                record.authenticity, record.voice_seconds, record.call_id, record.model_hash,
                record.enrollment_id, record.profile, record.service_url, record.protocol, record.source_path,
                record.source_sha256, document, created_at,
            )
            columns = ", ".join(VERIFICATION_COLUMNS)
            marks = ", ".join("?" for _ in VERIFICATION_COLUMNS)
            sql = self._sql(f"INSERT INTO verifications ({columns}) VALUES ({marks})")
            self._insert_id(cursor, sql, values)
            return True

    def verifications(self, *, speaker_glob: str | None = None) -> Iterator[VerificationRecord]:
        """Every verification by speaker then age (metadata: documents not opened)."""
        for row in self._rows_by_speaker(VERIFICATION_SELECT, speaker_glob):
            yield verification_from_row(row)

    # -- watch's state, moved with the store -----------------------------------------------------------
    def watch_state_rows(self, *, reveal: bool) -> Iterator[dict[str, Any]]:
        """Every watched file of every folder, in the order their outcomes were final: export's
        dasctl.watch-file/1 lines. The report line (it holds the credential) only when `reveal`."""
        with self._read() as cursor:
            cursor.execute("SELECT inbox, relpath, size, mtime_ns, state, attempts, call_id, report, "
                           "reported, updated_at FROM watch_files "
                           "ORDER BY inbox, COALESCE(final_seq, 0), relpath")
            rows = cursor.fetchall()
        for inbox, relpath, size, mtime_ns, state, attempts, call_id, report, reported, updated_at in rows:
            opened = self._open_text(report, "watch_files.report", inbox, relpath) if reveal else None
            yield {"schema": WATCH_FILE_SCHEMA, "inbox": inbox, "relpath": relpath, "size": int(size),
                   "mtime_ns": int(mtime_ns), "state": state, "attempts": int(attempts), "call_id": call_id,
                   "report": from_json(opened), "reported": bool(reported), "updated_at": updated_at}

    def import_watch_file(self, row: dict[str, Any]) -> bool:
        """Keep one watched file's state from another store (after the folder's others); False when known."""
        key = (row["inbox"], row["relpath"], row["size"], row["mtime_ns"])
        where = "inbox = ? AND relpath = ? AND size = ? AND mtime_ns = ?"
        with self._write() as cursor:
            cursor.execute(self._sql(f"SELECT state FROM watch_files WHERE {where}"), key)
            if cursor.fetchone() is not None:
                return False
            report = self._seal_text(to_json(row.get("report")), "watch_files.report", row["inbox"],
                                     row["relpath"]) if row.get("report") is not None else None
            cursor.execute(self._sql("SELECT COALESCE(MAX(final_seq), 0) + 1 FROM watch_files "
                                     "WHERE inbox = ?"), (row["inbox"],))
            final_seq = cursor.fetchone()[0] if row["state"] in ("done", "failed") else None
            cursor.execute(self._sql("INSERT INTO watch_files (inbox, relpath, size, mtime_ns, state, "
                                     "attempts, call_id, report, reported, final_seq, updated_at) "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                           (*key, row["state"], row["attempts"], row.get("call_id"), report,
                            int(bool(row.get("reported"))), final_seq, row.get("updated_at") or now_iso()))
            return True

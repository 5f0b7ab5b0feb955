"""Opt-out: a customer who withdrew consent. Their credentials and audio are destroyed (the history keeps
its metadata, without secrets), an opt-out record says who recorded it, when and why, and until `optin`
nothing enrolls or verifies them again: register, verify, reenroll and import refuse before any audio is
sent, watch skips their recordings (Amazon Connect Voice ID's OPTED_OUT status, done locally).

Mixed into SqlStore (sql.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dasctl.errors import ServiceRejected
from dasctl.store.audit import actor
from dasctl.store.parts import StoreParts
from dasctl.store.rows import from_json, now_iso

OPT_OUT_SCHEMA = "dasctl.opt-out/1"


class OptedOut(ServiceRejected):
    """The customer opted out: nothing is sent for them (exit 5, as a refusal by the service)."""

    kind = "opted-out"


@dataclass(frozen=True)
class OptOut:
    speaker: str
    at: str
    actor: str
    reason: str | None = None

    def document(self) -> dict[str, Any]:
        return {"schema": OPT_OUT_SCHEMA, "speaker": self.speaker, "at": self.at, "actor": self.actor,
                "reason": self.reason}


class Consent(StoreParts):
    """Opting out and in, and the check every enrolling command makes first."""

    def opt_out_of(self, speaker: str) -> OptOut | None:
        with self._read() as cursor:
            cursor.execute(self._sql("SELECT speaker, at, actor, reason FROM opt_outs WHERE speaker = ?"),
                           (speaker,))
            row = cursor.fetchone()
        return None if row is None else OptOut(*row)

    def refusal(self, speaker: str) -> str | None:
        """Why nothing may be kept or sent for this speaker (an opt-out), or None."""
        opted = self.opt_out_of(speaker)
        return None if opted is None else f"the customer {speaker} opted out on {opted.at[:10]}"

    def refuse_opted_out(self, speaker: str) -> None:
        """OptedOut (exit 5) when the speaker opted out: checked before any audio is sent."""
        why = self.refusal(speaker)
        if why:
            raise OptedOut(why, f"`dasctl credentials optin {speaker}` lifts it if the customer consents "
                                "again.")

    def opt_outs(self) -> list[OptOut]:
        with self._read() as cursor:
            cursor.execute("SELECT speaker, at, actor, reason FROM opt_outs ORDER BY speaker")
            return [OptOut(*row) for row in cursor.fetchall()]

    def opt_out(self, speaker: str, reason: str | None = None, *, at: str | None = None,
                who: str | None = None) -> int:
        """Destroy the speaker's secrets (credentials, audio, documents) and record the opt-out, in one
        transaction; the number of records whose secrets were destroyed. Opting out twice keeps the first
        record."""
        when = at or now_iso()
        with self._write() as cursor:
            self._lock_speaker(cursor, speaker)
            destroyed = self._destroy_secrets(cursor, "speaker = ?", (speaker,), when)
            cursor.execute(self._sql("SELECT speaker FROM opt_outs WHERE speaker = ?"), (speaker,))
            if cursor.fetchone() is None:
                cursor.execute(self._sql("INSERT INTO opt_outs (speaker, at, actor, reason) "
                                         "VALUES (?, ?, ?, ?)"),
                               (speaker, when, who or actor(), reason))
            self._scrub_watch_reports(cursor, {speaker})
        return destroyed

    def opt_in(self, speaker: str) -> bool:
        with self._write() as cursor:
            cursor.execute(self._sql("DELETE FROM opt_outs WHERE speaker = ?"), (speaker,))
            return int(cursor.rowcount) > 0

    def import_opt_out(self, opted: OptOut) -> bool:
        if self.opt_out_of(opted.speaker) is not None:
            return False
        self.opt_out(opted.speaker, opted.reason, at=opted.at, who=opted.actor)
        return True

    def _destroy_secrets(self, cursor: Any, where: str, params: tuple[Any, ...], when: str) -> int:
        """Destroy the secrets of the enrollments matching `where`, keep their metadata: no credential,
        document, listing line or audio; a current one is superseded (nothing to verify against)."""
        select = f"SELECT id FROM enrollments WHERE {where}"
        cursor.execute(self._sql(f"DELETE FROM enrollment_audio WHERE enrollment_id IN ({select})"), params)
        cursor.execute(self._sql(f"UPDATE enrollments SET credential = NULL, document = NULL, "
                                 f"listing = NULL, audio_size = NULL, "
                                 f"superseded_at = COALESCE(superseded_at, ?) "
                                 f"WHERE ({where}) AND (credential IS NOT NULL OR document IS NOT NULL "
                                 f"OR audio_size IS NOT NULL)"), (when, *params))
        destroyed = int(cursor.rowcount)
        if "speaker" in where:
            cursor.execute(self._sql(f"UPDATE verifications SET document = NULL WHERE {where}"), params)
        return destroyed

    def _scrub_watch_reports(self, cursor: Any, speakers: set[str]) -> None:
        """A watch report line holds the credential it printed: take it out for these speakers."""
        cursor.execute("SELECT inbox, relpath, size, mtime_ns, report FROM watch_files "
                       "WHERE report IS NOT NULL")
        for inbox, relpath, size, mtime_ns, report in cursor.fetchall():
            document = from_json(self._open_text(report, "watch_files.report", inbox, relpath))
            if not document or document.get("speaker") not in speakers or not document.get("credential"):
                continue
            document["credential"] = None
            import json

            cursor.execute(self._sql("UPDATE watch_files SET report = ? WHERE inbox = ? AND relpath = ? "
                                     "AND size = ? AND mtime_ns = ?"),
                           (self._seal_text(json.dumps(document, separators=(",", ":")), "watch_files.report",
                                            inbox, relpath), inbox, relpath, size, mtime_ns))

"""Retention: what is kept no longer than a written schedule says (BIPA's retention schedule, GDPR's storage
limitation). `credentials purge` applies a policy once; a profile's `retention` makes `watch` apply it at
start and every 24 hours. What is past its limit is destroyed, not hidden; the audit log says so (and is
itself never purged).

A policy, on the command line or in a profile's `retention` setting ("audio-older-than=90d,inactive-for=3y"):
- audio-older-than: the enrollment audio of records older than this (the records stay);
- failed-older-than: failed attempts older than this;
- older-than: every enrollment and verification older than this, current credentials included;
- inactive-for: everything about a speaker with no enrollment or verification for this long.
Durations are a whole number and a unit: 90d (days), 12w (weeks), 6m (months of 30 days), 3y (years of 365).

Mixed into SqlStore (sql.py).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from dasctl.errors import UsageError
from dasctl.store.parts import StoreParts

PURGE_SCHEMA = "dasctl.credential-purge/1"
DAY_S = 24 * 3600
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([dwmy])\s*$")
_UNIT_DAYS = {"d": 1, "w": 7, "m": 30, "y": 365}
POLICY_KEYS = ("audio-older-than", "failed-older-than", "older-than", "inactive-for")


def parse_duration(text: str, where: str) -> timedelta:
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"{where} {text!r} is not a duration",
                         "Write a whole number and a unit: 90d (days), 12w (weeks), 6m (months), 3y (years).")
    return timedelta(days=int(match.group(1)) * _UNIT_DAYS[match.group(2)])


@dataclass(frozen=True)
class RetentionPolicy:
    audio_older_than: timedelta | None = None
    failed_older_than: timedelta | None = None
    older_than: timedelta | None = None
    inactive_for: timedelta | None = None

    @property
    def empty(self) -> bool:
        return not any((self.audio_older_than, self.failed_older_than, self.older_than, self.inactive_for))

    @classmethod
    def parse(cls, setting: str, where: str = "retention") -> RetentionPolicy:
        """A profile's `retention` setting: "audio-older-than=90d,inactive-for=3y"."""
        values: dict[str, timedelta] = {}
        for part in (p.strip() for p in setting.split(",") if p.strip()):
            name, _, value = part.partition("=")
            name = name.strip()
            if name not in POLICY_KEYS or not value:
                raise UsageError(f"{where}: {part!r} is not a retention rule",
                                 f"Use {', '.join(k + '=DURATION' for k in POLICY_KEYS)}, comma-separated, "
                                 "e.g. audio-older-than=90d,inactive-for=3y.")
            values[name.replace("-", "_")] = parse_duration(value, f"{where} {name}")
        return cls(**values)


@dataclass
class PurgeReport:
    dry_run: bool
    audio: int = 0  # enrollment audio destroyed
    failed: int = 0  # failed attempts destroyed
    old: int = 0  # enrollments and verifications destroyed by age
    inactive: list[str] = field(default_factory=list)  # speakers removed whole
    inactive_records: int = 0

    def document(self, location: str) -> dict[str, Any]:
        return {"schema": PURGE_SCHEMA, "store": location, "dry_run": self.dry_run, "audio": self.audio,
                "failed": self.failed, "old": self.old, "inactive_speakers": self.inactive,
                "inactive_records": self.inactive_records}

    @property
    def total(self) -> int:
        return self.audio + self.failed + self.old + self.inactive_records


def _cutoff(age: timedelta, now: datetime | None = None) -> str:
    moment = (now or datetime.now(timezone.utc)) - age
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Retention(StoreParts):
    """Applying a retention policy."""

    def purge(self, policy: RetentionPolicy, *, dry_run: bool = False, command: str = "purge") -> PurgeReport:
        """Destroy what the policy says is past its limit (one transaction per rule), or only count it."""
        report = PurgeReport(dry_run)
        if policy.audio_older_than:
            report.audio = self._purge_audio(_cutoff(policy.audio_older_than), dry_run)
        if policy.failed_older_than:
            report.failed = self._purge_rows("ok = 0 AND created_at < ?", _cutoff(policy.failed_older_than),
                                             dry_run, verifications=False)
        if policy.older_than:
            report.old = self._purge_rows("created_at < ?", _cutoff(policy.older_than), dry_run,
                                          verifications=True)
        if policy.inactive_for:
            report.inactive, report.inactive_records = self._purge_inactive(_cutoff(policy.inactive_for),
                                                                            dry_run)
        if not dry_run and report.total:
            self.audit(command, report.inactive, report.total,
                       f"audio {report.audio}, failed {report.failed}, old {report.old}, "
                       f"inactive speakers {len(report.inactive)}")
        return report

    def _purge_audio(self, cutoff: str, dry_run: bool) -> int:
        old = "SELECT id FROM enrollments WHERE created_at < ? AND audio_size IS NOT NULL"
        with self._write() as cursor:
            if dry_run:
                cursor.execute(self._sql(f"SELECT COUNT(*) FROM ({old}) t"), (cutoff,))
                return int(cursor.fetchone()[0])
            cursor.execute(self._sql(f"DELETE FROM enrollment_audio WHERE enrollment_id IN ({old})"),
                           (cutoff,))
            # the listing line says has_audio: made again by the backend when listed
            cursor.execute(self._sql("UPDATE enrollments SET audio_size = NULL, listing = NULL "
                                     "WHERE created_at < ? AND audio_size IS NOT NULL"), (cutoff,))
            return int(cursor.rowcount)

    def _purge_rows(self, where: str, cutoff: str, dry_run: bool, *, verifications: bool) -> int:
        with self._write() as cursor:
            cursor.execute(self._sql(f"SELECT COUNT(*) FROM enrollments WHERE {where}"), (cutoff,))
            count = int(cursor.fetchone()[0])
            if verifications:
                cursor.execute(self._sql("SELECT COUNT(*) FROM verifications WHERE created_at < ?"),
                               (cutoff,))
                count += int(cursor.fetchone()[0])
            if dry_run:
                return count
            cursor.execute(self._sql(f"DELETE FROM enrollment_audio WHERE enrollment_id IN "
                                     f"(SELECT id FROM enrollments WHERE {where})"), (cutoff,))
            cursor.execute(self._sql(f"DELETE FROM enrollments WHERE {where}"), (cutoff,))
            if verifications:
                cursor.execute(self._sql("DELETE FROM verifications WHERE created_at < ?"), (cutoff,))
            return count

    def _purge_inactive(self, cutoff: str, dry_run: bool) -> tuple[list[str], int]:
        activity = ("SELECT speaker FROM (SELECT speaker, created_at FROM enrollments UNION ALL "
                    "SELECT speaker, created_at FROM verifications) activity GROUP BY speaker "
                    "HAVING MAX(created_at) < ?")
        with self._write() as cursor:
            cursor.execute(self._sql(activity + " ORDER BY speaker"), (cutoff,))
            speakers = [str(row[0]) for row in cursor.fetchall()]
            count = 0
            for speaker in speakers:
                cursor.execute(self._sql("SELECT (SELECT COUNT(*) FROM enrollments WHERE speaker = ?) + "
                                         "(SELECT COUNT(*) FROM verifications WHERE speaker = ?)"),
                               (speaker, speaker))
                count += int(cursor.fetchone()[0])
                if not dry_run:
                    cursor.execute(self._sql("DELETE FROM enrollment_audio WHERE enrollment_id IN "
                                             "(SELECT id FROM enrollments WHERE speaker = ?)"), (speaker,))
                    cursor.execute(self._sql("DELETE FROM enrollments WHERE speaker = ?"), (speaker,))
                    cursor.execute(self._sql("DELETE FROM verifications WHERE speaker = ?"), (speaker,))
            return speakers, count


def start_retention(
    store: Any, setting: str | None, warn: Callable[[str], None], every_s: float = DAY_S
) -> threading.Event | None:
    """For `watch`: apply the profile's retention policy now and every `every_s` in a daemon thread; the
    returned event stops it. None when the profile has no policy. A bad policy is a UsageError now."""
    if not setting:
        return None
    policy = RetentionPolicy.parse(setting)
    if policy.empty:
        return None
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                report = store.purge(policy, command="watch retention")
                if report.total:
                    warn(f"retention: destroyed audio of {report.audio}, {report.failed} failed attempt(s), "
                         f"{report.old} old record(s), {len(report.inactive)} inactive speaker(s)")
            except Exception as error:  # a store that went away: the next round tries again
                warn(f"retention could not be applied: {error}")
            stop.wait(every_s)

    threading.Thread(target=run, name="dasctl-retention", daemon=True).start()
    return stop

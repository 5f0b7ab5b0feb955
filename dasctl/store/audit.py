"""The audit log: every read of a secret (a credential shown, exported, verified against; audio written)
and every destruction (rm, optout, purge, rekey) appends one row: when, who (OS user@host), which command,
which speakers, how many records. A row holds no secret, and the retention policy never purges it.

Mixed into SqlStore (sql.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dasctl.store.parts import StoreParts
from dasctl.store.rows import now_iso

AUDIT_SCHEMA = "dasctl.audit/1"
#: speakers named in one row at most (a purge of 100,000 says how many, and the first ones)
_SPEAKERS_KEPT = 1000


@dataclass(frozen=True)
class AuditRow:
    at: str
    actor: str
    command: str
    speakers: list[str]
    count: int
    detail: str | None = None
    id: int | None = None

    def document(self) -> dict[str, Any]:
        return {"schema": AUDIT_SCHEMA, "id": self.id, "at": self.at, "actor": self.actor,
                "command": self.command, "speakers": self.speakers, "count": self.count,
                "detail": self.detail}


def actor() -> str:
    """Who runs this process: OS user@host (what a log line of sshd or sudo names)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (a container's arbitrary uid)
        import os

        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class Audit(StoreParts):
    """Appending to and reading the audit log."""

    def audit(self, command: str, speakers: list[str], count: int, detail: str | None = None) -> None:
        """Append one row (its own transaction, durable before the command goes on)."""
        named = sorted(set(speakers))[:_SPEAKERS_KEPT]
        with self._write() as cursor:
            cursor.execute(self._sql("INSERT INTO audit_log (at, actor, command, speakers, count, detail) "
                                     "VALUES (?, ?, ?, ?, ?, ?)"),
                           (now_iso(), actor(), command, json.dumps(named, ensure_ascii=False), count,
                            detail))

    def audit_rows(self, *, since: str | None = None, until: str | None = None) -> Iterator[AuditRow]:
        sql, params = "SELECT id, at, actor, command, speakers, count, detail FROM audit_log WHERE 1 = 1", []
        if since:
            sql += " AND at >= ?"
            params.append(since)
        if until:
            sql += " AND at < ?"
            params.append(until)
        with self._read() as cursor:
            cursor.execute(self._sql(sql + " ORDER BY at, id"), params)
            rows = cursor.fetchall()
        for id_, at, who, command, speakers, count, detail in rows:
            yield AuditRow(at, who, command, json.loads(speakers), int(count), detail, int(id_))

    def import_audit(self, row: AuditRow) -> bool:
        """Keep an audit row from another store as it was; False when it is here already."""
        speakers = json.dumps(row.speakers, ensure_ascii=False)
        with self._write() as cursor:
            cursor.execute(self._sql("SELECT id FROM audit_log WHERE at = ? AND actor = ? AND command = ? "
                                     "AND speakers = ?"), (row.at, row.actor, row.command, speakers))
            if cursor.fetchone() is not None:
                return False
            cursor.execute(self._sql("INSERT INTO audit_log (at, actor, command, speakers, count, detail) "
                                     "VALUES (?, ?, ?, ?, ?, ?)"),
                           (row.at, row.actor, row.command, speakers, row.count, row.detail))
            return True

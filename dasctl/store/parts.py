"""What every part of SqlStore (sealing, moving, audit, consent, retention) may call on the others:
declared once here, defined by SqlStore (sql.py), the backends, and sealing.py."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from dasctl.store import EnrollmentRecord


class StoreParts:
    """The hooks the SqlStore mixins share; each raises until the class that defines it is mixed in."""

    location: str
    read_only: bool

    def _write(self) -> AbstractContextManager[Any]:
        """A write transaction (a cursor), serialised against other writers, committed on exit."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Any]:
        """A cursor for reading one consistent snapshot."""
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        raise NotImplementedError

    def _insert_id(self, cursor: Any, sql: str, params: Any) -> int:
        raise NotImplementedError

    def _lock_speaker(self, cursor: Any, speaker: str) -> None:
        raise NotImplementedError

    def _rows_by_speaker(self, select: str, speaker_glob: str | None) -> list[Any]:
        raise NotImplementedError

    def _scrub(self) -> None:
        """Leave no old page or row version holding what was just sealed or destroyed."""

    def _seal_text(self, value: str | None, label: str, *parts: str) -> str | None:
        raise NotImplementedError

    def _open_text(self, value: str | None, label: str, *parts: str) -> str | None:
        raise NotImplementedError

    def _insert_enrollment(
        self, cursor: Any, record: EnrollmentRecord, created_at: str, superseded_at: str | None
    ) -> EnrollmentRecord:
        raise NotImplementedError

    def audit(self, command: str, speakers: list[str], count: int, detail: str | None = None) -> None:
        raise NotImplementedError

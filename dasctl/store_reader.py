"""The credential store as the Python API reads it: `client.store.list()`, `.current()`, `.history()`,
`.export()`, through the store's own interface (dasctl.store), blocking or awaitable.

Each call opens the store, reads, and closes it again: a long-lived client holds no connection or file
lock between calls. No Typer or rich here.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import Callable
from contextlib import closing
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dasctl.store import EnrollmentRecord, Store, VerificationRecord


class StoreReader:
    """Read the credential store a client uses (blocking)."""

    def __init__(self, open_store: Callable[[], Store]) -> None:
        self._open = open_store

    def list(
        self, speaker: str | None = None, *, model_hash: str | None = None, stale_for: str | None = None
    ) -> list[EnrollmentRecord]:
        """Each speaker's current credential (`dasctl credentials list`): speakers matching a glob
        (fnmatch, e.g. 'team-a-*'), made with a model hash, or stale for one (made with any other)."""
        with closing(self._open()) as store:
            # credentials when this process holds the store's key, metadata otherwise (docs/store.md)
            records = list(store.list_current(speaker_glob=speaker, model_hash=model_hash,
                                              stale_for=stale_for, reveal=store.encrypted))
            _audit_read(store, "python list", [r.speaker for r in records if r.credential])
            return records

    def current(self, speaker: str) -> EnrollmentRecord | None:
        """The speaker's current credential, or None."""
        with closing(self._open()) as store:
            record = store.current(speaker, reveal=store.encrypted)
            _audit_read(store, "python current", [speaker] if record and record.credential else [])
            return record

    def history(self, speaker: str) -> builtins.list[EnrollmentRecord | VerificationRecord]:
        """Every enrollment attempt and verification of a speaker, oldest first (`credentials history`)."""
        with closing(self._open()) as store:
            entries = store.history(speaker, reveal=store.encrypted)
            revealed = sum(1 for e in entries if getattr(e, "credential", None))
            if revealed:
                store.audit("python history", [speaker], revealed)
            return entries

    def export(
        self, target: str | os.PathLike[str] | IO[str] | None = None, *, speaker: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Every enrollment attempt (superseded and failed ones too) as the dasctl.credential/1 documents
        `dasctl credentials export` writes; with `target` (a path or a text file), also written there as
        NDJSON, which `dasctl credentials import` reads back."""
        from dasctl.results import json_line
        from dasctl.store.records import credential_document

        with closing(self._open()) as store:
            documents = [credential_document(record)
                         for record in store.enrollments(speaker_glob=speaker, reveal=store.encrypted)]
            if store.encrypted and documents:
                store.audit("python export", sorted({str(d["speaker"]) for d in documents}), len(documents))
        if target is None:
            return documents
        text = "".join(json_line(document) + "\n" for document in documents)
        if isinstance(target, (str, os.PathLike)):
            from pathlib import Path

            from dasctl.atomic_file import write_atomically

            write_atomically(Path(target), text.encode("utf-8"))  # credentials: mode 0600, never half-written
        else:
            target.write(text)
            target.flush()
        return documents


def _audit_read(store: Store, command: str, speakers: builtins.list[str]) -> None:
    """Every read of a credential is an audit row (docs/store.md, The audit log), from Python too."""
    if speakers:
        store.audit(command, sorted(set(speakers)), len(speakers))


class AsyncStoreReader:
    """StoreReader for async code: the same methods, awaited (the store is read in a worker thread)."""

    def __init__(self, open_store: Callable[[], Store]) -> None:
        self._reader = StoreReader(open_store)

    async def list(
        self, speaker: str | None = None, *, model_hash: str | None = None, stale_for: str | None = None
    ) -> list[EnrollmentRecord]:
        """StoreReader.list."""
        return await asyncio.to_thread(self._reader.list, speaker, model_hash=model_hash, stale_for=stale_for)

    async def current(self, speaker: str) -> EnrollmentRecord | None:
        """StoreReader.current."""
        return await asyncio.to_thread(self._reader.current, speaker)

    async def history(self, speaker: str) -> builtins.list[EnrollmentRecord | VerificationRecord]:
        """StoreReader.history."""
        return await asyncio.to_thread(self._reader.history, speaker)

    async def export(
        self, target: str | os.PathLike[str] | IO[str] | None = None, *, speaker: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """StoreReader.export."""
        return await asyncio.to_thread(self._reader.export, target, speaker=speaker)

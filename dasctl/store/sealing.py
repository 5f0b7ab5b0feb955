"""The store's side of encryption at rest: its data keys, sealing what it writes, opening what it reads,
sealing a plaintext store once, re-wrapping (rekey), and telling which key holds what (key status).

What is sealed: the credential, the enrollment audio, and every stored JSON document (a register or watch
document carries the credential). What is not: speaker ids, times, model hashes, outcomes, scores, sizes,
hashes of the recordings: what `list`, `history` and the auditors query. Those need no key.

Mixed into SqlStore (sql.py); the backends add `_scrub` (what "erased" takes in each database).
"""

from __future__ import annotations

from typing import Any

from dasctl.store import StoreUnusable
from dasctl.store.crypto import (
    Sealer,
    SealError,
    associated,
    data_key_of,
    is_sealed_bytes,
    is_sealed_text,
    kek_id,
    new_key,
    unwrap,
    wrap,
)
from dasctl.store.parts import StoreParts
from dasctl.store.vault import StoreKey, StoreKeyError

SEALED_MARK = "sealed"
_BATCH = 500


class Sealing(StoreParts):
    """Encryption at rest for a SqlStore."""

    _sealer: Sealer | None = None
    _key: StoreKey | None = None
    _key_problem: StoreKeyError | None = None
    _data_keys: dict[int, bytes]
    _pending_rows: list[tuple[int, str, bytes]] | None = None

    # -- opening ----------------------------------------------------------------------------------
    def _setup_sealing(self, key: StoreKey) -> None:
        from dasctl.store.rows import now_iso

        self._key, self._data_keys = key, {}
        rows = self._key_rows()
        if not rows and self.read_only:  # nothing was ever sealed in it, and nothing can be written
            self._key_problem = self._missing(new_store=True)
            return
        if not rows:
            if key.kek is None and key.create is not None:
                key = self._key = key.create()
            if key.kek is None:
                self._key_problem = self._missing(new_store=True)
                return
            with self._write() as cursor:
                self._lock_speaker(cursor, "\0store_keys")  # two first opens make one data key
                cursor.execute("SELECT id FROM store_keys")
                if cursor.fetchone() is None:
                    self._insert_id(cursor, self._sql("INSERT INTO store_keys (kek_id, wrapped, created_at) "
                                                      "VALUES (?, ?, ?)"),
                                    (kek_id(key.kek), wrap(key.kek, new_key()), now_iso()))
            rows = self._key_rows()
        if key.kek is None:
            self._key_problem = self._missing(new_store=False)
            return
        # unwrapped when first needed: a listing (or a shell completion) never touches the cipher
        self._pending_rows = rows
        if not self.read_only and not self._is_marked():
            self._load_sealer()
            if self._sealer is not None:
                self._seal_plaintext()

    def _load_sealer(self) -> None:
        """Unwrap the data keys this process's key opens (once); the wrong key becomes the key problem."""
        rows, self._pending_rows = self._pending_rows, None
        if rows is None or self._key is None or self._key.kek is None:
            return
        self._data_keys = self._unwrap(rows, self._key.kek)
        if not self._data_keys:
            held = ", ".join(sorted({row[1] for row in rows}))
            self._key_problem = StoreKeyError(
                f"the store key from {self._key.source} (id {kek_id(self._key.kek)}) does not open the "
                f"credential store {self.location} (its data key is wrapped by key id {held})",
                "Pass the key this store was made or last rekeyed with.",
            )
            return
        self._sealer = Sealer(self._data_keys, max(self._data_keys))

    def _key_rows(self) -> list[tuple[int, str, bytes]]:
        with self._read() as cursor:
            cursor.execute("SELECT id, kek_id, wrapped FROM store_keys ORDER BY id")
            return [(int(i), str(k), bytes(w)) for i, k, w in cursor.fetchall()]

    @staticmethod
    def _unwrap(rows: list[tuple[int, str, bytes]], kek: bytes) -> dict[int, bytes]:
        mine = kek_id(kek)
        opened = {key_id: unwrap(kek, wrapped) for key_id, held, wrapped in rows if held == mine}
        return {key_id: data_key for key_id, data_key in opened.items() if data_key is not None}

    def _is_marked(self) -> bool:
        with self._read() as cursor:
            cursor.execute(self._sql("SELECT value FROM store_meta WHERE name = ?"), (SEALED_MARK,))
            return cursor.fetchone() is not None

    def _missing(self, *, new_store: bool) -> StoreKeyError:
        looked = self._key.looked_text() if self._key else ""
        if new_store:
            return StoreKeyError(
                f"the credential store {self.location} has no key, and dasctl makes one implicitly only for "
                f"a local SQLite store (looked in: {looked})",
                "Make one: `dasctl credentials key new > store.key`; then pass it with --store-key-file, "
                "DASCTL_STORE_KEY_FILE, DASCTL_STORE_KEY or `dasctl config set store_key_file PATH`.",
            )
        return StoreKeyError(
            f"no key for the encrypted credential store {self.location} (looked in: {looked})",
            "Pass its key with --store-key-file FILE, DASCTL_STORE_KEY_FILE, DASCTL_STORE_KEY or the "
            "profile's store_key_file. Metadata (list, history) needs no key.",
        )

    # -- what callers see -------------------------------------------------------------------------
    @property
    def encrypted(self) -> bool:
        self._load_sealer()
        return self._sealer is not None

    def require_secrets(self, *, write: bool = True) -> None:
        """Raise StoreKeyError (exit 4) unless this process can read and write the store's secrets, and
        (`write`) StoreError (exit 6) when a write would fail (a read-only file, a full disk): what
        register, verify, reenroll and watch check before any session starts."""
        if self.read_only:
            from dasctl.store import StoreError

            raise StoreError(f"the credential store {self.location} is read-only, and every read of a secret "
                             "is recorded in its audit log",
                             "Copy it somewhere writable to read its secrets; list, show and history "
                             "without --show-credential, export without secrets and audit work as they are.")
        self._load_sealer()
        if self._key_problem is not None:
            raise self._key_problem
        problem = self.writable_problem() if write else None
        if problem:
            from dasctl.store import StoreError

            raise StoreError(f"cannot write to the credential store: {problem}",
                             "Nothing was sent. Free the disk or fix the permissions, then run it again.")

    def writable_problem(self) -> str | None:
        """Why a write would fail, found without writing (the backends know), or None."""
        return None

    def _sealer_or_fail(self) -> Sealer:
        self._load_sealer()
        if self._sealer is None:
            raise self._key_problem or StoreKeyError(f"no key for the credential store {self.location}")
        return self._sealer

    # -- sealing and opening values ---------------------------------------------------------------
    def _seal_text(self, value: str | None, label: str, *parts: str) -> str | None:
        return None if value is None else self._sealer_or_fail().seal_text(value, associated(label, *parts))

    def _seal_bytes(self, value: bytes | None, label: str, *parts: str) -> bytes | None:
        return None if value is None else self._sealer_or_fail().seal(value, associated(label, *parts))

    def _open_text(self, value: str | None, label: str, *parts: str) -> str | None:
        if value is None or not is_sealed_text(value):
            return value  # a store sealed by no key yet: its plaintext, as it was
        try:
            return self._sealer_or_fail().open_text(value, associated(label, *parts))
        except SealError as error:
            raise self._unreadable(label, parts, error) from None

    def _open_bytes(self, value: bytes | None, label: str, *parts: str) -> bytes | None:
        if value is None or not is_sealed_bytes(value):
            return None if value is None else bytes(value)
        try:
            return self._sealer_or_fail().open(value, associated(label, *parts))
        except SealError as error:
            raise self._unreadable(label, parts, error) from None

    def _unreadable(self, label: str, parts: tuple[str, ...], error: SealError) -> StoreUnusable:
        return StoreUnusable(f"cannot decrypt {label} of {parts[0] if parts else '?'} in the store "
                             f"{self.location}: {error}", "Restore the store from a backup.")

    # -- sealing a plaintext store, once ----------------------------------------------------------
    def _seal_plaintext(self) -> None:
        """Seal every value still in the clear, a batch per transaction: interrupted, the next open goes on
        where it stopped (a sealed value is never sealed twice). Then mark the store and scrub."""
        from dasctl.store.rows import now_iso

        self._seal_tables()
        with self._write() as cursor:
            # ON CONFLICT: two first opens of a plaintext store both seal it (each value once)
            cursor.execute(self._sql("INSERT INTO store_meta (name, value) VALUES (?, ?) "
                                     "ON CONFLICT (name) DO NOTHING"),
                           (SEALED_MARK, now_iso()))
        self._scrub()

    def _seal_tables(self) -> None:
        tables = (
            ("SELECT id, speaker, credential, document FROM enrollments WHERE id > ? ORDER BY id",
             self._seal_enrollment_rows),
            ("SELECT a.enrollment_id, e.speaker, a.audio FROM enrollment_audio a JOIN enrollments e "
             "ON e.id = a.enrollment_id WHERE a.enrollment_id > ? ORDER BY a.enrollment_id",
             self._seal_audio_rows),
            ("SELECT id, speaker, document FROM verifications WHERE id > ? ORDER BY id",
             self._seal_verification_rows),
        )
        for query, seal in tables:
            last = 0
            while True:
                with self._write() as cursor:
                    cursor.execute(self._sql(f"{query} LIMIT {_BATCH}"), (last,))
                    rows = cursor.fetchall()
                    if rows:
                        seal(cursor, rows)
                if len(rows) < _BATCH:
                    break
                last = rows[-1][0]
        with self._write() as cursor:
            cursor.execute("SELECT inbox, relpath, size, mtime_ns, report FROM watch_files "
                           "WHERE report IS NOT NULL")
            for inbox, relpath, size, mtime_ns, report in cursor.fetchall():
                if not is_sealed_text(report):
                    cursor.execute(self._sql("UPDATE watch_files SET report = ? WHERE inbox = ? "
                                             "AND relpath = ? AND size = ? AND mtime_ns = ?"),
                                   (self._seal_text(report, "watch_files.report", inbox, relpath), inbox,
                                    relpath, size, mtime_ns))

    def _seal_enrollment_rows(self, cursor: Any, rows: list[Any]) -> None:
        for id_, speaker, credential, document in rows:
            if (credential is None or is_sealed_text(credential)) and (document is None or
                                                                       is_sealed_text(document)):
                continue
            # the listing line held the credential: rebuilt without it by the backend when listed
            cursor.execute(self._sql("UPDATE enrollments SET credential = ?, document = ?, listing = NULL "
                                     "WHERE id = ?"),
                           (credential if is_sealed_text(credential) else
                            self._seal_text(credential, "enrollments.credential", speaker),
                            document if is_sealed_text(document) else
                            self._seal_text(document, "enrollments.document", speaker), id_))

    def _seal_audio_rows(self, cursor: Any, rows: list[Any]) -> None:
        for enrollment_id, speaker, audio in rows:
            if not is_sealed_bytes(audio):
                cursor.execute(self._sql("UPDATE enrollment_audio SET audio = ? WHERE enrollment_id = ?"),
                               (self._seal_bytes(bytes(audio), "enrollment_audio.audio", speaker),
                                enrollment_id))

    def _seal_verification_rows(self, cursor: Any, rows: list[Any]) -> None:
        for id_, speaker, document in rows:
            if document is not None and not is_sealed_text(document):
                cursor.execute(self._sql("UPDATE verifications SET document = ? WHERE id = ?"),
                               (self._seal_text(document, "verifications.document", speaker), id_))

    # -- rekey and status ---------------------------------------------------------------------------
    def rekey(self, new_kek: bytes) -> tuple[int, int]:
        """Re-wrap every data key under `new_kek`, one transaction each: interrupted, nothing is lost (each
        data key is wrapped by the old key or the new one), and running it again finishes the job. Records
        are not rewritten, so a running `watch` (its data key in memory) keeps working. (re-wrapped,
        already under the new key)"""
        self._load_sealer()
        rows = self._key_rows()
        new_id = kek_id(new_kek)
        known = {**self._data_keys, **self._unwrap(rows, new_kek)}
        if not known and rows:
            raise self._key_problem or self._missing(new_store=False)
        rewrapped = already = 0
        for key_id, held, _ in rows:
            if held == new_id:
                already += 1
                continue
            if key_id not in known:
                raise StoreKeyError(f"data key {key_id} of {self.location} is wrapped by key id {held}, "
                                    "which is neither the current key nor the new one")
            with self._write() as cursor:
                cursor.execute(self._sql("UPDATE store_keys SET kek_id = ?, wrapped = ? WHERE id = ?"),
                               (new_id, wrap(new_kek, known[key_id]), key_id))
            rewrapped += 1
        return rewrapped, already

    def key_status(self) -> dict[str, Any]:
        """Which key opens this store, the data keys and how many values each seals (metadata only)."""
        self._load_sealer()
        counts: dict[str, dict[str, int]] = {}

        def count(kind: str, value: object) -> None:
            data_key = data_key_of(value)
            bucket = counts.setdefault("plaintext" if data_key is None else str(data_key), {})
            bucket[kind] = bucket.get(kind, 0) + 1

        with self._read() as cursor:
            cursor.execute("SELECT id, kek_id, created_at FROM store_keys ORDER BY id")
            keys = cursor.fetchall()
            cursor.execute("SELECT COALESCE(credential, document) FROM enrollments "
                           "WHERE credential IS NOT NULL OR document IS NOT NULL")
            for (value,) in cursor.fetchall():
                count("enrollments", value)
            cursor.execute("SELECT substr(audio, 1, 8) FROM enrollment_audio")
            for (value,) in cursor.fetchall():
                count("audio", bytes(value))
            cursor.execute("SELECT document FROM verifications WHERE document IS NOT NULL")
            for (value,) in cursor.fetchall():
                count("verifications", value)
        mine = kek_id(self._key.kek) if self._key and self._key.kek else None
        return {
            "store": self.location,
            "key": {"id": mine, "source": self._key.source if self._key else None,
                    "opens": self._sealer is not None},
            "data_keys": [{"id": int(i), "kek_id": k, "created_at": c, "records": counts.get(str(i), {})}
                          for i, k, c in keys],
            "plaintext": counts.get("plaintext", {}),
        }

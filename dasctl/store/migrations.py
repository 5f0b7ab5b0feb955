"""The store's schema, as forward migrations (simonw/llm's migrations.py style).

Each migration is a small function registered in order; its name is recorded in `_dasctl_migrations` when
applied, and every open applies the ones not recorded yet, in one transaction. Never edit or reorder a
released migration: add a new one. Both backends run the same statements; the few column types that differ
are written as {placeholders} and filled from the backend's `types` (see sqlite.py, postgres.py).
"""

from __future__ import annotations

from collections.abc import Callable

#: the table that records which migrations a store has had
MIGRATIONS_TABLE = "_dasctl_migrations"

Migration = Callable[[], list[str]]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(function: Migration) -> Migration:
    """Register a migration; they run in the order they are defined."""
    MIGRATIONS.append((function.__name__, function))
    return function


@migration
def m001_enrollments_and_verifications() -> list[str]:
    return [
        """CREATE TABLE enrollments (
            id {id},
            speaker TEXT NOT NULL,
            ok INTEGER NOT NULL,
            origin TEXT NOT NULL,
            outcome TEXT,
            error TEXT,
            credential TEXT,
            model_hash TEXT,
            profile TEXT,
            service_url TEXT,
            call_id TEXT,
            protocol TEXT,
            authenticity {real},
            voice_seconds {real},
            source_path TEXT,
            source_size {bigint},
            source_sha256 TEXT,
            document TEXT,
            created_at TEXT NOT NULL,
            superseded_at TEXT,
            audio_size {bigint}
        )""",
        "CREATE INDEX enrollments_speaker ON enrollments (speaker, id)",
        # one current credential per speaker, enforced by the database itself
        "CREATE UNIQUE INDEX enrollments_current ON enrollments (speaker)"
        " WHERE ok = 1 AND superseded_at IS NULL",
        # record_enrollment is idempotent on (speaker, call_id, ok): imports and retries add nothing twice
        "CREATE UNIQUE INDEX enrollments_call ON enrollments (speaker, call_id, ok)"
        " WHERE call_id IS NOT NULL",
        # the audio apart, so that listing thousands of records never reads it
        """CREATE TABLE enrollment_audio (
            enrollment_id {bigint} PRIMARY KEY REFERENCES enrollments (id) ON DELETE CASCADE,
            audio {blob} NOT NULL
        )""",
        """CREATE TABLE verifications (
            id {id},
            speaker TEXT NOT NULL,
            ok INTEGER NOT NULL,
            outcome TEXT,
            error TEXT,
            score {real},
            authenticity {real},
            voice_seconds {real},
            call_id TEXT,
            model_hash TEXT,
            enrollment_id {bigint},
            profile TEXT,
            service_url TEXT,
            protocol TEXT,
            source_path TEXT,
            source_sha256 TEXT,
            document TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX verifications_speaker ON verifications (speaker, id)",
    ]


@migration
def m002_watch_state() -> list[str]:
    # `dasctl watch`'s journal, per watched folder: it used to be a JSON-lines file inside the folder
    return [
        """CREATE TABLE watch_files (
            inbox TEXT NOT NULL,
            relpath TEXT NOT NULL,
            size {bigint} NOT NULL,
            mtime_ns {bigint} NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            call_id TEXT,
            report TEXT,
            reported INTEGER NOT NULL DEFAULT 0,
            final_seq {bigint},
            updated_at TEXT NOT NULL,
            PRIMARY KEY (inbox, relpath, size, mtime_ns)
        )""",
    ]


@migration
def m003_current_listing() -> list[str]:
    # each success's `credentials list --json` line, made once when it is kept: listing 100,000 speakers
    # is then reading text, not building JSON (NULL for rows kept before: the backend builds theirs)
    return ["ALTER TABLE enrollments ADD COLUMN listing TEXT"]


def statements(name: str, function: Migration, types: dict[str, str]) -> list[str]:
    """A migration's statements with the backend's column types filled in."""
    return [statement.format(**types) for statement in function()]


@migration
def m004_store_keys() -> list[str]:
    # envelope encryption (crypto.py): each data key wrapped by the key the user holds, named by its id in
    # every ciphertext; `store_meta` says when the last plaintext was sealed (a migration done once)
    return [
        """CREATE TABLE store_keys (
            id {id},
            kek_id TEXT NOT NULL,
            wrapped {blob} NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE TABLE store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ]


@migration
def m005_audit_log() -> list[str]:
    # who read a secret or destroyed something, when (never a secret itself; never purged by retention)
    return [
        """CREATE TABLE audit_log (
            id {id},
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            command TEXT NOT NULL,
            speakers TEXT NOT NULL,
            count {bigint} NOT NULL,
            detail TEXT
        )""",
        "CREATE INDEX audit_log_at ON audit_log (at)",
    ]


@migration
def m006_opt_outs() -> list[str]:
    # a customer who withdrew consent: never enrolled or verified again until opted in (GDPR art. 7(3))
    return [
        """CREATE TABLE opt_outs (
            speaker TEXT PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT
        )""",
    ]


@migration
def m007_consent_reference() -> list[str]:
    # the consent an enrollment was made under (register --consent, watch --consent-from): metadata, kept
    # through opt-outs and purges as evidence; the listing lines made before it gain the field (null) so
    # that every `credentials list --json` line has the same fields (`}}`: statements are str.format'ed)
    return [
        "ALTER TABLE enrollments ADD COLUMN consent TEXT",
        "UPDATE enrollments SET listing = substr(listing, 1, length(listing) - 1) || ',\"consent\":null}}'"
        " WHERE listing IS NOT NULL",
    ]

"""`dasctl credentials list|show|history|export|import|audio|rm`: what the credential store keeps."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, closing, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dasctl.cli import common
from dasctl.cli.usage import compose_help
from dasctl.errors import AudioError, BatchFailed, UsageError

if TYPE_CHECKING:
    from dasctl.environment import Environment
    from dasctl.store import EnrollmentRecord, Store, VerificationRecord

REMOVED_SCHEMA = "dasctl.credential-removed/1"
IMPORTED_SCHEMA = "dasctl.credential-import/1"
AUDIO_SCHEMA = "dasctl.credential-audio/1"

_EXIT_CODES = "0 done; 2 usage error (unknown speaker, unusable store file); 6 the store could not be " \
    "reached or written"

credentials_app = typer.Typer(
    name="credentials",
    help=compose_help(
        "List, show, export, import and remove what the credential store keeps (docs/store.md).",
        "Every register and watch attempt is kept under a speaker id; a re-enrollment supersedes the older "
        "credential, which stays in the speaker's history.",
        examples=[
            "dasctl credentials list",
            "dasctl credentials history CUST12345",
            "dasctl credentials export > credentials.ndjson",
        ],
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)

SpeakerArgument = Annotated[str, typer.Argument(metavar="SPEAKER", help="The speaker id, e.g. CUST12345.")]
ShowCredentialOption = Annotated[
    bool, typer.Option("--show-credential", help="Show credentials whole in tables (JSON always does).")
]


def _help(summary: str, examples: str, exit_codes: str = _EXIT_CODES) -> str:
    """The common help layout (cli/usage.py) from examples one per line and exit codes split on `;`."""
    return compose_help(
        summary,
        examples=[line.strip() for line in examples.splitlines() if line.strip()],
        exit_codes="\n".join(code.strip() for code in exit_codes.split(";")),
    )


# --- shared pieces ---------------------------------------------------------------------------------
def _open(store: str | None) -> Store:
    from dasctl.config import load_profile

    return common.open_store_option(store, load_profile(common.profile_name(None)))


def _unknown(speaker: str) -> UsageError:
    return UsageError(f"no speaker {speaker!r} in the credential store",
                      "`dasctl credentials list` shows the speakers kept.")


def _mask(credential: str | None, show: bool) -> str:
    """Masked as tokens are (auth.mask), plus the last characters: credentials share their first ones."""
    from dasctl.results import masked_credential

    if not credential:
        return "-"
    if show:
        return credential
    return masked_credential(credential)


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _write_lines(environment: Environment, documents: Iterable[dict[str, Any]]) -> int:
    from dasctl.results import json_line

    out = environment.stdout
    count = 0
    for document in documents:
        out.write(json_line(document))
        out.write("\n")
        count += 1
    out.flush()
    return count


def _table(
    environment: Environment, headers: list[str], rows: Iterable[list[str]], time_column: int | None = None,
    whole_columns: tuple[int, ...] = (),
) -> None:
    """A rich table on a terminal; tab-separated lines (no header) when piped.

    The time column keeps its full timestamp when piped; on a terminal it is shown to the second and
    never wrapped or cut (2026-11-25T20:18:16.488Z -> 2026-11-25 20:18:16Z).
    """
    out = environment.stdout
    if not environment.stdout_isatty:
        for row in rows:
            out.write("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row) + "\n")
        out.flush()
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    shown = [[_to_the_second(cell) if index == time_column else cell for index, cell in enumerate(row)]
             for row in rows]
    console = Console(file=out, no_color=environment.no_color or "NO_COLOR" in environment.env)
    # a whole column (a model hash: people copy it) is never wrapped nor cut; when the table is too wide the
    # others wrap between words (as narrow as their longest word), or anywhere when even that is too wide
    whole = {i: max((len(row[i]) for row in shown), default=0) for i in whole_columns}
    words = {i: max([len(header), *(len(word) for row in shown for word in row[i].split())])
             for i, header in enumerate(headers)}
    natural = {i: max([len(header), *(len(row[i]) for row in shown)]) for i, header in enumerate(headers)}
    gaps = 2 * (len(headers) - 1)
    narrow = sum(natural.values()) + gaps > console.width
    if sum({**words, **whole}.values()) + gaps > console.width:
        words = {}
    for index, header in enumerate(headers):
        fixed = index == time_column or index in whole
        table.add_column(header, no_wrap=fixed, min_width=whole.get(index) or words.get(index) or None,
                         max_width=words.get(index) if narrow and not fixed else None,
                         overflow="ellipsis" if fixed else "fold")
    for row in shown:
        table.add_row(*row)
    console.print(table)


def _to_the_second(stamp: str) -> str:
    """An ISO-8601 UTC timestamp as a person reads it in a table: 2026-11-25 20:18:16Z."""
    if len(stamp) >= 19 and stamp[10] == "T":
        return stamp[:10] + " " + stamp[11:19] + ("Z" if stamp.endswith(("Z", "+00:00")) else "")
    return stamp


# --- list ------------------------------------------------------------------------------------------
def list_credentials(
    speaker: Annotated[
        str | None, typer.Option("--speaker", metavar="GLOB", show_default=False,
                                 help="Only speakers matching this glob (fnmatch).")
    ] = None,
    model_hash: Annotated[
        str | None, typer.Option("--model-hash", metavar="H", help="Only credentials made with this model.",
                                 show_default=False)
    ] = None,
    stale_for: Annotated[
        str | None, typer.Option("--stale-for", metavar="H",
                                 help="Only credentials NOT made with this model (to re-enroll).",
                                 show_default=False)
    ] = None,
    show_credential: ShowCredentialOption = False,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
) -> None:
    environment = common.environment()
    with closing(_open(store)) as opened:
        if as_json:
            out = environment.stdout
            batch: list[str] = []  # a write per thousand lines, not two per line: 100,000 are 100 MB
            for line in opened.list_current_lines(speaker_glob=speaker, model_hash=model_hash,
                                                  stale_for=stale_for):
                batch.append(line)
                if len(batch) == 1000:
                    out.write("\n".join(batch) + "\n")
                    batch.clear()
            if batch:
                out.write("\n".join(batch) + "\n")
            out.flush()
            return
        records = opened.list_current(speaker_glob=speaker, model_hash=model_hash, stale_for=stale_for)
        rows = (
            [r.speaker, _text(r.model_hash), _text(r.created_at), _mask(r.credential, show_credential),
             _text(r.has_audio), _text(r.id)]
            for r in records
        )
        _table(environment, ["speaker", "model hash", "enrolled", "credential", "audio", "id"], rows,
               time_column=2)


# --- show / history ------------------------------------------------------------------------------------
def show(
    speaker: SpeakerArgument,
    show_credential: ShowCredentialOption = False,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
) -> None:
    from dasctl.store.records import credential_document

    environment = common.environment()
    with closing(_open(store)) as opened:
        record = opened.current(speaker)
        if record is None:
            if opened.history(speaker):
                raise UsageError(f"speaker {speaker!r} has no current credential (no attempt succeeded)",
                                 f"See its attempts: `dasctl credentials history {speaker}`.")
            raise _unknown(speaker)
    document = credential_document(record)
    if as_json:
        _write_lines(environment, [document])
        return
    rows = [(key, _mask(value, show_credential) if key == "credential" else _text(value))
            for key, value in document.items() if key not in ("schema", "error", "superseded_at")]
    width = max(len(key) for key, _ in rows)
    lines = (f"{key.replace('_', ' ').ljust(width)}  {value}\n" for key, value in rows)
    environment.stdout.write("".join(lines))


def history(
    speaker: SpeakerArgument,
    show_credential: ShowCredentialOption = False,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
) -> None:
    from dasctl.store import EnrollmentRecord
    from dasctl.store.records import credential_document, verification_document

    environment = common.environment()
    with closing(_open(store)) as opened:
        entries = opened.history(speaker)
    if not entries:
        raise _unknown(speaker)
    if as_json:
        _write_lines(environment, (
            credential_document(e) if isinstance(e, EnrollmentRecord) else verification_document(e)
            for e in entries
        ))
        return
    _table(environment, ["when", "what", "outcome", "model hash", "credential", "id"],
           (_history_row(entry, show_credential) for entry in entries), time_column=0, whole_columns=(3, 4))


def _history_row(entry: EnrollmentRecord | VerificationRecord, show_credential: bool) -> list[str]:
    from dasctl.store import EnrollmentRecord

    if isinstance(entry, EnrollmentRecord):
        if entry.ok:
            what = "superseded" if entry.superseded_at else "current"
        else:
            what = "failed"
        return [_text(entry.created_at), f"enrollment ({what})", _text(entry.outcome),
                _text(entry.model_hash), _mask(entry.credential, show_credential), _text(entry.id)]
    score = f" score {entry.score:g}" if entry.score is not None else ""
    return [_text(entry.created_at), "verification", _text(entry.outcome) + score, _text(entry.model_hash),
            "-", _text(entry.id)]


# --- export / import -----------------------------------------------------------------------------------
def export(
    format: Annotated[
        str, typer.Option("--format", help="ndjson (dasctl.credential/1 lines) or csv.")
    ] = "ndjson",
    audio_dir: Annotated[
        Path | None, typer.Option("--audio-dir", metavar="DIR",
                                  help="Also write each record's enrollment audio there as SPEAKER-ID.wav.",
                                  show_default=False)
    ] = None,
    with_audio: Annotated[
        bool, typer.Option("--with-audio",
                           help="Carry each record's enrollment audio in its line (base64 mu-law): "
                                "export | import moves a store whole.")
    ] = False,
    speaker: Annotated[
        str | None, typer.Option("--speaker", metavar="GLOB", help="Only speakers matching this glob.",
                                 show_default=False)
    ] = None,
    store: common.StoreOption = None,
) -> None:
    from dasctl.store.records import CREDENTIAL_FIELDS, credential_document

    if format not in ("ndjson", "csv"):
        raise UsageError(f"--format {format!r} is not one of: ndjson, csv")
    if with_audio and format != "ndjson":
        raise UsageError("--with-audio puts the audio in NDJSON lines; a CSV cannot carry it",
                         "Use --audio-dir DIR with --format csv.")
    if audio_dir is not None and not audio_dir.is_dir():
        raise UsageError(f"--audio-dir {audio_dir} is not an existing directory",
                         f"Create it first: mkdir -p {audio_dir}")
    environment = common.environment()
    if with_audio and environment.stdout_isatty:  # as gzip will not write compressed data to a terminal
        raise UsageError("--with-audio writes base64 audio, not for a terminal",
                         "Redirect it (dasctl credentials export --with-audio > kept.ndjson) or pipe it "
                         "into dasctl credentials import --store URL -")
    with closing(_open(store)) as opened:
        documents = _exported(opened, audio_dir, with_audio, speaker, credential_document)
        if format == "ndjson":
            _write_lines(environment, documents)
            return
        import csv

        columns = [*CREDENTIAL_FIELDS, *(["audio_file"] if audio_dir is not None else [])]
        writer = csv.DictWriter(environment.stdout, fieldnames=columns, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        for document in documents:
            writer.writerow({key: "" if value is None else value for key, value in document.items()})
        environment.stdout.flush()


def _exported(
    opened: Store, audio_dir: Path | None, with_audio: bool, speaker: str | None, to_document: Any
) -> Iterator[dict[str, Any]]:
    import base64

    from dasctl.audio import write_mulaw_wav

    for record in opened.enrollments(speaker_glob=speaker):
        document = to_document(record)
        if audio_dir is not None or with_audio:
            audio = opened.enrollment_audio(record.id) if record.has_audio and record.id is not None else None
            if audio_dir is not None:
                document["audio_file"] = None
                if audio:
                    target = audio_dir / f"{_file_safe(record.speaker)}-{record.id}.wav"
                    write_mulaw_wav(target, [audio])
                    document["audio_file"] = str(target)
            if with_audio:
                document["audio"] = base64.b64encode(audio).decode("ascii") if audio else None
        yield document


def _file_safe(speaker: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", speaker) or "_"


def _imported_audio(line: dict[str, Any], listing: Path | None) -> bytes | None:
    """The enrollment audio an export line carries: inline (--with-audio) or as a file (--audio-dir)."""
    import base64
    import binascii

    from dasctl.audio import read_mulaw_wav

    if isinstance(line.get("audio"), str) and line["audio"]:
        try:
            return base64.b64decode(line["audio"], validate=True)
        except binascii.Error:
            raise ValueError("its audio is not base64") from None
    if isinstance(line.get("audio_file"), str) and line["audio_file"]:
        return read_mulaw_wav(_beside(line["audio_file"], listing))
    return None


def _beside(name: str, listing: Path | None) -> Path:
    """An exported audio_file: as written (relative to where export ran), else beside the imported file."""
    path = Path(name)
    if path.is_absolute() or path.exists() or listing is None:
        return path
    beside = listing.parent / path
    return beside if beside.exists() else path


def import_records(
    file: Annotated[
        str, typer.Argument(metavar="FILE|-", help="register --json, watch or export NDJSON; - for stdin.")
    ],
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
) -> None:
    import dataclasses
    import json

    from dasctl.store.records import (
        CREDENTIAL_SCHEMA,
        DOCUMENT_SCHEMAS,
        enrollment_from_credential_line,
        enrollment_from_document,
        speaker_from_file,
    )

    environment = common.environment()
    name = "<stdin>" if file == "-" else file
    if file == "-":
        if environment.stdin_isatty:
            raise UsageError("'-' reads NDJSON from stdin, and stdin is a terminal",
                             "Pipe it in: dasctl register --json a.wav | dasctl credentials import -")
        lines: AbstractContextManager[Iterable[str]] = nullcontext(sys.stdin)
    else:
        path = Path(file)
        if not path.is_file():
            raise UsageError(f"{file}: no such file")
        try:
            lines = path.open(encoding="utf-8", errors="replace")
        except OSError as error:
            raise UsageError(f"{file}: cannot read it: {error.strerror}") from None
    kept = skipped = malformed = 0
    with lines as source, closing(_open(store)) as opened:
        for number, raw in enumerate(source, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                document = json.loads(line)
                if not isinstance(document, dict):
                    raise ValueError("not a JSON object")
                schema = document.get("schema")
                if schema == CREDENTIAL_SCHEMA:
                    record = enrollment_from_credential_line(document)
                    audio = _imported_audio(document, None if file == "-" else path)
                    if audio is not None:
                        record = dataclasses.replace(record, audio=audio)
                elif schema in DOCUMENT_SCHEMAS:
                    if not isinstance(document.get("file"), str):
                        raise ValueError("a result document without its file")
                    stored = document.get("stored")
                    speaker = stored.get("speaker") if isinstance(stored, dict) else None
                    speaker = speaker or speaker_from_file(document["file"])
                    path_text = document.get("path") if isinstance(document.get("path"), str) else None
                    record = enrollment_from_document(document, speaker=str(speaker), origin="import",
                                                      source_path=path_text)
                else:
                    skipped += 1  # --events lines, summaries: not results
                    continue
            except (ValueError, KeyError, TypeError, AudioError) as error:
                malformed += 1
                common.warn(f"{name}:{number}: not imported: {error}", environment.stderr)
                continue
            opened.record_enrollment(record)  # idempotent: a line imported twice is kept once
            kept += 1
    summary = {"schema": IMPORTED_SCHEMA, "file": name, "kept": kept, "skipped": skipped,
               "malformed": malformed, "store": opened.location}
    if as_json:
        _write_lines(environment, [summary])
    else:
        common.say(f"{name}: {kept} record(s) kept in {opened.location} (already kept ones unchanged)"
                   + (f", {skipped} line(s) that are not results skipped" if skipped else ""))
    if malformed:
        raise BatchFailed(f"{malformed} line(s) of {name} could not be imported",
                          "See the warnings above; every other line was imported.")


# --- audio / rm ----------------------------------------------------------------------------------------
def audio(
    speaker: SpeakerArgument,
    out: Annotated[Path, typer.Argument(metavar="OUT.wav", help="Where to write the WAV (8 kHz mu-law).")],
    force: Annotated[bool, typer.Option("--force", help="Replace OUT.wav if it exists.")] = False,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
) -> None:
    from dasctl.audio import write_mulaw_wav

    if out.exists() and not force:
        raise UsageError(f"{out} already exists; not overwriting it", "Pass --force to replace it.")
    environment = common.environment()
    with closing(_open(store)) as opened:
        record = opened.current(speaker, with_audio=True)
        if record is None:
            raise _unknown(speaker) if not opened.history(speaker) else UsageError(
                f"speaker {speaker!r} has no current credential, so no enrollment audio",
                f"See its attempts: `dasctl credentials history {speaker}`.")
    if not record.audio:
        raise UsageError(f"no enrollment audio was kept for {speaker!r} (record {record.id})")
    written = write_mulaw_wav(out, [record.audio])  # atomic: a temp file beside OUT, then renamed
    seconds = written / 8000
    if as_json:
        _write_lines(environment, [{"schema": AUDIO_SCHEMA, "speaker": speaker, "id": record.id,
                                    "file": str(out), "seconds": round(seconds, 3)}])
    else:
        common.say(f"{out}: {seconds:.2f} s of enrollment audio of {speaker} (record {record.id})")


def remove(
    speaker: SpeakerArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (scripts).")] = False,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
) -> None:
    environment = common.environment()
    if not yes and not environment.stdin_isatty:
        raise UsageError(f"not removing {speaker!r} without confirmation, and stdin is not a terminal",
                         "Pass --yes to remove it from a script.")
    with closing(_open(store)) as opened:
        entries = opened.history(speaker)
        if not entries:
            raise _unknown(speaker)
        if not yes:
            question = (f"Remove everything kept about {speaker} ({len(entries)} record(s), credentials and "
                        f"audio included) from {opened.location}?")
            if not typer.confirm(question, default=False, err=True):
                raise UsageError(f"{speaker!r} not removed")
        removed = opened.remove(speaker)
    if as_json:
        _write_lines(environment, [{"schema": REMOVED_SCHEMA, "speaker": speaker, "removed": removed,
                                    "store": opened.location}])
    else:
        common.say(f"Removed {speaker}: {removed} record(s) from {opened.location}.")


def install(app: typer.Typer) -> None:
    """Add the credentials group to the application."""
    credentials_app.command("list", help=_help(
        "List the current credential of each speaker (a table on a terminal, tab-separated when piped).",
        "  dasctl credentials list\n"
        "  dasctl credentials list --speaker 'CUST*' --json\n"
        "  dasctl credentials list --stale-for NEW-MODEL-HASH   # who must be re-enrolled",
        "0 listed (even none); 2 usage error or unusable store file; 6 store unreachable",
    ))(list_credentials)
    credentials_app.command("show", help=_help(
        "Show a speaker's current credential and where it came from.",
        "  dasctl credentials show CUST12345\n"
        "  dasctl credentials show CUST12345 --json | jq -r .credential",
    ))(show)
    credentials_app.command("history", help=_help(
        "Show every enrollment attempt and verification of a speaker, oldest first.",
        "  dasctl credentials history CUST12345\n"
        "  dasctl credentials history CUST12345 --json",
    ))(history)
    credentials_app.command("export", help=_help(
        "Write every enrollment record (history included) as NDJSON or CSV on stdout.",
        "  dasctl credentials export > credentials.ndjson\n"
        "  dasctl credentials export --format csv --audio-dir audio/ > credentials.csv\n"
        "  dasctl credentials export --with-audio | dasctl credentials import --store \"$PG\" -  # all of it",
    ))(export)
    credentials_app.command("import", help=_help(
        "Keep the results of register --json, watch or export NDJSON in the store (idempotent).",
        "  dasctl register --json calls/*.wav > results.ndjson; dasctl credentials import results.ndjson\n"
        "  dasctl credentials export --with-audio | dasctl credentials import --store \"$PG\" -\n"
        "  dasctl credentials export --audio-dir audio/ > all.ndjson; dasctl credentials import all.ndjson",
        "0 imported; 2 usage error; 6 store unreachable; "
        "7 a line was malformed or its audio unreadable (named by line number, the rest kept)",
    ))(import_records)
    credentials_app.command("audio", help=_help(
        "Write a speaker's kept enrollment audio as a playable WAV (8 kHz mu-law).",
        "  dasctl credentials audio CUST12345 CUST12345.wav\n"
        "  dasctl credentials audio CUST12345 /tmp/c.wav --force && play /tmp/c.wav",
    ))(audio)
    credentials_app.command("rm", help=_help(
        "Remove everything kept about a speaker (asks first on a terminal; --yes in scripts).",
        "  dasctl credentials rm CUST12345\n"
        "  dasctl credentials rm CUST12345 --yes --json",
    ))(remove)
    app.add_typer(credentials_app, name="credentials")

"""`dasctl credentials export|import`: the parsing and rendering; the work is dasctl/store/transfer.py."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, closing, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from dasctl.cli import common
from dasctl.cli.credentials.render import StoreKeyFileOption, open_store, write_lines
from dasctl.errors import BatchFailed, UsageError

IMPORTED_SCHEMA = "dasctl.credential-import/1"


def export(
    format: Annotated[
        str, typer.Option("--format",
                          help="ndjson (dasctl.credential/1 and dasctl.verification/1 lines) or csv.")
    ] = "ndjson",
    audio_dir: Annotated[
        Path | None, typer.Option("--audio-dir", metavar="DIR",
                                  help="Also write each record's enrollment audio there as SPEAKER-ID.wav.",
                                  show_default=False)
    ] = None,
    with_audio: Annotated[
        bool, typer.Option("--with-audio",
                           help="Carry each record's enrollment audio (base64 mu-law) and credential in its "
                                "line: export | import moves a store whole.")
    ] = False,
    with_credential: Annotated[
        bool, typer.Option("--with-credential", help="Decrypt and carry the credentials (audited).")
    ] = False,
    kind: Annotated[
        str | None, typer.Option("--kind", metavar="KIND", show_default=False,
                                 help="enrollment, verification or all (default: all for NDJSON, enrollment "
                                      "for CSV).")
    ] = None,
    columns: Annotated[
        str | None, typer.Option("--columns", metavar="LIST", show_default=False,
                                 help="CSV: only these columns, comma-separated, in this order.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="TIME", show_default=False,
                                 help="Only records made at or after this ISO 8601 time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="TIME", show_default=False,
                                 help="Only records made before this ISO 8601 time.")
    ] = None,
    speaker: Annotated[
        str | None, typer.Option("--speaker", metavar="GLOB", help="Only speakers matching this glob.",
                                 show_default=False)
    ] = None,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    from dasctl.store.transfer import EXPORT_KINDS, ExportRequest, export_documents

    if format not in ("ndjson", "csv"):
        raise UsageError(f"--format {format!r} is not one of: ndjson, csv")
    chosen = kind or ("all" if format == "ndjson" else "enrollment")
    if chosen not in EXPORT_KINDS:
        raise UsageError(f"--kind {chosen!r} is not one of: {', '.join(EXPORT_KINDS)}")
    if with_audio and format != "ndjson":
        raise UsageError("--with-audio puts the audio in NDJSON lines; a CSV cannot carry it",
                         "Use --audio-dir DIR with --format csv.")
    if columns is not None and format != "csv":
        raise UsageError("--columns chooses CSV columns", "Add --format csv.")
    if audio_dir is not None and not audio_dir.is_dir():
        raise UsageError(f"--audio-dir {audio_dir} is not an existing directory",
                         f"Create it first: mkdir -p {audio_dir}")
    window = (iso_time(since, "--since"), iso_time(until, "--until"))
    environment = common.environment()
    if with_audio and environment.stdout_isatty:  # as gzip will not write compressed data to a terminal
        raise UsageError("--with-audio writes base64 audio, not for a terminal",
                         "Redirect it (dasctl credentials export --with-audio > kept.ndjson) or pipe it "
                         "into dasctl credentials import --store URL -")
    request = ExportRequest(speaker, chosen, with_credential, with_audio, audio_dir,
                            whole_store=format == "ndjson")
    header = _csv_columns(columns, chosen, audio_dir is not None, with_credential) if format == "csv" else []
    with closing(open_store(store, store_key_file)) as opened:
        if request.reveals:
            opened.require_secrets(write=False)
        documents = list(_within(export_documents(opened, request), *window))
        if request.reveals:
            chosen_flags = (("--with-credential", with_credential), ("--with-audio", with_audio),
                            ("--audio-dir", audio_dir is not None))
            flags = " ".join(flag for flag, on in chosen_flags if on)
            speakers = [str(d["speaker"]) for d in documents if isinstance(d.get("speaker"), str)]
            opened.audit(f"export {flags}", speakers, len(documents),
                         "secrets written in the clear")
    if format == "ndjson":
        write_lines(environment, documents)
        return
    _write_csv(environment.stdout, header, documents)


def iso_time(value: str | None, flag: str) -> str | None:
    """An ISO 8601 date or time as the store writes times (UTC, Z), for comparing strings."""
    if value is None:
        return None
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not an ISO 8601 date or time",
                         "Use e.g. 2026-01-31 or 2026-01-31T08:00:00Z.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _within(
    documents: Iterable[dict[str, Any]], since: str | None, until: str | None
) -> Iterator[dict[str, Any]]:
    for document in documents:
        made = str(document.get("created_at") or "")
        if (since is None or made >= since) and (until is None or made < until):
            yield document


def _csv_columns(columns: str | None, kind: str, with_files: bool, with_credential: bool) -> list[str]:
    from dasctl.store.records import CREDENTIAL_FIELDS, VERIFICATION_FIELDS

    known = ["schema", *CREDENTIAL_FIELDS, *(f for f in VERIFICATION_FIELDS if f not in CREDENTIAL_FIELDS),
             "audio_file"]
    if columns is not None:
        chosen = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [c for c in chosen if c not in known]
        if not chosen or unknown:
            raise UsageError(f"--columns: unknown column(s) {', '.join(unknown) or '(none given)'}",
                             f"Known columns: {', '.join(known)}.")
        if "credential" in chosen and not with_credential:
            raise UsageError("--columns credential needs --with-credential (templates leave only when asked)")
        return chosen
    if kind == "enrollment":
        fields = list(CREDENTIAL_FIELDS)
    elif kind == "verification":
        fields = ["schema", *VERIFICATION_FIELDS]
    else:
        fields = known[:-1]
    if not with_credential:
        fields = [f for f in fields if f != "credential"]
    return [*fields, *(["audio_file"] if with_files else [])]


def _write_csv(out: Any, header: list[str], documents: Iterable[dict[str, Any]]) -> None:
    import csv

    from dasctl.safe_text import line

    def cell(value: object) -> object:  # for spreadsheets and eyes: controls escaped (NDJSON is exact)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return line(value)
        return "" if value is None else value

    writer = csv.DictWriter(out, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for document in documents:
        writer.writerow({key: cell(value) for key, value in document.items()})
    out.flush()


def import_records(
    file: Annotated[
        str, typer.Argument(metavar="FILE|-", help="register --json, watch or export NDJSON; - for stdin.")
    ],
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    from dasctl.store.transfer import import_lines

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
            raise UsageError(f"{file}: no such file" if not path.exists() else f"{file}: not a regular file")
        try:
            lines = path.open(encoding="utf-8", errors="surrogateescape")
        except OSError as error:
            raise UsageError(f"{file}: cannot read it: {error.strerror}") from None
    told: list[bool] = []

    def warn(number: int, why: str) -> None:
        if why.startswith("not JSON") and number == 1 and not told:
            told.append(True)
            common.warn(f"{name} looks like CSV or text: import reads NDJSON (export without --format csv)",
                        environment.stderr)
        common.warn(f"{name}:{number}: not imported: {why}", environment.stderr)

    with lines as source, closing(open_store(store, store_key_file, create=True)) as opened:
        opened.require_secrets()  # an import seals what it keeps: no key, nothing written
        summary = import_lines(opened, source, listing=None if file == "-" else Path(file), warn=warn,
                               refuse_speaker=opened.refusal)
    document = {"schema": IMPORTED_SCHEMA, "file": name, "new": summary.new, "already": summary.already,
                "refused": summary.refused, "skipped": summary.skipped, "store": opened.location,
                # the counts of earlier versions, for scripts that read them
                "kept": summary.new + summary.already, "malformed": summary.refused}
    if as_json:
        write_lines(environment, [document])
    else:
        common.say(f"{name}: {summary.new} new, {summary.already} already there, {summary.refused} refused "
                   f"in {opened.location}"
                   + (f"; {summary.skipped} line(s) that are not results skipped" if summary.skipped else ""))
    if summary.refused:
        raise BatchFailed(f"{summary.refused} line(s) of {name} could not be imported",
                          "See the warnings above; every other line was imported.")

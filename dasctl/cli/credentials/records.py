"""`dasctl credentials list|show|history|audio|rm`: what the store keeps about speakers."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dasctl.cli import common
from dasctl.cli.credentials.render import (
    ShowCredentialOption,
    SpeakerArgument,
    StoreKeyFileOption,
    mask,
    open_store,
    table,
    text,
    unknown,
    write_lines,
)
from dasctl.errors import UsageError

if TYPE_CHECKING:
    from dasctl.store import EnrollmentRecord, VerificationRecord

REMOVED_SCHEMA = "dasctl.credential-removed/1"
AUDIO_SCHEMA = "dasctl.credential-audio/1"
CHECK_SCHEMA = "dasctl.store-check/1"


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
    store_key_file: StoreKeyFileOption = None,
) -> None:
    from dasctl.store.records import credential_document

    environment = common.environment()
    with closing(open_store(store, store_key_file)) as opened:
        if show_credential:
            opened.require_secrets(write=False)
        if as_json and not show_credential:
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
        records = list(opened.list_current(speaker_glob=speaker, model_hash=model_hash, stale_for=stale_for,
                                           reveal=show_credential))
        if show_credential:
            opened.audit("list --show-credential", [r.speaker for r in records], len(records))
    if as_json:
        write_lines(environment, (credential_document(r) for r in records))
        return
    rows = (
        [text(r.speaker), text(r.model_hash), text(r.created_at), mask(r.credential, show_credential, r.ok),
         text(r.has_audio), text(r.id)]
        for r in records
    )
    headers = ["speaker", "model hash", "enrolled", "credential", "audio", "id"]
    table(environment, headers, rows, time_column=2)


def show(
    speaker: SpeakerArgument,
    show_credential: ShowCredentialOption = False,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    from dasctl.store.records import credential_document

    environment = common.environment()
    with closing(open_store(store, store_key_file)) as opened:
        if show_credential:
            opened.require_secrets(write=False)
        record = opened.current(speaker, reveal=show_credential)
        if record is None:
            if opened.history(speaker):
                raise UsageError(f"speaker {speaker!r} has no current credential (no attempt succeeded)",
                                 f"See its attempts: `dasctl credentials history {speaker}`.")
            raise unknown(speaker, opened.location)
        if show_credential:
            opened.audit("show --show-credential", [speaker], 1)
    document = credential_document(record)
    if as_json:
        write_lines(environment, [document])
        return
    rows = [(key, mask(value, show_credential, record.ok) if key == "credential" else text(value))
            for key, value in document.items() if key not in ("schema", "error", "superseded_at")]
    width = max(len(key) for key, _ in rows)
    lines = (f"{key.replace('_', ' ').ljust(width)}  {value}\n" for key, value in rows)
    environment.stdout.write("".join(lines))


def history(
    speaker: SpeakerArgument,
    show_credential: ShowCredentialOption = False,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    from dasctl.store import EnrollmentRecord
    from dasctl.store.records import credential_document, verification_document

    environment = common.environment()
    with closing(open_store(store, store_key_file)) as opened:
        if show_credential:
            opened.require_secrets(write=False)
        entries = opened.history(speaker, reveal=show_credential)
        if entries and show_credential:
            opened.audit("history --show-credential", [speaker], len(entries))
    if not entries:
        raise unknown(speaker, opened.location)
    if as_json:
        write_lines(environment, (
            credential_document(e) if isinstance(e, EnrollmentRecord) else verification_document(e)
            for e in entries
        ))
        return
    headers = ["when", "what", "outcome", "model hash", "credential", "id"]
    rows = [_history_row(entry, show_credential) for entry in entries]
    # the consent column only for a speaker enrolled with one (register --consent, watch --consent-from)
    if any(isinstance(e, EnrollmentRecord) and e.consent is not None for e in entries):
        headers.append("consent")
        for entry, row in zip(entries, rows, strict=True):
            row.append(text(entry.consent) if isinstance(entry, EnrollmentRecord) else "")
    table(environment, headers, rows, time_column=0, whole_columns=(3, 4))


def _history_row(entry: EnrollmentRecord | VerificationRecord, show_credential: bool) -> list[str]:
    from dasctl.store import EnrollmentRecord

    if isinstance(entry, EnrollmentRecord):
        if entry.ok:
            what = "superseded" if entry.superseded_at else "current"
        else:
            what = "failed"
        return [text(entry.created_at), f"enrollment ({what})", text(entry.outcome),
                text(entry.model_hash), mask(entry.credential, show_credential, entry.ok), text(entry.id)]
    score = f" score {entry.score:g}" if entry.score is not None else ""
    return [text(entry.created_at), "verification", text(entry.outcome) + score, text(entry.model_hash),
            "-", text(entry.id)]


def audio(
    speaker: SpeakerArgument,
    out: Annotated[Path, typer.Argument(metavar="OUT.wav|-",
                                        help="Where to write the WAV (8 kHz mu-law); - for stdout.")],
    force: Annotated[bool, typer.Option("--force", help="Replace OUT.wav if it exists.")] = False,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    from dasctl.audio import write_mulaw_wav

    environment = common.environment()
    to_stdout = str(out) == "-"
    if to_stdout and environment.stdout_isatty:  # as export --with-audio: binary is not for a terminal
        raise UsageError("'-' writes the WAV to stdout, and stdout is a terminal",
                         f"Redirect it (dasctl credentials audio {speaker} - > voice.wav) or pipe it into a "
                         "player (| play -).")
    if to_stdout and as_json:
        raise UsageError("--json and '-' both write to stdout", "Write the WAV to a file to get --json.")
    if not to_stdout and out.exists() and not force:
        raise UsageError(f"{out} already exists; not overwriting it", "Pass --force to replace it.")
    with closing(open_store(store, store_key_file)) as opened:
        opened.require_secrets(write=False)
        record = opened.current(speaker, with_audio=True)
        if record is None:
            raise unknown(speaker, opened.location) if not opened.history(speaker) else UsageError(
                f"speaker {speaker!r} has no current credential, so no enrollment audio",
                f"See its attempts: `dasctl credentials history {speaker}`.")
        if not record.audio:
            raise UsageError(f"no enrollment audio was kept for {speaker!r} (record {record.id})")
        opened.audit("audio", [speaker], 1)
    if to_stdout:
        from dasctl.audio import mulaw_wav_bytes

        binary = getattr(environment.stdout, "buffer", None)
        if binary is None:
            raise UsageError("stdout takes no binary data here", "Write the WAV to a file instead.")
        environment.stdout.flush()
        binary.write(mulaw_wav_bytes(record.audio))
        binary.flush()
        written = len(record.audio)
    else:
        written = write_mulaw_wav(out, [record.audio])  # atomic: a temp file beside OUT, then renamed
    seconds = written / 8000
    if as_json:
        write_lines(environment, [{"schema": AUDIO_SCHEMA, "speaker": speaker, "id": record.id,
                                   "file": str(out), "seconds": round(seconds, 3)}])
    else:
        where = "stdout" if to_stdout else str(out)
        common.say(f"{where}: {seconds:.2f} s of enrollment audio of {speaker} (record {record.id})")


def remove(
    speaker: SpeakerArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (scripts).")] = False,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    environment = common.environment()
    if not yes and not environment.stdin_isatty:
        raise UsageError(f"not removing {speaker!r} without confirmation, and stdin is not a terminal",
                         "Pass --yes to remove it from a script.")
    with closing(open_store(store, store_key_file)) as opened:
        entries = opened.history(speaker)
        if not entries:
            raise unknown(speaker, opened.location)
        if not yes:
            from dasctl.safe_text import quoted

            question = (f"Remove everything kept about {quoted(speaker)} ({len(entries)} record(s), "
                        f"credentials and audio included) from {quoted(opened.location)}?")
            if not typer.confirm(question, default=False, err=True):
                raise UsageError(f"{speaker!r} not removed")
        removed = opened.remove(speaker)
        opened.audit("rm", [speaker], removed)
    if as_json:
        write_lines(environment, [{"schema": REMOVED_SCHEMA, "speaker": speaker, "removed": removed,
                                   "store": opened.location}])
    else:
        common.say(f"Removed {speaker}: {removed} record(s) from {opened.location}.")


def check(
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    with closing(open_store(store, store_key_file)) as opened:
        problems = opened.integrity_problems()
        absent = opened.absent  # the default store, not made yet: nothing to check
    if absent:
        if as_json:
            write_lines(common.environment(), [{"schema": CHECK_SCHEMA, "store": opened.location,
                                                "ok": True, "problems": [], "exists": False}])
        else:
            common.say(f"{opened.location}: no credential store there yet (nothing to check; register or "
                       "watch makes it)")
        return
    if as_json:
        write_lines(common.environment(), [{"schema": CHECK_SCHEMA, "store": opened.location,
                                            "ok": not problems, "problems": problems}])
    elif not problems:
        common.say(f"{opened.location}: ok (full integrity check)")
    if problems:
        raise UsageError(f"the credential store {opened.location} is corrupt: {problems[0]}"
                         + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                         "Restore it from a backup; nothing was changed.")

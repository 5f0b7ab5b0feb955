"""`dasctl credentials optout|optin|audit`: consent withdrawn, and who read or destroyed what."""

from __future__ import annotations

from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from dasctl.cli import common
from dasctl.cli.credentials.render import (
    SpeakerArgument,
    StoreKeyFileOption,
    open_store,
    table,
    text,
    write_lines,
)
from dasctl.errors import UsageError

OPTED_OUT_SCHEMA = "dasctl.credential-optout/1"
OPTED_IN_SCHEMA = "dasctl.credential-optin/1"


def _speakers_from(file: Path) -> list[str]:
    """One speaker id a line (what a CRM exports): blank lines skipped, duplicates once, order kept."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError) as error:
        why = getattr(error, "strerror", None) or error
        raise UsageError(f"--from {file}: cannot read it ({why})") from None
    return [line.strip() for line in lines if line.strip()]


def optout(
    speakers: Annotated[
        list[str] | None, typer.Argument(metavar="[SPEAKER]...", show_default=False, help="Speaker ids.")
    ] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from", metavar="FILE", show_default=False,
                                  help="Also every speaker id in FILE, one a line.")
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", metavar="TEXT", show_default=False,
                                 help="Why (a ticket, 'GDPR art. 17 request'); kept with the opt-out.")
    ] = None,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    wanted = [*(speakers or []), *(_speakers_from(from_file) if from_file is not None else [])]
    unique = list(dict.fromkeys(s.strip() for s in wanted if s.strip()))
    if not unique and from_file is not None:  # a day's export with nobody in it: nothing to do, no error
        common.say(f"optout: {from_file} names no speaker; nothing to do")
        return
    if not unique:
        raise UsageError("name at least one speaker, or --from FILE with one id a line")
    environment = common.environment()
    results = []
    with closing(open_store(store, store_key_file, create=True)) as opened:
        for speaker in unique:
            results.append((speaker, opened.opt_out(speaker, reason)))
        opened.audit("optout", unique, sum(n for _, n in results), reason)
    if as_json:
        write_lines(environment, ({"schema": OPTED_OUT_SCHEMA, "speaker": s, "destroyed": n, "reason": reason,
                                   "store": opened.location} for s, n in results))
        return
    for speaker, destroyed in results:
        common.say(f"{speaker}: opted out; the secrets of {destroyed} record(s) destroyed, its history kept")


def optin(
    speaker: SpeakerArgument,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    environment = common.environment()
    with closing(open_store(store, store_key_file)) as opened:
        lifted = opened.opt_in(speaker)
        if lifted:
            opened.audit("optin", [speaker], 0)
    if not lifted:
        raise UsageError(f"{speaker!r} has not opted out")
    if as_json:
        write_lines(environment, [{"schema": OPTED_IN_SCHEMA, "speaker": speaker, "store": opened.location}])
    else:
        common.say(f"{speaker}: opted in again; it can be enrolled anew")


def audit(
    since: Annotated[str | None, typer.Option("--since", metavar="TIME", show_default=False,
                                              help="Rows at or after this ISO 8601 time.")] = None,
    until: Annotated[str | None, typer.Option("--until", metavar="TIME", show_default=False,
                                              help="Rows before this ISO 8601 time.")] = None,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    from dasctl.cli.credentials.transfer import iso_time

    environment = common.environment()
    window = iso_time(since, "--since"), iso_time(until, "--until")
    with closing(open_store(store, store_key_file)) as opened:
        rows = list(opened.audit_rows(since=window[0], until=window[1]))
    if as_json:
        write_lines(environment, (row.document() for row in rows))
        return
    table(environment, ["when", "who", "command", "count", "speakers"],
          ([row.at, row.actor, row.command, text(row.count), " ".join(row.speakers[:5])
            + (f" (+{len(row.speakers) - 5})" if len(row.speakers) > 5 else "")] for row in rows),
          time_column=0)


def _age(value: str | None, flag: str) -> timedelta | None:
    from dasctl.store.retention import parse_duration

    return None if value is None else parse_duration(value, flag)


def purge(
    audio_older_than: Annotated[str | None, typer.Option(
        "--audio-older-than", metavar="DURATION", show_default=False,
        help="Destroy the enrollment audio of records older than this (the records stay).")] = None,
    older_than: Annotated[str | None, typer.Option(
        "--older-than", metavar="DURATION", show_default=False,
        help="Destroy every enrollment and verification older than this, current ones included.")] = None,
    inactive_for: Annotated[str | None, typer.Option(
        "--inactive-for", metavar="DURATION", show_default=False,
        help="Remove speakers with no enrollment or verification for this long.")] = None,
    failed_older_than: Annotated[str | None, typer.Option(
        "--failed-older-than", metavar="DURATION", show_default=False,
        help="Destroy failed attempts older than this.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be destroyed.")] = False,
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    from dasctl.store.retention import RetentionPolicy

    policy = RetentionPolicy(
        audio_older_than=_age(audio_older_than, "--audio-older-than"),
        failed_older_than=_age(failed_older_than, "--failed-older-than"),
        older_than=_age(older_than, "--older-than"),
        inactive_for=_age(inactive_for, "--inactive-for"),
    )
    if policy.empty:
        raise UsageError("say what to purge: --audio-older-than, --older-than, --inactive-for or "
                         "--failed-older-than (e.g. --audio-older-than 90d)")
    environment = common.environment()
    with closing(open_store(store, store_key_file)) as opened:
        report = opened.purge(policy, dry_run=dry_run)
    if as_json:
        write_lines(environment, [report.document(opened.location)])
        return
    verb = "would destroy" if dry_run else "destroyed"
    common.say(f"{opened.location}: {verb} the audio of {report.audio} record(s), {report.failed} failed "
               f"attempt(s), {report.old} record(s) by age, {len(report.inactive)} inactive speaker(s) "
               f"({report.inactive_records} record(s))")

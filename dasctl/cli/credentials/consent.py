"""`dasctl credentials optout|optin|audit`: consent withdrawn, and who read or destroyed what."""

from __future__ import annotations

from contextlib import closing
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

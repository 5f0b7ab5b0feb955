"""What the credentials commands share: opening the store with its key, tables, masks, NDJSON lines."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dasctl.cli import common
from dasctl.cli.usage import compose_help
from dasctl.errors import UsageError

if TYPE_CHECKING:
    from dasctl.environment import Environment
    from dasctl.store import Store

EXIT_CODES = "0 done; 2 usage error (unknown speaker, unusable store file); 4 no key or the wrong key " \
    "for a command that reads or writes a secret; 6 the store could not be reached or written"

SpeakerArgument = Annotated[str, typer.Argument(metavar="SPEAKER", help="The speaker id, e.g. CUST12345.")]
ShowCredentialOption = Annotated[
    bool, typer.Option("--show-credential",
                       help="Decrypt and show credentials whole (needs the store's key; audited).")
]
StoreKeyFileOption = common.StoreKeyFileOption


def help_text(summary: str, examples: str, exit_codes: str = EXIT_CODES) -> str:
    """The common help layout (cli/usage.py) from examples one per line and exit codes split on `;`."""
    return compose_help(
        summary,
        examples=[line.strip() for line in examples.splitlines() if line.strip()],
        exit_codes="\n".join(code.strip() for code in exit_codes.split(";")),
    )


def open_store(store: str | None, key_file: Path | None = None, *, create: bool = False) -> Store:
    """The store by precedence, its key by precedence; a read-only command (the default) never creates a
    store or its directory."""
    from dasctl.config import load_profile

    profile = load_profile(common.profile_name(None), flags=common.key_file_flag(key_file))
    return common.open_store_option(store, profile, create=create)


def unknown(speaker: str, location: str | None = None) -> UsageError:
    where = f" {location}" if location else ""
    return UsageError(f"no speaker {speaker!r} in the credential store{where}",
                      "`dasctl credentials list` shows the speakers kept (--store picks another store).")


def mask(credential: str | None, show: bool, ok: bool = False) -> str:
    """Masked as tokens are (auth.mask), plus the last characters: credentials share their first ones.
    A success whose credential was not decrypted says so."""
    from dasctl.results import masked_credential
    from dasctl.safe_text import quoted

    if not credential:
        return "(encrypted)" if ok else "-"
    if show:
        return quoted(credential)
    return quoted(masked_credential(credential))


def text(value: object) -> str:
    """A store value as a table cell or a show line: quoted as git quotes an unusual path (safe_text)."""
    from dasctl.safe_text import quoted

    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return quoted(value)


def write_lines(environment: Environment, documents: Iterable[dict[str, Any]]) -> int:
    from dasctl.results import json_line

    out = environment.stdout
    count = 0
    for document in documents:
        out.write(json_line(document))
        out.write("\n")
        count += 1
    out.flush()
    return count


def table(
    environment: Environment, headers: list[str], rows: Iterable[list[str]], time_column: int | None = None,
    whole_columns: tuple[int, ...] = (),
) -> None:
    """A rich table on a terminal; tab-separated lines (no header) when piped.

    The time column keeps its full timestamp when piped; on a terminal it is shown to the second and
    never wrapped or cut (2026-11-25T20:18:16.488Z -> 2026-11-25 20:18:16Z).
    """
    out = environment.stdout
    if not environment.stdout_isatty:
        for row in rows:  # cells come quoted (text()): a tab or a newline in one is shown as \t or \n
            out.write("\t".join(row) + "\n")
        out.flush()
        return
    from rich.console import Console
    from rich.table import Table

    printed = Table(box=None, header_style="bold", pad_edge=False)
    shown = [[to_the_second(cell) if index == time_column else cell for index, cell in enumerate(row)]
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
        printed.add_column(header, no_wrap=fixed, min_width=whole.get(index) or words.get(index) or None,
                           max_width=words.get(index) if narrow and not fixed else None,
                           overflow="ellipsis" if fixed else "fold")
    from dasctl.display.safe import data_text

    for row in shown:
        printed.add_row(*(data_text(cell) for cell in row))  # data: never read as rich markup
    console.print(printed)


def to_the_second(stamp: str) -> str:
    """An ISO-8601 UTC timestamp as a person reads it in a table: 2026-11-25 20:18:16Z."""
    if len(stamp) >= 19 and stamp[10] == "T":
        return stamp[:10] + " " + stamp[11:19] + ("Z" if stamp.endswith(("Z", "+00:00")) else "")
    return stamp

"""Which consent reference a recording's enrollment is kept with (`watch --consent-from REGEX|FILE`).

Consent is recorded, not checked with anyone: the reference (a signed form's number, a CRM case, a call
recording's consent prompt id) is kept with the enrollment and shown by `credentials show`, `history` and
`export`, so that an auditor can ask "on what basis was this voice enrolled" (GDPR art. 9(2)(a), BIPA's
written release). Two sources:

- a FILE that exists: lines `NAME,REFERENCE` (CSV, or tab-separated; further columns ignored), NAME
  being the recording's path in the folder, its file name, its stem or the speaker id (tried in that
  order); blank lines and `#` comments are skipped. A CRM export's header line does no harm: it names
  no recording.
- otherwise a REGEX searched in the file name: the group `(?P<consent>...)`, else the first group, else
  the whole match. A value with a `/` is never a pattern (a file name has none): it must be a file.

Once --consent-from is given it is a policy: a recording with no reference fails (unsent, not retried),
as a name --speaker-from does not match does.
"""

from __future__ import annotations

import csv
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dasctl.errors import UsageError
from dasctl.store.records import check_consent
from dasctl.watch.speakers import name_part

CONSENT_GROUP = "consent"
#: a consent list larger than this is not a list of references (a wrong file given by mistake)
MAX_FILE_BYTES = 64 * 1024 * 1024


class ConsentNotFound(UsageError):
    """No consent reference for a recording: that file fails, it is not retried."""

    kind = "consent"


@dataclass
class ConsentSource:
    """The consent reference of a recording: by pattern on its name, or by a list."""

    given: str
    regex: re.Pattern[str] | None = None
    listing: dict[str, str] | None = None

    @classmethod
    def parse(cls, value: str | None) -> ConsentSource | None:
        """--consent-from as given; a usage error (exit 2) for a bad pattern or an unusable file."""
        if value is None:
            return None
        if not value.strip():
            raise UsageError("--consent-from is empty",
                             "Give a pattern, e.g. --consent-from '_(?P<consent>C[0-9]+)', or a file.")
        path = Path(value).expanduser()
        if path.exists() or path.is_symlink() or "/" in value:
            return cls(value, listing=read_listing(path))
        try:
            regex = re.compile(value)
        except re.error as error:
            raise UsageError(
                f"--consent-from {value!r} is neither a file nor a valid regular expression: {error}",
                "For CUST1_C-2026-0042.wav: --consent-from '_(?P<consent>C-[0-9-]+)'",
            ) from None
        return cls(value, regex=regex)

    def reference(self, relpath: str, speaker: str | None) -> str:
        """The reference for a recording (its path relative to the watched folder); ConsentNotFound."""
        name = PurePosixPath(relpath).name
        if self.listing is not None:
            for key in (relpath, name, PurePosixPath(name).stem, speaker):
                if key is not None and key in self.listing:
                    return self.listing[key]
            raise ConsentNotFound(
                f"{relpath}: no consent reference for it in --consent-from {self.given}",
                "Add a line 'FILE-OR-SPEAKER,REFERENCE' for it; then `--retry-failed` sends it.",
            )
        assert self.regex is not None
        found = name_part(self.regex, name, CONSENT_GROUP)
        if not found:
            raise ConsentNotFound(
                f"{relpath}: the name does not match --consent-from {self.given!r}; no consent reference",
                "Rename the file, or change --consent-from (it is searched in the file name).",
            )
        try:
            return check_consent(found, "--consent-from")
        except UsageError as error:
            raise ConsentNotFound(f"{relpath}: {error.message}") from None


def read_listing(path: Path) -> dict[str, str]:
    """A consent list: `NAME,REFERENCE` or `NAME<TAB>REFERENCE` a line. One clear error for a file that
    cannot be read, is not text, or has a line that says nothing usable; a name given twice with two
    references is an error too (which one is true?)."""
    where = f"--consent-from {path}"
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
            raise UsageError(f"{where} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise UsageError(f"{where} is {info.st_size} bytes: too large for a consent list")
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{where}: no such file",
                         "Give an existing file of NAME,REFERENCE lines, or a pattern (which has no '/').") \
            from None
    except OSError as error:
        raise UsageError(f"{where}: cannot read it: {error.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UsageError(f"{where}: not UTF-8 text (byte {error.start})") from None
    listing: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        row = next(csv.reader([line], delimiter="\t" if "\t" in line else ","), [])
        name, reference = (row[0].strip(), row[1].strip()) if len(row) > 1 else ("", "")
        if not name or not reference:
            raise UsageError(f"{where} line {number}: expected NAME,REFERENCE",
                             "NAME is the recording's file name, its stem or the speaker id.")
        try:
            reference = check_consent(reference, f"{where} line {number}:")
        except UsageError as error:
            raise UsageError(error.message) from None
        if listing.get(name, reference) != reference:
            raise UsageError(f"{where} line {number}: {name!r} has two references "
                             f"({listing[name]!r} and {reference!r})")
        listing[name] = reference
    return listing

"""Which speaker a recording enrolls: the file's stem, or a part of its name (`--speaker-from REGEX`)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from dasctl.errors import UsageError
from dasctl.store.records import speaker_from_file

SPEAKER_GROUP = "speaker"


def name_part(regex: re.Pattern[str], name: str, group: str) -> str | None:
    """What a --speaker-from/--consent-from pattern takes from a file name: its group `group`, else its
    first group, else the whole match; None when it does not match (or takes nothing)."""
    match = regex.search(name)
    if match is None:
        return None
    return match.group(group if group in regex.groupindex else (1 if regex.groups else 0)) or None


class SpeakerNotFound(UsageError):
    """A file name the --speaker-from pattern does not match: that file fails, it is not retried."""

    kind = "speaker"


class SpeakerNaming:
    """The speaker id of a file name: the named group `speaker` of a pattern, else its first group."""

    def __init__(self, pattern: str | None = None) -> None:
        self.pattern = pattern
        self._regex: re.Pattern[str] | None = None
        if pattern is None:
            return
        try:
            regex = re.compile(pattern)
        except re.error as error:
            raise UsageError(
                f"--speaker-from {pattern!r} is not a valid regular expression: {error}",
                "For 0412-CUST12345.wav: --speaker-from '-(?P<speaker>CUST[0-9]+)'",
            ) from error
        if regex.groups == 0:
            raise UsageError(
                f"--speaker-from {pattern!r} has no group to take the speaker id from",
                "Name the part with (?P<speaker>...), e.g. --speaker-from '-(?P<speaker>CUST[0-9]+)'",
            )
        self._regex = regex

    def speaker(self, relpath: str) -> str:
        """The speaker id for a file (its path relative to the watched folder), as `register` names one
        without --speaker unless a pattern says otherwise; SpeakerNotFound if the pattern does not match."""
        name = PurePosixPath(relpath).name
        if self._regex is None:
            return speaker_from_file(name)
        found = name_part(self._regex, name, SPEAKER_GROUP)  # the pattern has a group (checked above)
        if not found:
            raise SpeakerNotFound(
                f"{relpath}: the name does not match --speaker-from {self.pattern!r}; no speaker id",
                "Rename the file, or change --speaker-from (it is searched in the file name).",
            )
        return found

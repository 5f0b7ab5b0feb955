"""Which files of a watched folder count as recordings, how each is identified, and when one has settled."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Any

from dasctl.errors import UsageError

#: No --pattern: every recording, known by its extension, or by its content when the extension says
#: nothing (probe.py opens the header).
DEFAULT_PATTERNS: tuple[str, ...] = ()

# Files that writers use while a recording is still being produced (rsync, browsers, editors).
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", "~")

#: What recorders, phones, contact-centre platforms and screen recorders write: taken without a look
#: inside (a file that is not audio after all fails with the audio error, as register says it).
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .rf64 .bw64 .w64 .aif .aiff .aifc .au .snd .caf .flac .mp3 .mp2 .ogg .oga .opus .spx "
    ".m4a .m4b .aac .mp4 .m4v .mov .3gp .3g2 .amr .awb .gsm .wma .asf .wmv .mka .mkv .webm .ac3 .vox "
    ".ulaw .alaw .mulaw .g711 .g722 .g729 .sln .raw .pcm".split()
)
#: Files that are certainly not recordings: counted as "not audio" without opening them.
NOT_AUDIO_EXTENSIONS = frozenset(
    ".txt .csv .tsv .json .jsonl .ndjson .xml .yaml .yml .log .md .html .htm .pdf .doc .docx .xls .xlsx "
    ".jpg .jpeg .png .gif .bmp .tif .tiff .zip .gz .tgz .bz2 .xz .7z .tar .rar .sha256 .md5 .sig .ini "
    ".cfg .conf .sh .py .db .sqlite .lock .pid".split()
)

#: why a file in the folder is not taken (the words of the summary)
NOT_AUDIO = "not audio"
BY_PATTERN = "excluded by --pattern"


# --------------------------------------------------------------------------------------------
# identity


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """A recording as the journal knows it: a re-recorded file with the same name is a new one."""

    relpath: str
    size: int
    mtime_ns: int

    @property
    def id(self) -> str:
        """A short stable id for the stdout line, so a consumer can recognise a repeated line."""
        digest = hashlib.sha256(f"{self.relpath}\0{self.size}\0{self.mtime_ns}".encode()).hexdigest()
        return digest[:16]

    def fields(self) -> dict[str, Any]:
        return {"file": self.relpath, "size": self.size, "mtime_ns": self.mtime_ns}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> FileIdentity | None:
        try:
            return cls(str(record["file"]), int(record["size"]), int(record["mtime_ns"]))
        except (KeyError, TypeError, ValueError):
            return None


# --------------------------------------------------------------------------------------------
# inbox: which files, and when they are ready


@dataclass
class _Observation:
    size: int
    mtime_ns: int
    since: float  # monotonic time this (size, mtime) was first seen


@dataclass(frozen=True)
class SettledFile:
    path: Path
    identity: FileIdentity


class Inbox:
    """Candidate recordings under a folder, taken once their size and mtime stop changing."""

    def __init__(
        self,
        root: Path,
        patterns: Sequence[str] = DEFAULT_PATTERNS,
        *,
        recursive: bool = False,
        excluded: Sequence[Path] = (),
        settle: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.patterns = tuple(p.lower() for p in patterns)  # none: every recording
        self.recursive = recursive
        self.excluded = tuple(Path(os.path.abspath(p)) for p in excluded)
        self.settle = settle
        self._clock = clock
        self._wallclock = wallclock
        self._watching: dict[Path, _Observation] = {}
        #: files of the folder not taken, and why (relpath -> NOT_AUDIO or BY_PATTERN)
        self.skipped: dict[str, str] = {}
        self.on_skip: Callable[[str, str], None] | None = None  # told of each file the first time

    # which paths count
    def relpath(self, path: Path) -> str | None:
        """Path relative to the root with '/' separators, or None when it is outside the root."""
        try:
            return Path(os.path.abspath(path)).relative_to(self.root).as_posix()
        except ValueError:
            return None

    def _is_excluded(self, path: Path) -> bool:
        return any(path == ex or ex in path.parents for ex in self.excluded)

    def accepts(self, path: Path) -> bool:
        """Whether a path is a recording this inbox takes (by name and place; a name that says nothing
        is opened once it settles, see needs_probe)."""
        return self.judge(path) is None

    def judge(self, path: Path) -> str | None:
        """None when the path is a candidate; else why not: "" for what is never a recording of this
        folder (outside it, hidden, a temporary name, a sub-folder's file without -r), or the reason the
        summary counts (NOT_AUDIO, BY_PATTERN)."""
        path = Path(os.path.abspath(path))
        rel = self.relpath(path)
        if rel is None or rel == "." or self._is_excluded(path):
            return ""
        parts = rel.split("/")
        if not self.recursive and len(parts) > 1:
            return ""
        if any(part.startswith(".") for part in parts):
            return ""
        name = parts[-1].lower()
        if name.endswith(TEMP_SUFFIXES):
            return ""
        if self.patterns:
            return None if any(fnmatch.fnmatchcase(name, p) for p in self.patterns) else BY_PATTERN
        return NOT_AUDIO if os.path.splitext(name)[1] in NOT_AUDIO_EXTENSIONS else None

    def needs_probe(self, path: Path) -> bool:
        """Whether a settled candidate must be opened to know it is a recording (no --pattern, and an
        extension that does not say)."""
        return not self.patterns and os.path.splitext(path.name.lower())[1] not in AUDIO_EXTENSIONS

    def skip(self, path: Path, reason: str) -> None:
        """Count a file of the folder as not taken (the summary names it)."""
        rel = self.relpath(path)
        if rel is not None and reason and self.skipped.get(rel) != reason:
            self.skipped[rel] = reason
            if self.on_skip is not None:
                self.on_skip(rel, reason)

    def _sort(self, path: Path) -> bool:
        """A regular file: a candidate (True), or counted as skipped when it is one the summary names."""
        reason = self.judge(path)
        if reason is None:
            return path.is_file()
        if reason and path.is_file():
            self.skip(path, reason)
        return False

    def scan(self) -> Iterator[Path]:
        """Every accepted regular file now in the folder (sorted, so runs are reproducible)."""
        if not self.recursive:
            try:
                names = sorted(os.listdir(self.root))
            except OSError as error:
                raise UsageError(f"cannot read {self.root}: {error.strerror}") from error
            for name in names:
                path = self.root / name
                if self._sort(path):
                    yield path
            return
        for directory, dirnames, filenames in os.walk(self.root):
            here = Path(directory)
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and not self._is_excluded(here / d)
            )
            for name in sorted(filenames):
                path = here / name
                if self._sort(path):
                    yield path

    # settling
    def observe(self, path: Path) -> None:
        """Consider this path (from a scan or a change notification) until it settles."""
        path = Path(os.path.abspath(path))
        if not self.accepts(path):
            return
        try:
            stat = path.stat()
        except OSError:
            self._watching.pop(path, None)
            return
        if not S_ISREG(stat.st_mode):  # a folder named x.wav, a FIFO: not a recording
            return
        seen = self._watching.get(path)
        if seen is None or (seen.size, seen.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            self._watching[path] = _Observation(stat.st_size, stat.st_mtime_ns, self._clock())

    def forget(self, path: Path) -> None:
        self._watching.pop(Path(os.path.abspath(path)), None)

    @property
    def waiting(self) -> int:
        """Files seen but not settled yet."""
        return len(self._watching)

    def take_settled(self) -> list[SettledFile]:
        """Files whose size and mtime have not changed for `settle` seconds; they leave the inbox."""
        now = self._clock()
        wall_ns = int(self._wallclock() * 1e9)
        settled: list[SettledFile] = []
        for path, seen in list(self._watching.items()):
            try:
                stat = path.stat()
            except OSError:  # gone (moved away, deleted): nothing to do
                del self._watching[path]
                continue
            if (stat.st_size, stat.st_mtime_ns) != (seen.size, seen.mtime_ns):
                self._watching[path] = _Observation(stat.st_size, stat.st_mtime_ns, now)
                continue
            # The kernel's mtime proves a file has not been written for a while; our own watching
            # covers filesystems whose clocks disagree with ours.
            quiet_on_disk = (wall_ns - stat.st_mtime_ns) / 1e9 >= self.settle
            quiet_seen = now - seen.since >= self.settle
            if quiet_on_disk or quiet_seen:
                del self._watching[path]
                rel = self.relpath(path)
                if rel is not None:
                    settled.append(SettledFile(path, FileIdentity(rel, stat.st_size, stat.st_mtime_ns)))
        settled.sort(key=lambda item: item.identity.relpath)
        return settled

    def next_check(self) -> float | None:
        """Seconds until the earliest waiting file could settle, None when none waits."""
        if not self._watching:
            return None
        now = self._clock()
        return max(0.0, min(seen.since + self.settle - now for seen in self._watching.values()))


def move_out(inbox: Inbox, path: Path, target_dir: Path) -> str | None:
    """Move a finished recording to target_dir, keeping its sub-folders; a warning when it could not."""
    if not path.exists():
        return None
    rel = inbox.relpath(path) or path.name
    target = Path(target_dir) / rel
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target = _free_name(target)
        shutil.move(str(path), str(target))
    except OSError as error:
        return f"could not move {rel} to {target_dir}: {error.strerror or error}"
    return None


def _free_name(target: Path) -> Path:
    """The target itself, or name.1.ext, name.2.ext, ... when it is taken (never overwrite)."""
    if not target.exists():
        return target
    for n in range(1, 10_000):
        candidate = target.with_name(f"{target.stem}.{n}{target.suffix}")
        if not candidate.exists():
            return candidate
    raise OSError(f"no free name for {target}")


async def follow_changes(inbox: Inbox, stop: asyncio.Event, changed: Callable[[], None]) -> None:
    """Feed the inbox the folder's change notifications (watchfiles) until `stop`; `changed` after each."""
    from watchfiles import Change, awatch

    def wanted(change: Change, path: str) -> bool:
        reason = inbox.judge(Path(path))
        if reason and change != Change.deleted and os.path.isfile(path):
            inbox.skip(Path(path), reason)
        return reason is None

    async for changes in awatch(
        inbox.root, watch_filter=wanted, recursive=inbox.recursive, stop_event=stop, debounce=200, step=50,
        rust_timeout=1000,
    ):
        for change, raw in changes:
            if change == Change.deleted:
                inbox.forget(Path(raw))
            else:
                inbox.observe(Path(raw))
        changed()

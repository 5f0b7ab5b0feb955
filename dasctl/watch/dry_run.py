"""`dasctl watch --dry-run`: what a run would do with each file of the folder, sending nothing and
writing nothing: enroll it (under which speaker id), or not (done or failed before, opted out, skipped
and why)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl.errors import DasctlError
from dasctl.watch.inbox import NOT_AUDIO, Inbox
from dasctl.watch.journal import DONE, FAILED
from dasctl.watch.probe import opens_as_audio

if TYPE_CHECKING:
    from dasctl.store import Store
    from dasctl.watch.settings import WatchSettings

#: what a run would do with a file
ENROLL = "enroll"
RETRY = "retry"  # failed before, and --retry-failed
ALREADY_DONE = "done"
ALREADY_FAILED = "failed"
OPTED_OUT = "opted out"
SKIP = "skip"


@dataclass
class Plan:
    file: str
    action: str
    speaker: str | None = None
    reason: str | None = None

    def document(self) -> dict[str, Any]:
        return {"schema": "dasctl.watch-plan/1", "file": self.file, "action": self.action,
                "speaker": self.speaker, "reason": self.reason}


def plan(settings: WatchSettings, store: Store | None,
         opted_out: Callable[[str], bool] | None = None) -> Iterator[Plan]:
    """One Plan per file of the folder (candidates first, in name order; then the files not taken)."""
    root = Path(os.path.abspath(settings.root))
    excluded = [d for d in (settings.done_dir, settings.failed_dir) if d is not None]
    inbox = Inbox(root, settings.patterns, recursive=settings.recursive, excluded=excluded, settle=0.0)
    states: dict[tuple[str, int, int], str] = {}
    if store is not None:
        for known in store.watch_files(str(root), reveal=False):
            states[(known.key.relpath, known.key.size, known.key.mtime_ns)] = known.state
    for path in inbox.scan():
        rel = inbox.relpath(path) or path.name
        if inbox.needs_probe(path) and not opens_as_audio(path):
            inbox.skip(path, NOT_AUDIO)
            continue
        try:
            stat = path.stat()
            speaker: str | None = settings.speakers.speaker(rel)
        except OSError:
            continue
        except DasctlError as error:
            yield Plan(rel, SKIP, None, error.message)
            continue
        state = states.get((rel, stat.st_size, stat.st_mtime_ns))
        if state == DONE:
            yield Plan(rel, ALREADY_DONE, speaker, "enrolled by an earlier run")
        elif state == FAILED and not settings.retry_failed:
            yield Plan(rel, ALREADY_FAILED, speaker, "failed earlier (--retry-failed runs it again)")
        elif speaker is not None and opted_out is not None and opted_out(speaker):
            yield Plan(rel, OPTED_OUT, speaker, "the speaker opted out")
        elif (missing := _no_consent(settings, rel, speaker)) is not None:
            yield Plan(rel, SKIP, speaker, missing)
        else:
            yield Plan(rel, RETRY if state == FAILED else ENROLL, speaker, None)
    for rel, reason in sorted(inbox.skipped.items()):
        yield Plan(rel, SKIP, None, reason)


def _no_consent(settings: WatchSettings, relpath: str, speaker: str | None) -> str | None:
    """Why a run would fail this file for want of a consent reference (--consent-from), or None."""
    if settings.consents is None:
        return None
    try:
        settings.consents.reference(relpath, speaker)
    except DasctlError as error:
        return error.message
    return None

"""A live call (`register --attach`, `verify --attach`): dasctl drives the signalling, the platform the audio.

In production the contact-centre platform (Genesys Cloud through AudioHook, Twilio through Media Streams)
streams the call's audio straight to the service, tagged with the call id (docs/protocol.md: the session
timeline, and "who opens the audio channel"). An attached session initializes with that call id, opens no
audio channel, and follows the service's info-vad-status events until the result: the same outcome as a
session from a file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from dasctl.errors import UsageError
from dasctl.recording import Opened, Recording

if TYPE_CHECKING:
    from dasctl.auth import TokenProvider
    from dasctl.config import Profile
    from dasctl.net import NetworkSettings
    from dasctl.session.records import Progress, RegisterOptions, RegisterOutcome

#: What stands for the recording where a file would be named (result documents, the store's source).
ATTACH_SOURCE = "attach"
#: `--attach new`: a fresh call id, as `dasctl call-id` prints.
NEW_CALL = "new"


def new_call_id() -> str:
    """A fresh call id (a UUID, as the service requires)."""
    return str(uuid.uuid4())


def parse_call_id(value: str, option: str = "--attach") -> str:
    """The call id to attach to: a UUID (any case, braces or not), or `new` for a fresh one."""
    if value.strip().lower() == NEW_CALL:
        return new_call_id()
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise UsageError(
            f"{option} {value!r} is not a call id: the service ties the audio to the session by a UUID",
            "Use the call's id as the platform sends it (conversationId / callSid), or run `dasctl call-id`.",
        ) from None


def recordings_of(
    files: list[str],
    attach: str | None,
    call_id: str | None,
    speaker: str | None,
    store: bool,
    wait: float,
) -> tuple[list[Recording], str | None]:
    """The recordings and call id of a register or verify command line: its files without --attach
    (where none is a usage error); with it, the live call alone, after checking the rest of the line
    against it."""
    if attach is None:
        if not files:
            raise UsageError(
                "missing FILE...", "Give the recordings (- reads stdin), or --attach CALL_ID for a live call."
            )
        return [Recording.from_argument(name) for name in files], call_id
    if files:
        raise UsageError(
            f"--attach takes no FILE (got {files[0]}): the platform sends the call's audio",
            "Leave the files out to attach to a live call, or leave --attach out to use files.",
        )
    if call_id is not None:
        raise UsageError("--attach already names the call id; leave --call-id out")
    if not wait > 0:
        raise UsageError(f"--wait {wait:g} must be positive", "It bounds the wait for the platform's audio.")
    if store and speaker is None:
        raise UsageError(
            "--attach needs --speaker ID: there is no file name to take the speaker id from",
            "Pass --speaker CUST12345, or --no-store to keep nothing.",
        )
    return [LiveCall()], parse_call_id(attach)


def waiting_line(call_id: str, protocol: str, profile: Profile | None = None) -> str:
    """What an attached session tells the person before it starts: what it waits for, and how to feed it."""
    platform = "AudioHook" if protocol == "audiohook" else "Media Stream"
    line = f"waiting for the platform's audio for call {call_id}: start the call's {platform} now"
    if profile is not None and profile.is_local:
        line += f"\n  (from a file: {stream_command(call_id, protocol)})"
    return line


def stream_command(call_id: str, protocol: str, file: str = "call.wav") -> str:
    """The `dasctl stream` line that feeds a call's audio to the local emulator."""
    flag = " --protocol audiohook" if protocol == "audiohook" else ""
    return f"dasctl stream {file} --call-id {call_id}{flag} --wait 30"


class CallAudio:
    """What a live call offers where a recording's stream would be: no frames to send (the platform sends
    them), nothing sent to keep, no input to fingerprint. A session given it opens no audio channel."""

    attached = True  # what register_audio looks at
    duration: float | None = None
    name = ATTACH_SOURCE

    def frames(self, frame_ms: int = 20) -> Iterator[bytes]:
        raise AssertionError("a live call's audio goes from the platform to the service, never through us")

    def keep_frames(self, limit_bytes: int) -> bytearray:
        return bytearray()  # the store keeps the enrollment audio the service returns instead

    def fingerprint(self) -> None:
        return None

    def channel_fields(self) -> dict[str, str | int]:
        """The document's channel: whatever the platform streamed for the call, chosen there, not here."""
        return {"channel": "platform"}


@dataclass(frozen=True)
class LiveCall(Recording):
    """The live call as the one "recording" of a register or verify run: named `attach` in documents and
    in the store's source fields; opening it gives CallAudio."""

    name: str = ATTACH_SOURCE

    @property
    def is_stdin(self) -> bool:
        return False

    @property
    def source_path(self) -> str:
        return ATTACH_SOURCE

    @property
    def stem(self) -> str:
        return ATTACH_SOURCE

    def check_exists(self) -> None:
        return None

    @contextmanager
    def open(self, **audio_options: Any) -> Iterator[Opened]:
        yield Opened(cast(Any, CallAudio()), None)


async def attach_call(
    options: RegisterOptions,
    profile: Profile,
    tokens: TokenProvider,
    network: NetworkSettings,
    on_progress: Callable[[Progress], None] | None = None,
) -> RegisterOutcome:
    """Run one attached session (register, or verify with options.kind) for options.call_id.

    No audio channel is opened; options.audio_wait bounds the wait for the platform's first audio after
    info-consumer-ready. Returns the terminal event as register_audio does (the collected audio rides
    on result-success); raises ServiceUnavailable when nothing comes.
    """
    from dasctl.session.driver import register_audio

    assert options.call_id, "an attached session needs the call's id"
    return await register_audio(CallAudio(), options, profile, tokens, network, on_progress)

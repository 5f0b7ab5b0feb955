"""The socket driver: one register or verify session (signalling + audio channel), one typed outcome.

No Typer or rich here: `register_audio` is the library entry point that `dasctl register`, `verify`,
`reenroll` and `watch` call. The package is cut along the session's seams:

- records: what a session is asked for (RegisterOptions), reports (Progress, the states) and ends with
  (RegisterOutcome);
- signalling: the Socket.IO client, connecting with the token, leaving quietly;
- audio_channel: opening the protocol's audio channel and sending the audio, paced;
- driver: RegisterSession, which runs the two together until the service's terminal event;
- attach: a live call's session (`--attach`): signalling only, the platform sends the audio.

Everything callers use is importable from `dasctl.session` itself.
"""

from __future__ import annotations

from dasctl.session.attach import ATTACH_SOURCE, CallAudio, attach_call, parse_call_id
from dasctl.session.driver import RegisterSession, register_audio
from dasctl.session.records import (
    AWAITING_AUDIO,
    CHANNEL_FAILURE_GRACE,
    CONNECTING,
    DONE,
    HEARING,
    INITIALIZING,
    PAUSED,
    PROGRESS_INTERVAL,
    STATES,
    STREAMING,
    WAITING,
    AudioSource,
    Progress,
    RegisterOptions,
    RegisterOutcome,
)
from dasctl.session.signalling import _async_client_class

__all__ = [
    "ATTACH_SOURCE",
    "CallAudio",
    "AWAITING_AUDIO",
    "HEARING",
    "attach_call",
    "parse_call_id",
    "CHANNEL_FAILURE_GRACE",
    "CONNECTING",
    "DONE",
    "INITIALIZING",
    "PAUSED",
    "PROGRESS_INTERVAL",
    "STATES",
    "STREAMING",
    "WAITING",
    "AudioSource",
    "Progress",
    "RegisterOptions",
    "RegisterOutcome",
    "RegisterSession",
    "_async_client_class",
    "register_audio",
]

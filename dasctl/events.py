"""das-Peak Streaming event names, payload field names, and typed events parsed from raw payloads.

This is the only module that knows the wire names (docs/protocol.md §3). The emulator imports the
constants; the client also uses the parser. Parsing is lenient on purpose: the vendor may add
events and fields at any time, so unknown ones are kept as raw data, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Socket.IO namespaces (suffixes; the profile's namespace_prefix goes in front).
NS_REGISTER = "register"
NS_VERIFY = "verify"
NS_ALIVE = "alive"

# client -> server
INITIALIZE = "initialize"
ALIVE = "alive"

# server -> client
INFO_CONSUMER_READY = "info-consumer-ready"
INFO_VAD_STATUS = "info-vad-status"
RESULT_SUCCESS = "result-success"
RESULT_FAIL_SPOOF = "result-fail-spoof"
RESULT_FAIL_SCORE = "result-fail-score"
ERROR_CONSUMER_NOT_READY = "error-consumer-not-ready"
ERROR_PARAMETERS = "error-parameters"
ERROR_AUDIO = "error-audio"
ERROR_DAS_PEAK = "error-das-Peak"  # capital P, as documented

RESULT_EVENTS = (RESULT_SUCCESS, RESULT_FAIL_SPOOF, RESULT_FAIL_SCORE)
ERROR_EVENTS = (ERROR_CONSUMER_NOT_READY, ERROR_PARAMETERS, ERROR_AUDIO, ERROR_DAS_PEAK)

# payload fields
F_EVENT = "event"
F_CONTENT = "content"
F_AUDIO_SECONDS = "audio_seconds"
F_VAD_PERCENTAGE = "vad_percentage"
F_AUTHENTICITY = "authenticity"
F_SCORE = "score"
F_VOICE_AUDIO_COLLECTED = "voice_audio_collected"
F_CREDENTIAL = "credential"

# initialize payload
F_METADATA = "metadata"
F_REGISTER_REQUEST = "register_request"
F_VERIFY_REQUEST = "verify_request"
M_AUDIO_PROTOCOL = "audio_protocol"
M_AUDIO_FORMAT = "audio_format"
M_AUDIO_CODEC = "audio_codec"
M_SAMPLE_FORMAT = "sample_format"
M_SAMPLE_RATE = "sample_rate"
M_CHANNELS = "channels"
M_CALL_ID = "call_id"
R_AUTHENTICITY_THRESHOLD = "authenticity_threshold"
R_SCORE_THRESHOLD = "score_threshold"
R_AUDIO_TOTAL_DURATION = "audio_total_duration"
R_MODEL_HASH = "model_hash"
R_CREDENTIAL = "credential"

AUDIO_PROTOCOLS = ("twilio", "audiohook")

CONSUMER_READY_CONTENT = "Audio consumer for provided audio protocol is ready"
VAD_STATUS_CONTENT = "Voice activity detection percentage"
REGISTRATION_APPROVED_CONTENT = "Registration: approved"
VERIFICATION_APPROVED_CONTENT = "Verification: approved"


def is_terminal(name: str) -> bool:
    """Whether an event ends the session: every result-* and error-*, known or not."""
    return name.startswith("result-") or name.startswith("error-")


def _float(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


@dataclass(frozen=True)
class ServiceEvent:
    """Any event from the service: its name, its human text, and the raw payload."""

    name: str
    content: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return is_terminal(self.name)


@dataclass(frozen=True)
class ConsumerReady(ServiceEvent):
    pass


@dataclass(frozen=True)
class VadStatus(ServiceEvent):
    audio_seconds: float = 0.0
    vad_percentage: int = 0


@dataclass(frozen=True)
class SessionResult(ServiceEvent):
    """A result-* event: success or a biometric 'no'."""

    authenticity: float | None = None
    score: float | None = None
    voice_audio_collected: float | None = None
    credential: str | None = None
    collected_audio: bytes | None = None  # second argument of result-success: raw 8 kHz mu-law

    @property
    def success(self) -> bool:
        return self.name == RESULT_SUCCESS


@dataclass(frozen=True)
class SessionError(ServiceEvent):
    """An error-* event."""


def parse_event(name: str, args: tuple[Any, ...]) -> ServiceEvent:
    """Turn a Socket.IO event (name and any number of arguments) into a typed event."""
    payload = args[0] if args else {}
    if not isinstance(payload, dict):
        payload = {"value": payload}
    content = payload.get(F_CONTENT)
    content = content if isinstance(content, str) else ""
    if name == INFO_CONSUMER_READY:
        return ConsumerReady(name, content, payload)
    if name == INFO_VAD_STATUS:
        return VadStatus(
            name,
            content,
            payload,
            audio_seconds=_float(payload.get(F_AUDIO_SECONDS)) or 0.0,
            vad_percentage=_int(payload.get(F_VAD_PERCENTAGE)) or 0,
        )
    if name.startswith("result-"):
        audio = args[1] if len(args) > 1 and isinstance(args[1], (bytes, bytearray)) else None
        credential = payload.get(F_CREDENTIAL)
        return SessionResult(
            name,
            content,
            payload,
            authenticity=_float(payload.get(F_AUTHENTICITY)),
            score=_float(payload.get(F_SCORE)),
            voice_audio_collected=_float(payload.get(F_VOICE_AUDIO_COLLECTED)),
            credential=credential if isinstance(credential, str) else None,
            collected_audio=bytes(audio) if audio is not None else None,
        )
    if name.startswith("error-"):
        return SessionError(name, content, payload)
    return ServiceEvent(name, content, payload)

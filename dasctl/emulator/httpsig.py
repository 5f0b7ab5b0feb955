"""Server-side check of the HTTP Message Signature an AudioHook client puts on its handshake.

Genesys AudioHook signs the WebSocket upgrade with HMAC-SHA256 (RFC 9421 draft profile):
the covered components are listed in `Signature-Input`, and the signature base is one line per
component, then the `@signature-params` line with the parameters exactly as they were sent.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

REQUIRED_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
MIN_NONCE_LENGTH = 22
#: Clock difference tolerated between the client and us when checking `created`.
CLOCK_SKEW = 60

_MEMBER = re.compile(r"^\s*([a-z*][a-z0-9_.*-]*)=(.*)$", re.DOTALL)
_INNER_LIST = re.compile(r'^\(((?:\s*"[^"]*")*)\s*\)')
_PARAM = re.compile(r';\s*([a-z*][a-z0-9_.*-]*)=("(?:[^"\\]|\\.)*"|[^;\s]*)')
_SIGNATURE = re.compile(r"^\s*([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/=]*):\s*$")


class SignatureError(Exception):
    """The handshake signature is missing, malformed, stale, or does not match."""


@dataclass(frozen=True)
class SignatureInput:
    label: str
    components: tuple[str, ...]
    params: dict[str, str | int]
    serialized: str  # the inner list and parameters exactly as sent (the @signature-params value)


def parse_signature_input(header: str) -> SignatureInput:
    """Parse a one-member `Signature-Input` header."""
    member = _MEMBER.match(header)
    if member is None:
        raise SignatureError("Signature-Input is not label=(...)")
    label, rest = member.group(1), member.group(2).strip()
    inner = _INNER_LIST.match(rest)
    if inner is None:
        raise SignatureError("Signature-Input has no component list")
    components = tuple(re.findall(r'"([^"]*)"', inner.group(1)))
    params_text = rest[inner.end() :]
    params: dict[str, str | int] = {}
    position = 0
    for match in _PARAM.finditer(params_text):
        if params_text[position : match.start()].strip():
            raise SignatureError("Signature-Input parameters are malformed")
        position = match.end()
        raw = match.group(2)
        if raw.startswith('"'):
            params[match.group(1)] = raw[1:-1]
        else:
            try:
                params[match.group(1)] = int(raw)
            except ValueError:
                raise SignatureError(f"Signature-Input parameter {match.group(1)} is malformed") from None
    if params_text[position:].strip():
        raise SignatureError("Signature-Input parameters are malformed")
    return SignatureInput(label, components, params, rest)


def signature_base(values: Mapping[str, str], signature_input: SignatureInput) -> str:
    """The RFC 9421 signature base for these component values."""
    lines = [f'"{name}": {values[name]}' for name in signature_input.components]
    lines.append(f'"@signature-params": {signature_input.serialized}')
    return "\n".join(lines)


def sign(base: str, secret: bytes) -> str:
    """base64 HMAC-SHA256 of a signature base."""
    return base64.b64encode(hmac.new(secret, base.encode(), "sha256").digest()).decode("ascii")


def verify(
    headers: Mapping[str, str],
    request_target: str,
    authority: str,
    api_key: str,
    secret: bytes,
    now: float,
) -> None:
    """Raise SignatureError unless the headers carry a valid, current AudioHook signature."""
    input_header = headers.get("signature-input")
    signature_header = headers.get("signature")
    if not input_header or not signature_header:
        raise SignatureError("the handshake is not signed (Signature-Input and Signature are required)")
    signature_input = parse_signature_input(input_header)
    missing = [name for name in REQUIRED_COMPONENTS if name not in signature_input.components]
    if missing:
        raise SignatureError(f"the signature does not cover {', '.join(missing)}")
    params = signature_input.params
    if params.get("alg") != "hmac-sha256":
        raise SignatureError('alg must be "hmac-sha256"')
    if params.get("keyid") != api_key:
        raise SignatureError("keyid is not the X-API-KEY")
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or len(nonce) < MIN_NONCE_LENGTH:
        raise SignatureError(f"nonce must be at least {MIN_NONCE_LENGTH} characters")
    created, expires = params.get("created"), params.get("expires")
    if not isinstance(created, int) or not isinstance(expires, int):
        raise SignatureError("created and expires are required integers")
    if created > now + CLOCK_SKEW:
        raise SignatureError("the signature is created in the future")
    if expires <= now:
        raise SignatureError("the signature has expired")
    values: dict[str, str] = {"@request-target": request_target, "@authority": authority.lower()}
    for name in signature_input.components:
        if name.startswith("@"):
            if name not in values:
                raise SignatureError(f"unsupported derived component {name}")
            continue
        value = headers.get(name)
        if value is None:
            raise SignatureError(f"signed header {name} is missing")
        values[name] = value.strip()
    match = _SIGNATURE.match(signature_header)
    if match is None or match.group(1) != signature_input.label:
        raise SignatureError(f"Signature has no {signature_input.label}=:...: member")
    try:
        given = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("Signature is not base64") from None
    expected = hmac.new(secret, signature_base(values, signature_input).encode(), "sha256").digest()
    if not hmac.compare_digest(given, expected):
        raise SignatureError("the signature does not match")

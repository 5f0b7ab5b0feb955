"""Client side of the HTTP Message Signature (RFC 9421, hmac-sha256) that AudioHook puts on its handshake.

Written independently from the emulator's verifier on purpose: a shared implementation would hide a
shared mistake. The known-answer test uses the vector from Genesys' AudioHook reference implementation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

ALGORITHM = "hmac-sha256"
DEFAULT_LABEL = "sig1"
DEFAULT_LIFETIME = 30  # seconds, as the reference client
_OBS_FOLD = re.compile(r"[ \t]*\r\n[ \t]+")
NONCE_BYTES = 18  # 24 base64 characters; docs/protocol.md §4.2 asks for >= 22

#: The components AudioHook signs, in order (docs/protocol.md §4.2).
AUDIOHOOK_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)


def secret_key(secret: str) -> bytes:
    """The HMAC key of an AudioHook client secret: Genesys issues it in base64; other text is used as is."""
    text = secret.strip()
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text.encode()
    return key or text.encode()


def _sf_string(value: str) -> str:
    """An RFC 8941 sf-string: quoted, with backslash and quote escaped."""
    if any(ord(char) < 0x20 or ord(char) > 0x7E for char in value):
        raise ValueError(f"not a printable ASCII structured-field string: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sf_param(value: str | int) -> str:
    return str(value) if isinstance(value, int) else _sf_string(value)


def request_target(url: str) -> str:
    """@request-target of a URL: its path and query exactly as aiohttp sends them (RFC 9421 §2.2.5).

    aiohttp sends yarl's normal form (`%7e` -> `~`, `%2f` in a query -> `/`, a space -> `+`), not the
    configured string: signing the string would fail at any server that checks what it received.
    """
    import yarl

    return yarl.URL(url).raw_path_qs or "/"


def authority(url: str) -> str:
    """@authority of a URL: lowercase host, with the port only when it is not the scheme's default."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    default = {"ws": 80, "http": 80, "wss": 443, "https": 443}.get(parts.scheme.lower())
    if parts.port is not None and parts.port != default:
        return f"{host}:{parts.port}"
    return host


def sign(
    components: Sequence[tuple[str, str]],
    *,
    keyid: str,
    key: bytes,
    created: int | None = None,
    expires: int | None = None,
    nonce: str | None = None,
    label: str = DEFAULT_LABEL,
) -> dict[str, str]:
    """Signature-Input and Signature headers over these (component name, value) pairs."""
    created = int(time.time()) if created is None else int(created)
    expires = created + DEFAULT_LIFETIME if expires is None else int(expires)
    nonce = nonce or base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode()
    names = [name.lower() for name, _ in components]
    params: list[tuple[str, str | int]] = [
        ("keyid", keyid),
        ("nonce", nonce),
        ("alg", ALGORITHM),
        ("created", created),
        ("expires", expires),
    ]
    signature_params = (
        "("
        + " ".join(_sf_string(name) for name in names)
        + ")"
        + "".join(f";{name}={_sf_param(value)}" for name, value in params)
    )
    # RFC 9421 §2.1: strip the value and unfold obsolete line folding, nothing more
    lines = [
        f"{_sf_string(name)}: {_OBS_FOLD.sub(' ', value.strip())}"
        for name, (_, value) in zip(names, components, strict=True)
    ]
    lines.append(f'"@signature-params": {signature_params}')
    digest = hmac.new(key, "\n".join(lines).encode(), hashlib.sha256).digest()
    return {
        "Signature-Input": f"{label}={signature_params}",
        "Signature": f"{label}=:{base64.b64encode(digest).decode()}:",
    }


def audiohook_signature(url: str, headers: dict[str, str], *, api_key: str, secret: str) -> dict[str, str]:
    """Signature headers for an AudioHook handshake to url with these Audiohook-* and X-API-KEY headers."""
    lowered = {name.lower(): value for name, value in headers.items()}
    values = {"@request-target": request_target(url), "@authority": authority(url), **lowered}
    return sign(
        [(name, values[name]) for name in AUDIOHOOK_COMPONENTS], keyid=api_key, key=secret_key(secret)
    )

"""Envelope encryption of the store's secrets: AES-256-GCM with a data key, the data key wrapped by the key
the user holds (the key-encryption key, KEK), both from the `cryptography` package.

Why an envelope: the KEK can change (`credentials rekey`) by re-wrapping one small data key per store,
without touching a record; and the KEK never leaves the process that holds it.

Every ciphertext names its data key, and every data key row names the KEK that wrapped it (`kek_id`, a
fingerprint that reveals nothing of the key). What is bound to a ciphertext as associated data (the column
and the speaker) keeps a database administrator from moving one speaker's template onto another.

Formats (never change one; add a version):
- binary (audio): b"DX1\\0" + data key id (4 bytes, big-endian) + nonce (12) + ciphertext and tag
- text (credential, JSON documents): "dx1:" + data key id + ":" + base64(nonce + ciphertext and tag)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping

# `cryptography` (OpenSSL) is imported where a key is used: listing and completion, which need none, skip it

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
BINARY_MAGIC = b"DX1\0"
TEXT_PREFIX = "dx1:"


class SealError(Exception):
    """A ciphertext that does not open: truncated, altered, or made with a data key this store lacks."""


def kek_id(kek: bytes) -> str:
    """The fingerprint of a key-encryption key: names it in the store and in messages, reveals nothing."""
    return hashlib.sha256(b"dasctl store key-encryption key\0" + kek).hexdigest()[:16]


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def key_text(key: bytes) -> str:
    """A key as its file holds it: base64, one line."""
    return base64.b64encode(key).decode("ascii")


def parse_key(data: bytes, where: str) -> bytes:
    """A key from a file or variable: base64 text of 32 bytes (what `credentials key new` writes), or the
    32 raw bytes. ValueError naming `where` and the accepted forms otherwise."""
    text = data.strip()
    if len(data) == KEY_BYTES and not _is_base64_of_key(text):
        return bytes(data)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"{where} is not a store key: it must be {KEY_BYTES} bytes, base64-encoded "
                         f"(44 characters), as `dasctl credentials key new` writes")
    return key


def _is_base64_of_key(text: bytes) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) == KEY_BYTES
    except (binascii.Error, ValueError):
        return False


def wrap(kek: bytes, data_key: bytes) -> bytes:
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap

    return aes_key_wrap(kek, data_key)


def unwrap(kek: bytes, wrapped: bytes) -> bytes | None:
    """The data key, or None when this KEK did not wrap it (AES key wrap checks its integrity)."""
    from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

    try:
        return aes_key_unwrap(kek, bytes(wrapped))
    except (InvalidUnwrap, ValueError):
        return None


def associated(label: str, *parts: str) -> bytes:
    """What a ciphertext is bound to: its column and the row's identity (a speaker, a watched file)."""
    return "\0".join((label, *parts)).encode("utf-8", "surrogatepass")


class Sealer:
    """Seals with the store's active data key; opens with any data key it was given."""

    def __init__(self, data_keys: Mapping[int, bytes], active: int) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._ciphers = {key_id: AESGCM(key) for key_id, key in data_keys.items()}
        self.active = active

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.active].encrypt(nonce, plaintext, aad)
        return BINARY_MAGIC + self.active.to_bytes(4, "big") + nonce + sealed

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        sealed = bytes(sealed)
        if not sealed.startswith(BINARY_MAGIC) or len(sealed) < len(BINARY_MAGIC) + 4 + NONCE_BYTES + 16:
            raise SealError("a truncated or foreign ciphertext")
        key_id = int.from_bytes(sealed[4:8], "big")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SealError(f"a ciphertext made with data key {key_id}, which this key does not open")
        try:
            return cipher.decrypt(sealed[8:8 + NONCE_BYTES], sealed[8 + NONCE_BYTES:], aad)
        except InvalidTag:
            raise SealError("a ciphertext that was altered or truncated (its tag does not match)") from None

    def seal_text(self, plaintext: str, aad: bytes) -> str:
        sealed = self.seal(plaintext.encode("utf-8", "surrogatepass"), aad)
        return f"{TEXT_PREFIX}{self.active}:" + base64.b64encode(sealed[8:]).decode("ascii")

    def open_text(self, sealed: str, aad: bytes) -> str:
        try:
            _, key_id, body = sealed.split(":", 2)
            raw = BINARY_MAGIC + int(key_id).to_bytes(4, "big") + base64.b64decode(body, validate=True)
        except (ValueError, OverflowError, binascii.Error):
            raise SealError("a truncated or foreign ciphertext") from None
        return self.open(raw, aad).decode("utf-8", "surrogatepass")


def is_sealed_text(value: object) -> bool:
    return isinstance(value, str) and value.startswith(TEXT_PREFIX)


def is_sealed_bytes(value: object) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview)) and bytes(value[:4]) == BINARY_MAGIC


def data_key_of(value: object) -> int | None:
    """Which data key a stored value was sealed with (None: not sealed)."""
    if is_sealed_text(value):
        try:
            return int(str(value).split(":", 2)[1])
        except ValueError:
            return None
    if is_sealed_bytes(value):
        return int.from_bytes(bytes(value[4:8]), "big")  # type: ignore[index]
    return None

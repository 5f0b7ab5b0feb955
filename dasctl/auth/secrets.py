"""Secret storage: the OS keyring when it answers within a few seconds, else a 0600 file in a 0700 dir.

A headless box has no keyring daemon, and some keyring backends hang on a missing D-Bus instead of
failing, so every keyring call runs in a worker thread with a deadline.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dasctl.config import secrets_dir, validate_profile_name, write_private_file
from dasctl.errors import UsageError
from dasctl.logs import register_secret

log = logging.getLogger(__name__)

KEYRING_SERVICE = "dasctl"
KEYRING_TIMEOUT = 3.0
CLIENT_SECRET = "client_secret"
AUDIOHOOK_SECRET = "audiohook_secret"
KEYRING = "keyring"

T = TypeVar("T")


class KeyringUnavailable(Exception):
    """The OS keyring failed or did not answer in time."""


@dataclass(frozen=True)
class StoredSecret:
    value: str
    #: "keyring", or the path of the 0600 file
    location: str


@dataclass(frozen=True)
class StoreResult:
    location: str
    #: why the keyring was not used (None when it was)
    keyring_problem: str | None = None


# Once the keyring has failed or timed out in this process, do not wait for it again.
_keyring_broken: str | None = None
_keyring_lock = threading.Lock()


def _call_keyring(action: Callable[[Any], T], timeout: float) -> T:
    global _keyring_broken
    if _keyring_broken is not None:
        raise KeyringUnavailable(_keyring_broken)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            import keyring

            outcome["value"] = action(keyring)
        except Exception as error:  # any backend failure means "no keyring"
            outcome["error"] = error

    worker = threading.Thread(target=work, name="dasctl-keyring", daemon=True)
    worker.start()
    worker.join(timeout)
    problem: str | None = None
    if worker.is_alive():
        problem = f"the OS keyring did not answer within {timeout:g} s"
    elif "error" in outcome:
        error = outcome["error"]
        problem = f"no usable OS keyring ({type(error).__name__}: {str(error)[:120]})"
    if problem is not None:
        with _keyring_lock:
            _keyring_broken = problem
        log.debug("keyring unavailable: %s", problem)
        raise KeyringUnavailable(problem)
    return outcome.get("value")  # type: ignore[return-value]


class SecretStore:
    """Client and AudioHook secrets per profile, in the keyring or the fallback file."""

    def __init__(self, env: Mapping[str, str] | None = None,
                 keyring_timeout: float = KEYRING_TIMEOUT) -> None:
        self.env = os.environ if env is None else env
        self.keyring_timeout = keyring_timeout

    def file_path(self, profile: str) -> Path:
        """The fallback file of a profile: <config dir>/secrets/<profile>.json."""
        return secrets_dir(self.env) / f"{validate_profile_name(profile)}.json"

    def _read_file(self, profile: str) -> dict[str, str]:
        path = self.file_path(profile)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise UsageError(
                f"cannot read the secrets file {path}: {error}",
                f"Delete it and run `dasctl login --profile {profile}` again.",
            ) from None
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def _write_file(self, profile: str, data: Mapping[str, str]) -> None:
        path = self.file_path(profile)
        if data:
            write_private_file(path, json.dumps(dict(data), indent=2).encode("utf-8"))
        else:
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    @staticmethod
    def _username(profile: str, kind: str) -> str:
        return f"{profile}:{kind}"

    def get(self, profile: str, kind: str = CLIENT_SECRET) -> StoredSecret | None:
        """The stored secret of a profile, or None; the file first (no waiting), then the keyring."""
        value = self._read_file(profile).get(kind)
        if value:
            register_secret(value)
            return StoredSecret(value, str(self.file_path(profile)))
        username = self._username(profile, kind)
        try:
            value = _call_keyring(lambda k: k.get_password(KEYRING_SERVICE, username), self.keyring_timeout)
        except KeyringUnavailable:
            return None
        if value:
            register_secret(value)
            return StoredSecret(value, KEYRING)
        return None

    def put(self, profile: str, kind: str, value: str) -> StoreResult:
        """Store a secret: the keyring if it answers, else the 0600 file (the result says which, and why)."""
        register_secret(value)
        username = self._username(profile, kind)
        try:
            _call_keyring(lambda k: k.set_password(KEYRING_SERVICE, username, value), self.keyring_timeout)
        except KeyringUnavailable as problem:
            data = self._read_file(profile)
            data[kind] = value
            self._write_file(profile, data)
            return StoreResult(str(self.file_path(profile)), str(problem))
        # a stale copy in the file would shadow the keyring on the next read
        data = self._read_file(profile)
        if data.pop(kind, None) is not None:
            self._write_file(profile, data)
        return StoreResult(KEYRING)

    def delete(self, profile: str, kind: str = CLIENT_SECRET) -> list[str]:
        """Forget a secret everywhere; returns where it was found."""
        removed: list[str] = []
        data = self._read_file(profile)
        if data.pop(kind, None) is not None:
            self._write_file(profile, data)
            removed.append(str(self.file_path(profile)))
        username = self._username(profile, kind)
        try:
            if _call_keyring(lambda k: k.get_password(KEYRING_SERVICE, username), self.keyring_timeout):
                _call_keyring(lambda k: k.delete_password(KEYRING_SERVICE, username), self.keyring_timeout)
                removed.append(KEYRING)
        except KeyringUnavailable:
            pass
        return removed

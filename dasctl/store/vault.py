"""Where the store's key comes from, in precedence order like every setting:

1. `--store-key-file FILE` / `DASCTL_STORE_KEY_FILE` (a file a secrets manager, systemd `LoadCredential=`
   or a Kubernetes secret puts in place);
2. `DASCTL_STORE_KEY` (the key itself, base64, for a secrets manager that injects variables);
3. the profile's `store_key_file`;
4. for a local SQLite store only: the key dasctl made on first use, kept in the OS keyring, else in a 0600
   file in the config directory (one warning saying where). A team (PostgreSQL) store never gets an
   implicit key: whoever runs it decides where its key lives.

Nothing here reads or writes the store; `sealing.py` does, with the key found here.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dasctl.errors import AuthError

if TYPE_CHECKING:
    from dasctl.config import Profile

ENV_KEY_FILE = "DASCTL_STORE_KEY_FILE"
ENV_KEY = "DASCTL_STORE_KEY"
KEY_FILE_NAME = "store.key"
KEYRING_USER = "store-key"
KEYRING = "the OS keyring"

Warn = Callable[[str], None]


class StoreKeyError(AuthError):
    """No key for an encrypted store, the wrong key, or an unusable key file (exit 4). Names where dasctl
    looked, never the key."""

    kind = "store-key"


@dataclass(frozen=True)
class KeySettings:
    """What the caller resolved about the key file: the value and where it was set, as `load_profile`
    resolves every setting (flag > environment > profile file)."""

    key_file: str | None = None
    #: config.SOURCE_FLAG / SOURCE_ENV / SOURCE_FILE, or None when not set
    source: str | None = None
    #: how to name the setting in a message: "--store-key-file", "store_key_file of profile 'ops' in ..."
    where: str | None = None


def key_settings(profile: Profile | None) -> KeySettings:
    """The key file a resolved profile names (from --store-key-file, DASCTL_STORE_KEY_FILE or its file),
    said as the user set it: what every command and the Python API hand to open_store."""
    if profile is None or not profile.store_key_file:
        return KeySettings()
    source = profile.sources.get("store_key_file")
    where = {"flag": "--store-key-file", "environment": ENV_KEY_FILE}.get(
        source or "", f"store_key_file of profile '{profile.name}'")
    return KeySettings(profile.store_key_file, source, where)


@dataclass
class StoreKey:
    """The key-encryption key found for a store (or not), and where dasctl looked."""

    kek: bytes | None
    #: where it came from, as a person reads it: "DASCTL_STORE_KEY", "/etc/dasctl/store.key", KEYRING
    source: str | None
    looked: list[str] = field(default_factory=list)
    #: for a local store with no key yet: make one and keep it (keyring, else a 0600 file)
    create: Callable[[], StoreKey] | None = None

    def looked_text(self) -> str:
        return ", ".join(self.looked)


def read_key_file(path: Path, where: str, warn: Warn) -> bytes:
    """A key file: regular, readable, 32 bytes (base64 or raw); group/other permissions only warn, as
    ssh does for a config file, because a key mounted by a secrets manager may be 0644 in a 0700 dir."""
    from dasctl.store.crypto import parse_key

    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise StoreKeyError(f"{where} {path} is not a regular file")
        if info.st_mode & 0o077:
            warn(f"the store key file {path} can be read by others (mode {stat.S_IMODE(info.st_mode):04o}); "
                 f"chmod 600 {path}")
        with path.open("rb") as file:
            data = file.read(4096)
    except FileNotFoundError:
        raise StoreKeyError(f"{where} {path}: no such file",
                            "Make a key with `dasctl credentials key new > FILE` (keep it safe).") from None
    except OSError as error:
        raise StoreKeyError(f"{where} {path}: cannot read it: {error.strerror}") from None
    try:
        return parse_key(data, f"{where} {path}")
    except ValueError as error:
        raise StoreKeyError(str(error)) from None


def implicit_key_file(env: Mapping[str, str]) -> Path:
    from dasctl.config import config_dir

    return config_dir(env) / KEY_FILE_NAME


def resolve_key(settings: KeySettings, env: Mapping[str, str], *, local: bool, warn: Warn) -> StoreKey:
    """The store key by precedence (see the module's docstring)."""
    from dasctl.config import SOURCE_FILE

    looked: list[str] = []
    if settings.key_file and settings.source != SOURCE_FILE:
        where = settings.where or ENV_KEY_FILE
        path = Path(settings.key_file).expanduser()
        return StoreKey(read_key_file(path, where, warn), str(path))
    looked.append(f"--store-key-file and {ENV_KEY_FILE} (not set)")
    if env.get(ENV_KEY):
        from dasctl.store.crypto import parse_key

        try:
            return StoreKey(parse_key(env[ENV_KEY].encode("ascii", "replace"), ENV_KEY), ENV_KEY)
        except ValueError as error:
            raise StoreKeyError(str(error)) from None
    looked.append(f"{ENV_KEY} (not set)")
    if settings.key_file:
        where = settings.where or "store_key_file"
        path = Path(settings.key_file).expanduser()
        return StoreKey(read_key_file(path, where, warn), str(path))
    looked.append("the profile's store_key_file (not set)")
    if not local:
        return StoreKey(None, None, looked)
    return _implicit(env, looked, warn)


def _implicit(env: Mapping[str, str], looked: list[str], warn: Warn) -> StoreKey:
    from dasctl.auth.secrets import KEYRING_SERVICE, KEYRING_TIMEOUT, KeyringUnavailable, _call_keyring

    path = implicit_key_file(env)
    looked = [*looked, str(path), f"{KEYRING} ({KEYRING_SERVICE}/{KEYRING_USER})"]
    if path.exists():
        return StoreKey(read_key_file(path, "the store key file", warn), str(path), looked)
    try:
        text = _call_keyring(lambda k: k.get_password(KEYRING_SERVICE, KEYRING_USER), KEYRING_TIMEOUT)
    except KeyringUnavailable:
        text = None
    if text:
        from dasctl.store.crypto import parse_key

        try:
            return StoreKey(parse_key(text.encode("ascii", "replace"), f"{KEYRING} entry"), KEYRING, looked)
        except ValueError as error:
            raise StoreKeyError(str(error)) from None

    def create() -> StoreKey:
        from dasctl.store.crypto import key_text, new_key

        key = new_key()
        try:
            _call_keyring(lambda k: k.set_password(KEYRING_SERVICE, KEYRING_USER, key_text(key)),
                          KEYRING_TIMEOUT)
            return StoreKey(key, KEYRING, looked)
        except KeyringUnavailable:
            write_new_key_file(path, key)
            warn(f"no usable OS keyring; the credential store's key is kept in {path} (mode 0600): "
                 "back it up, the credentials cannot be read without it")
            return StoreKey(key, str(path), looked)

    return StoreKey(None, None, looked, create)


def write_new_key_file(path: Path, key: bytes) -> None:
    """A new key file, 0600 from its first byte; never over an existing one."""
    from dasctl.config import private_dir
    from dasctl.store.crypto import key_text

    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(key_text(key) + "\n")
        file.flush()
        os.fsync(file.fileno())

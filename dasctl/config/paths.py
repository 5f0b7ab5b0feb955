"""Where dasctl keeps its files: DASCTL_CONFIG_DIR when set (tests), else the platform's (platformdirs)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dasctl.atomic_file import write_atomically
from dasctl.config.constants import CONFIG_FILE_NAME, ENV_CONFIG_DIR, STORE_FILE_NAME


def effective_env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    """The environment a lookup reads: the one given, else the process's."""
    return os.environ if env is None else env


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The configuration directory: DASCTL_CONFIG_DIR, else the platform's (platformdirs)."""
    override = effective_env(env).get(ENV_CONFIG_DIR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("dasctl"))


def config_file(env: Mapping[str, str] | None = None) -> Path:
    """The profiles file (TOML)."""
    return config_dir(env) / CONFIG_FILE_NAME


def secrets_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where client secrets go when no OS keyring answers (0700 directory, 0600 files)."""
    return config_dir(env) / "secrets"


def token_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Token cache: the platform's cache dir, or inside DASCTL_CONFIG_DIR when that is set (tests)."""
    environ = effective_env(env)
    if environ.get(ENV_CONFIG_DIR):
        return config_dir(environ) / "tokens"
    import platformdirs

    return Path(platformdirs.user_cache_dir("dasctl")) / "tokens"


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """dasctl's data (the credential store): the platform's data dir, or DASCTL_CONFIG_DIR when set."""
    environ = effective_env(env)
    if environ.get(ENV_CONFIG_DIR):
        return config_dir(environ)
    import platformdirs

    return Path(platformdirs.user_data_dir("dasctl"))


def store_path(env: Mapping[str, str] | None = None) -> Path:
    """The default credential store: a SQLite file in the data directory."""
    return data_dir(env) / STORE_FILE_NAME


def locks_dir(env: Mapping[str, str] | None = None) -> Path:
    """Lock files dasctl holds while it runs (never inside a user's folder, nor the config dir)."""
    return state_dir(env) / "locks"


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Lock files and logs: the platform's state dir, or DASCTL_CONFIG_DIR's sibling `NAME-state` (never
    inside the config dir, which holds only what the user configured)."""
    environ = effective_env(env)
    if environ.get(ENV_CONFIG_DIR):
        directory = config_dir(environ)
        return directory.parent / f"{directory.name}-state"
    import platformdirs

    return Path(platformdirs.user_state_dir("dasctl"))


def lock_file(name: str, env: Mapping[str, str] | None = None) -> Path:
    """Where the lock guarding `name` (a file of dasctl's) lives: under state_dir()/locks, 0700."""
    return private_dir(state_dir(env) / "locks") / f"{name}.lock"


def private_dir(path: Path) -> Path:
    """Create the directory (and parents) and make it 0700: only the owner may list or enter it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private_file(path: Path, data: bytes) -> None:
    """Write one of dasctl's own files: its directory 0700, the file atomic and 0600."""
    private_dir(path.parent)
    write_atomically(path, data)

"""Profiles, precedence (flag > environment > profile file > default) and paths.

The constants below are the one place that knows URLs, paths and defaults; the emulator imports
them too. Keep this module's import light: `dasctl --help` loads it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dasctl.atomic_file import write_atomically  # re-exported: callers wrote config.write_atomically
from dasctl.errors import UsageError

# --- the local emulator (`dasctl serve`) and its documented demo client ----------------------
DEFAULT_EMULATOR_HOST = "127.0.0.1"
DEFAULT_EMULATOR_PORT = 7272
DEMO_CLIENT_ID = "dasctl-demo"
#: Public on purpose: it only opens the local emulator, and the built-in `local` profile uses it.
DEMO_CLIENT_SECRET = "dasctl-demo-secret"
DEMO_AUDIOHOOK_API_KEY = "dasctl-demo-audiohook-key"
DEMO_MODEL_HASH = "dasctl-emulator-model-v1"

# --- paths shared by the service and the emulator ---------------------------------------------
AUTH_PATH = "/socket.io/oauth2/token"
SOCKETIO_PATH = "socket.io"  # the Engine.IO path (python-engineio ignores a path in the URL)
TWILIO_AUDIO_PATH = "/audio/twilio"
AUDIOHOOK_AUDIO_PATH = "/audio/audiohook"
DEFAULT_NAMESPACE_PREFIX = "/socket.io"

# --- the cloud service (docs/protocol.md §1) --------------------------------------------------------
CLOUD_EU_URL = "https://api.eu.veri-das.com"
CLOUD_EU_AUTH_URL = CLOUD_EU_URL + AUTH_PATH

# --- request defaults ----------------------------------------------------------------------------
DEFAULT_AUTHENTICITY_THRESHOLD = 0.8
DEFAULT_AUDIO_TOTAL_DURATION = 5.0
DEFAULT_AUDIO_PROTOCOL = "twilio"
#: verify: the lowest score that verifies, and the seconds of voice it collects (docs/protocol.md §5: 3 s)
DEFAULT_SCORE_THRESHOLD = 0.6
DEFAULT_VERIFY_DURATION = 3.0

# --- profiles ------------------------------------------------------------------------------------
LOCAL_PROFILE = "local"
LOCAL_URL = f"http://{DEFAULT_EMULATOR_HOST}:{DEFAULT_EMULATOR_PORT}"
AUDIO_PATHS = {"twilio": TWILIO_AUDIO_PATH, "audiohook": AUDIOHOOK_AUDIO_PATH}
AUDIO_PROTOCOLS = tuple(AUDIO_PATHS)

# --- environment variables (docs/architecture.md §2: everything a flag sets can come from DASCTL_*) ---
ENV_CONFIG_DIR = "DASCTL_CONFIG_DIR"
ENV_PROFILE = "DASCTL_PROFILE"
ENV_CLIENT_ID = "DASCTL_CLIENT_ID"
ENV_CLIENT_SECRET = "DASCTL_CLIENT_SECRET"
ENV_TOKEN = "DASCTL_TOKEN"
ENV_AUDIOHOOK_SECRET = "DASCTL_AUDIOHOOK_SECRET"
ENV_STORE = "DASCTL_STORE"

# --- the credential store (dasctl/store) ------------------------------------------------------------
STORE_FILE_NAME = "store.db"
#: URL schemes that select the PostgreSQL backend; anything else is a SQLite file path
POSTGRES_SCHEMES = ("postgresql", "postgres")

SOURCE_FLAG = "flag"
SOURCE_ENV = "environment"
SOURCE_FILE = "profile file"
SOURCE_DEFAULT = "default"

CONFIG_FILE_NAME = "config.toml"
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ConfigKey:
    """One settable profile value: its name in the file, its flag, its variable, how to parse it."""

    name: str
    flag: str
    env: str
    kind: str  # "http-url" | "ws-url" | "text" | "fraction" | "seconds" | "path" | "prefix" | "store"
    help: str
    secret: bool = False


def _audio_key(protocol: str) -> ConfigKey:
    return ConfigKey(
        f"audio_url.{protocol}",
        f"--audio-url {protocol}=URL",
        f"DASCTL_AUDIO_URL_{protocol.upper()}",
        "ws-url",
        f"WebSocket URL of the {protocol} audio consumer",
    )


#: Every key of a profile, in display order (`dasctl config show`).
CONFIG_KEYS: dict[str, ConfigKey] = {
    key.name: key
    for key in (
        ConfigKey("url", "--url", "DASCTL_URL", "http-url", "signalling base URL (Socket.IO)"),
        ConfigKey("auth_url", "--auth-url", "DASCTL_AUTH_URL", "http-url", "OAuth 2.0 token endpoint"),
        ConfigKey("namespace_prefix", "--namespace-prefix", "DASCTL_NAMESPACE_PREFIX", "prefix",
                  "Socket.IO namespace prefix"),
        *(_audio_key(protocol) for protocol in AUDIO_PROTOCOLS),
        ConfigKey("client_id", "--client-id", ENV_CLIENT_ID, "text", "OAuth client id"),
        ConfigKey("model_hash", "--model-hash", "DASCTL_MODEL_HASH", "text", "model to enroll with"),
        ConfigKey("authenticity_threshold", "--authenticity-threshold", "DASCTL_AUTHENTICITY_THRESHOLD",
                  "fraction", "anti-spoofing threshold, 0..1"),
        ConfigKey("audio_total_duration", "--audio-total-duration", "DASCTL_AUDIO_TOTAL_DURATION", "seconds",
                  "seconds of voice to collect"),
        ConfigKey("ca_bundle", "--ca-bundle", "DASCTL_CA_BUNDLE", "path", "CA bundle for HTTPS and WSS"),
        ConfigKey("audiohook_api_key", "--audiohook-api-key", "DASCTL_AUDIOHOOK_API_KEY", "text",
                  "AudioHook X-API-KEY", secret=True),
        # not `secret`: only the password inside a postgresql:// URL is (see masked_store_url)
        ConfigKey("store", "--store", ENV_STORE, "store",
                  "credential store: a SQLite file, or postgresql://USER@HOST/DB"),
        # the path is not secret; the file it names is (dasctl/store/vault.py)
        ConfigKey("store_key_file", "--store-key-file", "DASCTL_STORE_KEY_FILE", "text",
                  "the credential store's key file (dasctl credentials key new > FILE)"),
        ConfigKey("retention", "--retention", "DASCTL_RETENTION", "text",
                  "retention policy watch applies, e.g. audio-older-than=90d,inactive-for=3y"),
        # which channel register and watch send (docs/audio.md); unset: the mix, with a warning on stereo.
        # Kinds "channel" and "side" are checked by dasctl.audio.channels.
        ConfigKey("channel", "--channel", "DASCTL_CHANNEL", "channel",
                  "channel to send: mix, left, right, N, customer or agent"),
        ConfigKey("customer_channel", "(no flag)", "DASCTL_CUSTOMER_CHANNEL", "side",
                  "the customer's side of a call recording: left, right or N"),
    )
}
#: Keys of the file's top level (not of a profile).
TOP_LEVEL_KEYS = ("default_profile",)


# --- paths ----------------------------------------------------------------------------------------
def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The configuration directory: DASCTL_CONFIG_DIR, else the platform's (platformdirs)."""
    override = _environ(env).get(ENV_CONFIG_DIR)
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
    environ = _environ(env)
    if environ.get(ENV_CONFIG_DIR):
        return config_dir(environ) / "tokens"
    import platformdirs

    return Path(platformdirs.user_cache_dir("dasctl")) / "tokens"


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """dasctl's data (the credential store): the platform's data dir, or DASCTL_CONFIG_DIR when set."""
    environ = _environ(env)
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
    environ = _environ(env)
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


# --- the profiles file ------------------------------------------------------------------------------
def validate_profile_name(name: str) -> str:
    """Return the name, or raise UsageError when it cannot be a profile name."""
    if not _PROFILE_NAME.match(name):
        raise UsageError(
            f"invalid profile name {name!r}",
            "Use letters, digits, '.', '_' or '-' (at most 64 characters), e.g. --profile prod.",
        )
    return name


def read_config_file(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The parsed profiles file; {} when it does not exist; UsageError when it is not valid TOML."""
    path = config_file(env)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise UsageError(f"cannot read the config file {path}: {error.strerror}") from None
    try:
        data = _toml_loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise UsageError(
            f"the config file {path} is not valid TOML: {error}",
            "Fix it, or move it away and run `dasctl login` again.",
        ) from None
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise UsageError(f"the config file {path} has a malformed [profiles] table",
                         "Each profile is a table: [profiles.NAME].")
    return data


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def update_config_file(change: Any, env: Mapping[str, str] | None = None) -> None:
    """Read, change (a function mutating the parsed dict) and rewrite the profiles file, under a lock."""
    import filelock
    import tomli_w

    path = config_file(env)
    private_dir(path.parent)
    with filelock.FileLock(str(lock_file(path.name, env)), timeout=30, mode=0o600):
        data = read_config_file(env)
        change(data)
        write_private_file(path, tomli_w.dumps(data).encode("utf-8"))


def profile_names(env: Mapping[str, str] | None = None) -> list[str]:
    """Profiles the file knows, plus the built-in `local`."""
    names = set(read_config_file(env).get("profiles", {})) | {LOCAL_PROFILE}
    return sorted(names)


def resolve_profile_name(name: str | None = None, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(profile name, its source): flag > DASCTL_PROFILE > the file's default_profile > `local`."""
    environ = _environ(env)
    if name:
        return validate_profile_name(name), SOURCE_FLAG
    if environ.get(ENV_PROFILE):
        return validate_profile_name(environ[ENV_PROFILE]), SOURCE_ENV
    default = read_config_file(environ).get("default_profile")
    if isinstance(default, str) and default:
        return validate_profile_name(default), SOURCE_FILE
    return LOCAL_PROFILE, SOURCE_DEFAULT


# --- one profile, every value with its source -------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """Everything dasctl needs to talk to one service, each value resolved by precedence."""

    name: str
    url: str
    auth_url: str
    namespace_prefix: str
    audio_urls: Mapping[str, str]
    client_id: str | None
    model_hash: str | None
    authenticity_threshold: float
    audio_total_duration: float
    ca_bundle: str | None
    audiohook_api_key: str | None
    sources: Mapping[str, str] = field(default_factory=dict)
    #: whether the profiles file has a [profiles.NAME] table for this profile
    stored: bool = False
    #: the credential store (None: the default SQLite file in the data directory)
    store: str | None = None
    #: the credential store's key file (None: DASCTL_STORE_KEY, else the implicit local key)
    store_key_file: str | None = None
    #: the retention policy `watch` applies (dasctl/store/retention.py), e.g. "audio-older-than=90d"
    retention: str | None = None
    #: the channel register and watch send (None: not chosen, the mix); the customer's side for named picks
    channel: str | None = None
    customer_channel: str | None = None

    @property
    def is_local(self) -> bool:
        return self.name == LOCAL_PROFILE

    def namespace(self, kind: str = "register") -> str:
        """The Socket.IO namespace for a session kind, e.g. "/socket.io/register"."""
        prefix = self.namespace_prefix.rstrip("/")
        return f"{prefix}/{kind}" if kind else (prefix or "/")

    def audio_url(self, protocol: str) -> str:
        """The audio consumer URL for a protocol; UsageError naming how to set it when there is none."""
        url = self.audio_urls.get(protocol)
        if url:
            return url
        key = _audio_key(protocol)
        raise UsageError(
            f"profile '{self.name}' has no audio URL for protocol '{protocol}'",
            f"Run `dasctl config set {key.name} wss://HOST/PATH --profile {self.name}`, or set {key.env}.",
        )

    def get(self, key: str) -> object:
        """A value by its config key name (`audio_url.twilio` included); KeyError when unknown."""
        if key.startswith("audio_url."):
            return self.audio_urls.get(key.split(".", 1)[1])
        if key in CONFIG_KEYS:
            return getattr(self, key)
        raise KeyError(key)


def _derived_audio_url(url: str, protocol: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{AUDIO_PATHS[protocol]}"


def parse_value(key: ConfigKey, raw: object, where: str) -> object:
    """Check and convert one value; `where` names its origin for the error ("DASCTL_URL", "--url", ...)."""
    if key.kind in ("fraction", "seconds"):
        try:
            number = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = float("nan")
        if key.kind == "fraction" and not 0.0 <= number <= 1.0:
            raise UsageError(f"{where}: {raw!r} is not a number between 0 and 1")
        if key.kind == "seconds" and not 0.0 < number <= 3600.0:
            raise UsageError(f"{where}: {raw!r} is not a number of seconds (more than 0, at most 3600)")
        return number
    if not isinstance(raw, str) or not raw.strip():
        raise UsageError(f"{where}: expected a non-empty text value, got {raw!r}")
    text = raw.strip()
    if key.kind in ("http-url", "ws-url"):
        from urllib.parse import urlsplit

        schemes = ("http", "https") if key.kind == "http-url" else ("ws", "wss")
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.netloc:
            raise UsageError(
                f"{where}: {text!r} is not a {' or '.join(s + '://' for s in schemes)} URL",
                f"For example {schemes[1]}://api.eu.veri-das.com{AUTH_PATH if key.name == 'auth_url' else ''}"
                if key.kind == "http-url" else "For example wss://audio.example.com/twilio",
            )
        return text.rstrip("/") if key.name == "url" else text
    if key.kind == "prefix":
        return "/" + text.strip("/") if text.strip("/") else "/"
    if key.kind == "store":
        return parse_store_url(text, where)
    if key.kind in ("channel", "side"):
        from dasctl.audio.channels import parse_channel, parse_customer_channel

        if key.kind == "side":
            parse_customer_channel(text, where)
        else:
            try:
                parse_channel(text)
            except UsageError:
                raise UsageError(f"{where}: {text!r} is not a channel: use mix, left, right, N (from 0), "
                                 "customer or agent") from None
        return text.lower()
    if key.kind == "path":
        path = Path(text).expanduser()
        if not path.is_file():
            raise UsageError(f"{where}: CA bundle {text!r} is not a readable file")
        return str(path.resolve())
    return text


def parse_store_url(text: str, where: str) -> str:
    """A store: a postgresql:// URL as given, or a SQLite file path (~ expanded)."""
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in POSTGRES_SCHEMES:
            raise UsageError(f"{where}: {masked_store_url(text)!r} is not a store",
                             "Give a file path (SQLite) or postgresql://USER@HOST/DB.")
        from dasctl.logs import register_secret

        register_secret(store_url_password(text))
        return text
    return str(Path(text).expanduser())


def store_url_password(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def masked_store_url(url: str) -> str:
    """A store URL fit to show: the password (in the URL or a password= parameter) masked."""
    from urllib.parse import urlsplit, urlunsplit

    from dasctl.logs import MASK

    if "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        netloc = f"{userinfo}@{host}"
    query = "&".join(
        f"{item.split('=', 1)[0]}={MASK}" if item.split("=", 1)[0].lower() == "password" else item
        for item in parts.query.split("&")
    ) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _file_where(name: str, key: str, env: Mapping[str, str]) -> str:
    return f"{key} of profile '{name}' in {config_file(env)}"


def load_profile(
    name: str | None = None,
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    allow_missing: bool = False,
    flag_names: Mapping[str, str] | None = None,
) -> Profile:
    """Resolve a profile, every value by flag > environment > profile file > default.

    `flags` uses the field names (url, auth_url, ...; audio_urls as a dict protocol -> url), None = not
    given; `flag_names` spells a key's flag where a command names it differently (errors quote what the
    user typed). An unknown profile is a UsageError unless it is `local` or `allow_missing` (login
    creates it), whatever the flags and the environment say.
    """
    environ = _environ(env)
    flags = dict(flags or {})
    profile_name, profile_source = resolve_profile_name(name, environ)
    data = read_config_file(environ)
    stored_table = data.get("profiles", {}).get(profile_name)
    stored: dict[str, Any] = dict(stored_table or {})
    stored_audio = stored.pop("audio_urls", {}) or {}
    if not isinstance(stored_audio, dict):
        raise UsageError(f"{_file_where(profile_name, 'audio_urls', environ)} must be a table")
    flag_audio: dict[str, object] = dict(flags.pop("audio_urls", None) or {})  # type: ignore[call-overload]

    def flag_value(key: ConfigKey) -> object:
        if key.name.startswith("audio_url."):
            return flag_audio.get(key.name.split(".", 1)[1])
        return flags.get(key.name)

    def stored_value(key: ConfigKey) -> object:
        if key.name.startswith("audio_url."):
            return stored_audio.get(key.name.split(".", 1)[1])
        return stored.get(key.name)

    values: dict[str, object] = {}
    sources: dict[str, str] = {"profile": profile_source}
    for key in CONFIG_KEYS.values():
        candidates = (
            (flag_value(key), SOURCE_FLAG, (flag_names or {}).get(key.name, key.flag)),
            (environ.get(key.env) or None, SOURCE_ENV, key.env),
            (stored_value(key), SOURCE_FILE, _file_where(profile_name, key.name, environ)),
        )
        for raw, source, where in candidates:
            if raw is not None:
                values[key.name] = parse_value(key, raw, where)
                sources[key.name] = source
                break

    local = profile_name == LOCAL_PROFILE
    # the environment fills a profile's values; it never invents a profile (`-p tema` with DASCTL_URL set
    # would otherwise enroll against the URL with the default store, silently)
    if stored_table is None and not local and not allow_missing:
        known = ", ".join(sorted(set(data.get("profiles", {})) | {LOCAL_PROFILE}))
        named = f"from {ENV_PROFILE}; " if profile_source == SOURCE_ENV else ""
        raise UsageError(
            f"no profile named '{profile_name}' ({named}known: {known})",
            f"Create it with `dasctl login --profile {profile_name} --url URL`, or choose another --profile.",
        )

    def default(key: str, value: object) -> None:
        if key not in values:
            values[key] = value
            sources[key] = SOURCE_DEFAULT

    default("url", LOCAL_URL if local else CLOUD_EU_URL)
    url = str(values["url"])
    default("auth_url", url + AUTH_PATH)
    default("namespace_prefix", DEFAULT_NAMESPACE_PREFIX)
    default("authenticity_threshold", DEFAULT_AUTHENTICITY_THRESHOLD)
    default("audio_total_duration", DEFAULT_AUDIO_TOTAL_DURATION)
    if local:
        # the emulator serves everything on one port, so its URLs follow `url`
        for protocol in AUDIO_PROTOCOLS:
            default(f"audio_url.{protocol}", _derived_audio_url(url, protocol))
        default("client_id", DEMO_CLIENT_ID)
        default("model_hash", DEMO_MODEL_HASH)
        default("audiohook_api_key", DEMO_AUDIOHOOK_API_KEY)
    # the real service's audio consumer URLs are not documented: never guess them (docs/protocol.md §1)
    for key_name in CONFIG_KEYS:
        sources.setdefault(key_name, SOURCE_DEFAULT)

    audio_urls = {k.split(".", 1)[1]: str(v) for k, v in values.items() if k.startswith("audio_url.") and v}
    # protocols beyond the known two may come from flags or the file
    for protocol, raw in {**stored_audio, **flag_audio}.items():
        if protocol not in AUDIO_PATHS and raw:
            source = SOURCE_FLAG if protocol in flag_audio else SOURCE_FILE
            audio_urls[protocol] = str(parse_value(_audio_key(protocol), raw, f"audio_url.{protocol}"))
            sources[f"audio_url.{protocol}"] = source

    def optional_text(key: str) -> str | None:
        value = values.get(key)
        return None if value is None else str(value)

    if values.get("audiohook_api_key"):
        from dasctl.logs import register_secret

        register_secret(str(values["audiohook_api_key"]))

    return Profile(
        name=profile_name,
        url=url,
        auth_url=str(values["auth_url"]),
        namespace_prefix=str(values["namespace_prefix"]),
        audio_urls=audio_urls,
        client_id=optional_text("client_id"),
        model_hash=optional_text("model_hash"),
        authenticity_threshold=float(values["authenticity_threshold"]),  # type: ignore[arg-type]
        audio_total_duration=float(values["audio_total_duration"]),  # type: ignore[arg-type]
        ca_bundle=optional_text("ca_bundle"),
        audiohook_api_key=optional_text("audiohook_api_key"),
        sources=sources,
        stored=stored_table is not None,
        store=optional_text("store"),
        store_key_file=optional_text("store_key_file"),
        retention=optional_text("retention"),
        channel=optional_text("channel"),
        customer_channel=optional_text("customer_channel"),
    )


def store_profile_values(
    name: str, values: Mapping[str, object], env: Mapping[str, str] | None = None, *,
    make_default_if_unset: bool = False,
) -> bool:
    """Write values (config key names; None removes the key) into [profiles.NAME]; True when made default."""
    validate_profile_name(name)
    made_default = []

    def change(data: dict[str, Any]) -> None:
        profiles = data.setdefault("profiles", {})
        table = profiles.setdefault(name, {})
        for key, value in values.items():
            if key.startswith("audio_url."):
                audio = table.setdefault("audio_urls", {})
                protocol = key.split(".", 1)[1]
                if value is None:
                    audio.pop(protocol, None)
                else:
                    audio[protocol] = value
                if not audio:
                    table.pop("audio_urls")
            elif value is None:
                table.pop(key, None)
            else:
                table[key] = value
        if make_default_if_unset and not data.get("default_profile"):
            data["default_profile"] = name
            made_default.append(True)

    update_config_file(change, env)
    return bool(made_default)


def set_default_profile(name: str | None, env: Mapping[str, str] | None = None) -> None:
    """Make a profile the default (None: back to the built-in `local`)."""

    def change(data: dict[str, Any]) -> None:
        if name is None:
            data.pop("default_profile", None)
        else:
            data["default_profile"] = validate_profile_name(name)

    update_config_file(change, env)


def config_key(name: str) -> ConfigKey:
    """The key by its name (also `audio_url.<protocol>`); UsageError listing the keys when unknown."""
    if name in CONFIG_KEYS:
        return CONFIG_KEYS[name]
    if name.startswith("audio_url.") and re.match(r"^[a-z][a-z0-9_-]*$", name.split(".", 1)[1]):
        return _audio_key(name.split(".", 1)[1])
    known = ", ".join([*CONFIG_KEYS, *TOP_LEVEL_KEYS])
    raise UsageError(f"unknown config key {name!r}", f"Known keys: {known}.")

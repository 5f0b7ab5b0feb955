"""One profile, every value resolved by precedence: flag > environment > profile file > default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dasctl.config.constants import (
    AUDIO_PATHS,
    AUDIO_PROTOCOLS,
    AUTH_PATH,
    CLOUD_EU_URL,
    DEFAULT_AUDIO_TOTAL_DURATION,
    DEFAULT_AUTHENTICITY_THRESHOLD,
    DEFAULT_NAMESPACE_PREFIX,
    DEMO_AUDIOHOOK_API_KEY,
    DEMO_CLIENT_ID,
    DEMO_MODEL_HASH,
    ENV_PROFILE,
    LOCAL_PROFILE,
    LOCAL_URL,
    SOURCE_DEFAULT,
    SOURCE_ENV,
    SOURCE_FILE,
    SOURCE_FLAG,
)
from dasctl.config.keys import CONFIG_KEYS, ConfigKey, audio_key, parse_value
from dasctl.config.paths import config_file, effective_env
from dasctl.config.profiles_file import read_config_file, resolve_profile_name
from dasctl.errors import UsageError


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
        key = audio_key(protocol)
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
    environ = effective_env(env)
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
            audio_urls[protocol] = str(parse_value(audio_key(protocol), raw, f"audio_url.{protocol}"))
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

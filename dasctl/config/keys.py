"""The settings table: every key a profile can hold (flag, variable, kind), and parsing one value."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dasctl.config.constants import AUDIO_PROTOCOLS, AUTH_PATH, ENV_CLIENT_ID, ENV_STORE
from dasctl.config.store_url import parse_store_url, split_url
from dasctl.errors import UsageError


@dataclass(frozen=True)
class ConfigKey:
    """One settable profile value: its name in the file, its flag, its variable, how to parse it."""

    name: str
    flag: str
    env: str
    kind: str  # "http-url" | "ws-url" | "text" | "fraction" | "seconds" | "path" | "prefix" | "store" |
    #          "retention" | "channel" | "side"
    help: str
    secret: bool = False


def audio_key(protocol: str) -> ConfigKey:
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
        *(audio_key(protocol) for protocol in AUDIO_PROTOCOLS),
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
        ConfigKey("retention", "--retention", "DASCTL_RETENTION", "retention",
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
        schemes = ("http", "https") if key.kind == "http-url" else ("ws", "wss")
        suffix = AUTH_PATH if key.name == "auth_url" else ""
        example = (f"For example {schemes[1]}://api.eu.veri-das.com{suffix}" if key.kind == "http-url"
                   else "For example wss://audio.example.com/twilio")
        parts = split_url(text, where, example)
        if parts.scheme not in schemes or not parts.netloc:
            raise UsageError(f"{where}: {text!r} is not a {' or '.join(s + '://' for s in schemes)} URL",
                             example)
        return text.rstrip("/") if key.name == "url" else text
    if key.kind == "prefix":
        if any(c.isspace() or not c.isprintable() or c in "?#" for c in text):  # a URL path
            raise UsageError(f"{where}: {text!r} is not a namespace path", "For example /socket.io")
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
    if key.kind == "retention":  # checked when set, not first when a watch service starts
        from dasctl.store.retention import RetentionPolicy

        RetentionPolicy.parse(text, where)
        return text
    if key.kind == "path":
        path = Path(text).expanduser()
        if not path.is_file():
            raise UsageError(f"{where}: CA bundle {text!r} is not a readable file")
        return str(path.resolve())
    return text



def config_key(name: str) -> ConfigKey:
    """The key by its name (also `audio_url.<protocol>`); UsageError listing the keys when unknown."""
    if name in CONFIG_KEYS:
        return CONFIG_KEYS[name]
    if name.startswith("audio_url.") and re.match(r"^[a-z][a-z0-9_-]*$", name.split(".", 1)[1]):
        return audio_key(name.split(".", 1)[1])
    known = ", ".join([*CONFIG_KEYS, *TOP_LEVEL_KEYS])
    raise UsageError(f"unknown config key {name!r}", f"Known keys: {known}.")

"""OAuth 2.0 client-credentials tokens (docs/protocol.md §2): the token endpoint, a shared cache, the secrets.

The cache is one 0600 JSON file per (profile, auth_url, client_id), replaced atomically and refreshed
under a file lock, so that many dasctl processes share one token instead of stampeding the endpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl.auth.secrets import AUDIOHOOK_SECRET, CLIENT_SECRET, SecretStore
from dasctl.config import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    ENV_AUDIOHOOK_SECRET,
    ENV_CLIENT_SECRET,
    ENV_TOKEN,
    Profile,
    lock_file,
    private_dir,
    token_cache_dir,
    write_private_file,
)
from dasctl.errors import AuthError, ServiceUnavailable
from dasctl.logs import register_secret

if TYPE_CHECKING:
    from dasctl.net import NetworkSettings

log = logging.getLogger(__name__)

#: lifetime assumed when the token endpoint sends no expires_in (the vendor does not document it)
ASSUMED_LIFETIME = 300.0
#: refresh this long before expiry (at most a quarter of the lifetime, for short-lived tokens)
REFRESH_MARGIN = 60.0
#: how long a process waits for another one that is refreshing the same token
LOCK_TIMEOUT = 60.0
CACHE_SCHEMA = "dasctl.token-cache/1"

SOURCE_CACHE = "cache"
SOURCE_ENDPOINT = "token endpoint"
SOURCE_ENV_TOKEN = ENV_TOKEN


@dataclass(frozen=True)
class Token:
    access_token: str
    token_type: str
    #: epoch seconds; math.inf when unknown (DASCTL_TOKEN)
    expires_at: float
    #: "cache" | "token endpoint" | "DASCTL_TOKEN"
    source: str
    #: epoch seconds when the endpoint issued it (0 when unknown)
    obtained_at: float = 0.0

    @property
    def authorization(self) -> str:
        """The Authorization header value (docs/protocol.md §2)."""
        return f"{self.token_type} {self.access_token}"

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.obtained_at if self.obtained_at else ASSUMED_LIFETIME

    def fresh(self, now: float | None = None) -> bool:
        """Still usable, with a margin before expiry so a session does not start on a dying token."""
        now = time.time() if now is None else now
        margin = min(REFRESH_MARGIN, max(self.lifetime, 0.0) / 4)
        return self.expires_at - margin > now


def mask(secret: str | None) -> str:
    """Show only enough of a secret to tell two apart: the first 4 characters."""
    if not secret:
        return ""
    return secret[:4] + "…" if len(secret) > 8 else "…"


@dataclass(frozen=True)
class ClientSecret:
    value: str
    #: "environment (DASCTL_CLIENT_SECRET)" | "keyring" | "file <path>" | "built-in demo secret"
    source: str


#: ClientSecret.source of the local profile's demo secret: part of dasctl, never stored or removed
BUILT_IN_SECRET = "built-in demo secret"


def client_secret(profile: Profile, env: Mapping[str, str] | None = None,
                  store: SecretStore | None = None) -> ClientSecret | None:
    """The profile's client secret: DASCTL_CLIENT_SECRET > keyring/file > the local demo secret."""
    environ = os.environ if env is None else env
    if environ.get(ENV_CLIENT_SECRET):
        register_secret(environ[ENV_CLIENT_SECRET])
        return ClientSecret(environ[ENV_CLIENT_SECRET], f"environment ({ENV_CLIENT_SECRET})")
    stored = (store or SecretStore(environ)).get(profile.name, CLIENT_SECRET)
    if stored is not None:
        return ClientSecret(stored.value, stored.location if stored.location == "keyring"
                            else f"file {stored.location}")
    if profile.is_local and profile.client_id == DEMO_CLIENT_ID:
        return ClientSecret(DEMO_CLIENT_SECRET, BUILT_IN_SECRET)
    return None


def audiohook_secret(profile: Profile, env: Mapping[str, str] | None = None) -> str | None:
    """AudioHook HMAC client secret: DASCTL_AUDIOHOOK_SECRET, else the stored one, else None."""
    environ = os.environ if env is None else env
    if environ.get(ENV_AUDIOHOOK_SECRET):
        register_secret(environ[ENV_AUDIOHOOK_SECRET])
        return environ[ENV_AUDIOHOOK_SECRET]
    stored = SecretStore(environ).get(profile.name, AUDIOHOOK_SECRET)
    return stored.value if stored else None


def not_logged_in(profile: Profile) -> AuthError:
    return AuthError(
        f"not logged in to profile '{profile.name}'",
        f"Run `dasctl login --profile {profile.name}`, or set DASCTL_TOKEN "
        "(or DASCTL_CLIENT_ID and DASCTL_CLIENT_SECRET).",
    )


def request_token(profile: Profile, client_id: str, secret: ClientSecret,
                  network: NetworkSettings) -> Token:
    """POST the client credentials to the profile's token endpoint; AuthError / ServiceUnavailable."""
    import requests

    url = profile.auth_url
    started = time.time()
    log.debug("requesting a token from %s for client %s", url, client_id)
    session = network.requests_session()
    try:
        response = session.post(
            url,
            data={"client_id": client_id, "client_secret": secret.value, "grant_type": "client_credentials"},
            headers={"Accept": "application/json"},
            allow_redirects=False,
        )
    except requests.exceptions.SSLError as error:
        problem = network.bundle_problem()
        if problem is not None:
            raise problem from None
        raise ServiceUnavailable(
            f"TLS verification failed for the token endpoint {url}: {_reason(error)}",
            "If the server uses a private CA, pass --ca-bundle or set DASCTL_CA_BUNDLE.",
        ) from None
    except requests.exceptions.Timeout:
        raise ServiceUnavailable(f"the token endpoint {url} did not answer in time",
                                 "Try again later; check the URL with `dasctl config show`.") from None
    except requests.exceptions.RequestException as error:
        from dasctl.net import unreachable_hint

        raise ServiceUnavailable(
            f"cannot reach the token endpoint {url}: {_reason(error)}",
            unreachable_hint(profile, "auth_url"),
        ) from None
    finally:
        session.close()

    body: Any
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 500 or response.status_code == 429:
        raise ServiceUnavailable(f"the token endpoint {url} failed: HTTP {response.status_code}",
                                 "The service has a problem; try again later.")
    if response.status_code != 200:
        error_code = body.get("error") if isinstance(body, dict) else None
        fix = (f"Check {secret.source.split('(')[-1].rstrip(')')} and DASCTL_CLIENT_ID."
               if secret.source.startswith("environment")
               else f"Check the client id and secret, and run `dasctl login --profile {profile.name}` again.")
        raise AuthError(
            f"the token endpoint refused client '{client_id}': "
            f"HTTP {response.status_code}{f' ({error_code})' if error_code else ''}",
            fix,
        )
    access_token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(access_token, str) or not access_token:
        raise ServiceUnavailable(f"the token endpoint {url} answered without an access_token",
                                 "Check that auth_url points at an OAuth 2.0 token endpoint.")
    register_secret(access_token)
    token_type = body.get("token_type") if isinstance(body.get("token_type"), str) else "Bearer"
    expires_in = body.get("expires_in")
    lifetime = ASSUMED_LIFETIME
    if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) \
            and math.isfinite(expires_in) and expires_in >= 0:
        lifetime = float(expires_in)  # 0: good for this command only, never taken from the cache
    return Token(access_token, token_type or "Bearer", started + lifetime, SOURCE_ENDPOINT, started)


def _reason(error: Exception) -> str:
    # requests nests urllib3's reason several levels deep; the innermost line is the useful one
    text = str(error)
    for marker in ("Caused by ", "] "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip("()'\" ")[:200] or type(error).__name__


class TokenCache:
    """The cached token of one (profile, auth_url, client_id): atomic 0600 writes, a lock for refreshes."""

    def __init__(self, profile: Profile, client_id: str, env: Mapping[str, str] | None = None) -> None:
        self.profile = profile
        self.client_id = client_id
        key = hashlib.sha256(f"{profile.name}\0{profile.auth_url}\0{client_id}".encode()).hexdigest()[:16]
        self.path: Path = token_cache_dir(env) / f"{profile.name}-{key}.json"
        self.lock_path = lock_file(f"tokens-{self.path.stem}", env)

    def read(self) -> Token | None:
        """The cached token, or None; a corrupt file is discarded with a warning, never a crash."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("cannot read the token cache %s (%s); fetching a new token",
                        self.path, error.strerror)
            return None
        try:
            data = json.loads(raw.decode("utf-8"))
            owner = (_text(data["auth_url"]), _text(data["client_id"]))
            token = Token(
                access_token=_text(data["access_token"]),
                token_type=_text(data["token_type"]),
                expires_at=float(data["expires_at"]),
                source=SOURCE_CACHE,
                obtained_at=float(data.get("obtained_at", 0.0)),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("discarded a corrupt token cache %s; fetching a new token", self.path)
            self.clear()
            return None
        if not math.isfinite(token.expires_at):
            log.warning("discarded a corrupt token cache %s; fetching a new token", self.path)
            self.clear()
            return None
        if owner != (self.profile.auth_url, self.client_id):
            return None  # another endpoint's or client's token: not ours to use
        register_secret(token.access_token)
        return token

    def write(self, token: Token) -> None:
        data = {
            "schema": CACHE_SCHEMA,
            "profile": self.profile.name,
            "auth_url": self.profile.auth_url,
            "client_id": self.client_id,
            "access_token": token.access_token,
            "token_type": token.token_type,
            "expires_at": token.expires_at,
            "obtained_at": token.obtained_at,
        }
        write_private_file(self.path, json.dumps(data, indent=2).encode("utf-8"))

    def clear(self) -> bool:
        """Delete the cached token; True when there was one."""
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False

    def locked(self, timeout: float = LOCK_TIMEOUT) -> Any:
        """A process-wide lock (filelock) held while refreshing."""
        import filelock

        private_dir(self.path.parent)
        return filelock.FileLock(str(self.lock_path), timeout=timeout, mode=0o600)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected text")
    return value


class TokenProvider:
    """Valid tokens for one profile: DASCTL_TOKEN, else the shared cache, else the token endpoint."""

    def __init__(self, profile: Profile, network: NetworkSettings | None = None,
                 env: Mapping[str, str] | None = None, store: SecretStore | None = None) -> None:
        self.profile = profile
        self.env = os.environ if env is None else env
        self._network = network
        self._store = store
        self._lock = threading.Lock()
        self._current: Token | None = None

    @property
    def network(self) -> NetworkSettings:
        if self._network is None:
            from dasctl.net import NetworkSettings

            self._network = NetworkSettings.from_profile(self.profile, self.env)
        return self._network

    @property
    def client_id(self) -> str | None:
        return self.profile.client_id

    def env_token(self) -> Token | None:
        """The token from DASCTL_TOKEN ("TYPE TOKEN" or just the token, taken as Bearer), or None."""
        raw = self.env.get(ENV_TOKEN, "").strip()
        if not raw:
            return None
        token_type, _, access_token = raw.partition(" ")
        if not access_token:
            token_type, access_token = "Bearer", raw
        register_secret(access_token)
        return Token(access_token.strip(), token_type, math.inf, SOURCE_ENV_TOKEN)

    def cache(self) -> TokenCache | None:
        return TokenCache(self.profile, self.client_id, self.env) if self.client_id else None

    def token(self, force_refresh: bool = False, refused: str | None = None) -> Token:
        """A valid token, refreshed ahead of expiry; force_refresh after the service refused the last one.

        Thread-safe, and process-safe through the cache's file lock: concurrent processes that all need
        a new token make one request between them. Pass `refused` (the access token the service refused)
        so that concurrent sessions refused together share one refresh; without it, the provider's
        current token is taken as the refused one.
        """
        from_env = self.env_token()
        if from_env is not None:
            if force_refresh:
                raise AuthError("the service refused the token in DASCTL_TOKEN",
                                "Set a fresh token in DASCTL_TOKEN, or unset it to use the profile's login.")
            return from_env
        cache = self.cache()
        if cache is None:
            raise not_logged_in(self.profile)
        with self._lock:
            current = self._current
            if not force_refresh and current is not None and current.fresh():
                return current
            if force_refresh and refused is not None and current is not None and current.fresh() \
                    and current.access_token != refused:
                return current  # another session of this process already replaced the refused token
            if force_refresh and refused is None:
                known = current or cache.read()
                refused = known.access_token if known else None
            elif not force_refresh:
                cached = cache.read()
                if cached is not None and cached.fresh():
                    self._current = cached
                    return cached
            try:
                lock = cache.locked()
                lock.acquire()
            except Exception as error:  # filelock.Timeout, or an unwritable cache directory
                raise ServiceUnavailable(
                    f"could not lock the token cache {cache.lock_path}: {type(error).__name__}",
                    "Another dasctl process may be stuck refreshing; try again.",
                ) from None
            try:
                # another process may have refreshed while we waited for the lock
                cached = cache.read()
                if cached is not None and cached.fresh() and cached.access_token != refused:
                    self._current = cached
                    return cached
                secret = client_secret(self.profile, self.env, self._store)
                if secret is None:
                    raise not_logged_in(self.profile)
                fetched = request_token(self.profile, self.client_id or "", secret, self.network)
                cache.write(fetched)
                self._current = fetched
                return fetched
            finally:
                lock.release()


def login(profile: Profile, client_id: str, secret: ClientSecret, network: NetworkSettings,
          env: Mapping[str, str] | None = None) -> Token:
    """Validate credentials by fetching a token, and cache it (storing the profile is the caller's job)."""
    token = request_token(profile, client_id, secret, network)
    cache = TokenCache(profile, client_id, env)
    with cache.locked():
        cache.write(token)
    return token


def forget_tokens(profile: Profile, env: Mapping[str, str] | None = None) -> int:
    """Delete every cached token of a profile (any auth_url or client id); returns how many."""
    directory = token_cache_dir(env)
    removed = 0
    for path in directory.glob(f"{profile.name}-*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("profile") not in (None, profile.name):
                continue
        except (OSError, ValueError):
            pass
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed

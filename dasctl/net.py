"""One place that decides TLS trust, proxies and timeouts for HTTP (requests) and the WebSockets (aiohttp)."""

from __future__ import annotations

import functools
import os
import ssl
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl import __version__
from dasctl.config import Profile
from dasctl.errors import UsageError

if TYPE_CHECKING:
    import aiohttp
    import requests

USER_AGENT = f"dasctl/{__version__}"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0


def unreachable_hint(profile: Profile, setting: str) -> str:
    """What to do when a URL of this profile cannot be reached (token endpoint and signalling alike)."""
    if profile.is_local:
        return "Is the service running? For the local emulator, start `dasctl serve`."
    return f"Check the network and the profile's {setting} (`dasctl config show --profile {profile.name}`)."


@dataclass(frozen=True)
class NetworkSettings:
    """TLS trust and timeouts shared by the token endpoint, the signalling and the audio WebSockets."""

    #: a CA bundle file, or None for the system trust store
    ca_bundle: str | None = None
    #: where ca_bundle came from ("profile file", "flag", "environment", "REQUESTS_CA_BUNDLE", ...)
    ca_bundle_source: str = "system"
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT

    @classmethod
    def from_profile(cls, profile: Profile, env: Mapping[str, str] | None = None) -> NetworkSettings:
        """CA bundle: the profile's (flag --ca-bundle / DASCTL_CA_BUNDLE / file), else REQUESTS_CA_BUNDLE or
        SSL_CERT_FILE, else the system store."""
        environ = os.environ if env is None else env
        if profile.ca_bundle:
            bundle, source = profile.ca_bundle, profile.sources.get("ca_bundle", "profile file")
        else:
            bundle, source = None, "system"
            for variable in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
                if environ.get(variable):
                    bundle, source = environ[variable], variable
                    break
        if bundle is not None and not Path(bundle).is_file():
            raise UsageError(
                f"the CA bundle {bundle!r} (from {source}) is not a readable file",
                "Point --ca-bundle / DASCTL_CA_BUNDLE at a PEM file, or unset it to use the system store.",
            )
        return cls(ca_bundle=bundle, ca_bundle_source=source)

    def bundle_problem(self) -> UsageError | None:
        """Why the CA bundle cannot be read as certificates (not PEM, damaged), or None: asked after a TLS
        failure, since the trust is read only at the first handshake (_TrustOnFirstHandshake)."""
        if not self.ca_bundle:
            return None
        try:
            ssl.create_default_context(cafile=self.ca_bundle)
        except (ssl.SSLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
            return UsageError(
                f"the CA bundle {self.ca_bundle!r} (from {self.ca_bundle_source}) holds no certificate that "
                f"can be read ({reason})",
                "Point --ca-bundle / DASCTL_CA_BUNDLE at a PEM file of certificates, or unset it to use the "
                "system store.",
            )
        return None

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying TLS context with the same trust as requests_session(), for the WebSockets.

        One context per trust, shared by every session of the process: building one parses the whole
        trust store (about 1 MB and 35 ms each), which `watch -j 256` paid 256 times. A CA bundle file
        that changes (rotated in place) gets a fresh context."""
        if self.ca_bundle:
            try:
                found = os.stat(self.ca_bundle)
                version = (found.st_mtime_ns, found.st_size)
            except OSError:
                version = None
            return _shared_ssl_context(self.ca_bundle, version)
        return _shared_ssl_context(None, None)

    def requests_session(self) -> requests.Session:
        """A requests.Session: verification on, proxies from the environment, default timeouts."""
        import requests

        verify: bool | str = self.ca_bundle or True
        timeout = (self.connect_timeout, self.read_timeout)

        class _Session(requests.Session):
            def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
                kwargs.setdefault("timeout", timeout)
                # per request, because requests lets REQUESTS_CA_BUNDLE override Session.verify
                kwargs.setdefault("verify", verify)
                return super().request(method, url, *args, **kwargs)

        session = _Session()
        session.verify = verify
        session.trust_env = True
        session.headers["User-Agent"] = USER_AGENT
        return session

    def aiohttp_session(self, **kwargs: Any) -> aiohttp.ClientSession:
        """An aiohttp.ClientSession with ssl_context(), proxies from the environment; the caller closes it."""
        import aiohttp

        kwargs.setdefault("timeout", aiohttp.ClientTimeout(
            total=None, connect=self.connect_timeout, sock_connect=self.connect_timeout))
        kwargs.setdefault("headers", {"User-Agent": USER_AGENT})
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl_context()), trust_env=True, **kwargs
        )


@functools.lru_cache(maxsize=8)
def _shared_ssl_context(ca_bundle: str | None, version: tuple[int, int] | None) -> ssl.SSLContext:
    """The context for this trust (version: the bundle file's mtime and size, so a new file is re-read)."""
    context = _TrustOnFirstHandshake(ssl.PROTOCOL_TLS_CLIENT)
    context.ca_bundle = ca_bundle
    # as create_default_context does: SSLKEYLOGFILE names where to log the session keys
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog and not sys.flags.ignore_environment:
        context.keylog_filename = keylog
    return context


class _TrustReadAtHandshake(ssl.SSLContext):
    """A TLS context that reads its trust store at its first handshake rather than when it is made
    (wrap_socket and wrap_bio, the two ways one starts; asyncio's, and so aiohttp's, is wrap_bio).
    Reading a trust store costs 20-37 ms of CPU, and most processes that make a context never shake hands
    (a session with the local emulator is http:// and ws://)."""

    _trust_lock = threading.Lock()
    _trust_loaded = False

    def load_trust(self) -> None:
        """Read the trust, once."""
        with self._trust_lock:
            if self._trust_loaded:
                return
            self._trust_loaded = True
            self._read_trust()

    def _read_trust(self) -> None:
        raise NotImplementedError

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        self.load_trust()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:  # type: ignore[override]
        self.load_trust()
        return super().wrap_bio(*args, **kwargs)


class _TrustOnFirstHandshake(_TrustReadAtHandshake):
    """ssl.create_default_context(cafile=ca_bundle), or without a bundle the system's trust plus certifi's,
    with the trust read at the first TLS handshake rather than when the context is made.

    Every session process made its context up front, while a session with the local emulator never shakes
    hands: 5-9 % of a `register --speed 0`'s CPU. PROTOCOL_TLS_CLIENT verifies already (CERT_REQUIRED,
    check_hostname); what create_default_context adds is the trust. A CA bundle that is not PEM fails that
    handshake (aiohttp: a TLS connection error) instead of the session's start."""

    ca_bundle: str | None = None

    def _read_trust(self) -> None:
        """The CA bundle, else the system's store and certifi's (requests trusts certifi by default: HTTP
        and WSS agree)."""
        if self.ca_bundle:
            self.load_verify_locations(cafile=self.ca_bundle)
            return
        self.load_default_certs(ssl.Purpose.SERVER_AUTH)
        try:
            import certifi

            self.load_verify_locations(cafile=certifi.where())
        except (ImportError, OSError):
            pass


class _DefaultPathsAtHandshake(_TrustReadAtHandshake):
    """A context whose set_default_verify_paths() (which load_default_certs() and so
    create_default_context() call) is carried out at its first handshake."""

    _default_paths_wanted = False

    def set_default_verify_paths(self) -> None:
        if self._trust_loaded:
            super().set_default_verify_paths()
        else:
            self._default_paths_wanted = True

    def _read_trust(self) -> None:
        if self._default_paths_wanted:
            super().set_default_verify_paths()


@contextmanager
def default_trust_read_at_first_handshake() -> Iterator[None]:
    """While it lasts, a context made with ssl.SSLContext() or ssl.create_default_context() reads the
    system's trust store at its first handshake, as any context of dasctl's does.

    For a library that makes default contexts as it is imported, whether they are used or not: aiohttp
    makes two (a verifying one and one that is not), 40 ms of CPU in every process that imports it, and
    dasctl hands aiohttp a context of its own for every connection. What the contexts trust, and when
    they verify, is unchanged; they are instances of ssl.SSLContext as before (ssl.SSLContext itself is
    left as it is: its properties name it)."""
    made = ssl.SSLContext.__dict__["__new__"]

    def new(cls: type[ssl.SSLContext], *args: Any, **kwargs: Any) -> ssl.SSLContext:
        return made.__func__(_DefaultPathsAtHandshake if cls is ssl.SSLContext else cls, *args, **kwargs)

    ssl.SSLContext.__new__ = new  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        ssl.SSLContext.__new__ = made  # type: ignore[method-assign]

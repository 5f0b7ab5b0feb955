"""Token cache, refresh and secret storage, against a small real token endpoint on 127.0.0.1.

The end-to-end proof against the emulator is in test_login.py; this server exists to count requests
exactly and to answer in ways the emulator does not (slowly, malformed, without a token).
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dasctl import auth, config, net
from dasctl.auth import secrets
from dasctl.errors import AuthError, ServiceUnavailable, UsageError
from tests.conftest import DATA


@dataclass
class TokenServer:
    """OAuth client-credentials endpoint with knobs; counts the requests it got."""

    url: str = ""
    requests: int = 0
    ttl: float | None = 3600
    status: int = 200
    delay: float = 0.0
    body: object = None
    secret: str = config.DEMO_CLIENT_SECRET
    issued: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    state = TokenServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", 0))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            with state.lock:
                state.requests += 1
                number = state.requests
            time.sleep(state.delay)
            if state.body is not None:
                payload, status = state.body, state.status
            elif form.get("client_secret") != [state.secret] or form.get("grant_type") != [
                    "client_credentials"]:
                payload, status = {"error": "invalid_client"}, 401
            elif state.status != 200:
                payload, status = {"error": "temporarily_unavailable"}, state.status
            else:
                token = f"token-{number}-{time.monotonic_ns()}"
                state.issued.append(token)
                payload, status = {"access_token": token, "token_type": "Bearer"}, 200
                if state.ttl is not None:
                    payload["expires_in"] = state.ttl
            data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def local_env(token_server: TokenServer, isolated_config: Path) -> dict[str, str]:
    """The built-in local profile pointed at the test token server."""
    return {"DASCTL_CONFIG_DIR": str(isolated_config), "DASCTL_URL": token_server.url}


def provider(env: dict[str, str]) -> auth.TokenProvider:
    profile = config.load_profile(None, None, env)
    return auth.TokenProvider(profile, net.NetworkSettings.from_profile(profile, env), env)


def test_token_is_cached_on_disk_and_shared_between_providers(token_server: TokenServer,
                                                              local_env: dict[str, str]) -> None:
    first = provider(local_env).token()
    assert (first.source, first.token_type) == ("token endpoint", "Bearer")
    assert first.authorization == f"Bearer {first.access_token}"
    second = provider(local_env).token()
    assert (second.access_token, second.source) == (first.access_token, "cache")
    assert token_server.requests == 1
    cache = auth.TokenCache(config.load_profile(None, None, local_env), config.DEMO_CLIENT_ID, local_env)
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path.parent.stat().st_mode) == 0o700


def test_short_lived_token_is_refreshed_ahead_of_expiry(token_server: TokenServer,
                                                        local_env: dict[str, str]) -> None:
    token_server.ttl = 2
    tokens = provider(local_env)
    first = tokens.token()
    assert tokens.token().access_token == first.access_token
    time.sleep(1.7)  # inside the refresh margin (a quarter of the lifetime), not yet expired
    second = tokens.token()
    assert second.access_token != first.access_token
    assert token_server.requests == 2


def test_missing_expires_in_assumes_a_conservative_lifetime(token_server: TokenServer,
                                                            local_env: dict[str, str]) -> None:
    token_server.ttl = None
    token = provider(local_env).token()
    assert token.expires_at - token.obtained_at == auth.ASSUMED_LIFETIME


def test_expires_in_zero_is_used_once_and_never_reused_from_the_cache(
    token_server: TokenServer, local_env: dict[str, str]
) -> None:
    token_server.ttl = 0
    first = provider(local_env).token()
    assert first.source == "token endpoint" and first.expires_at == first.obtained_at
    second = provider(local_env).token()
    assert second.source == "token endpoint" and second.access_token != first.access_token
    assert token_server.requests == 2


def test_force_refresh_replaces_a_refused_token_once(token_server: TokenServer,
                                                     local_env: dict[str, str]) -> None:
    tokens = provider(local_env)
    refused = tokens.token()
    renewed = tokens.token(force_refresh=True)
    assert renewed.access_token != refused.access_token
    # another process that already holds the refused token picks up the renewed one from the cache
    assert provider(local_env).token().access_token == renewed.access_token
    assert token_server.requests == 2


def test_sessions_refused_together_share_one_refresh(token_server: TokenServer,
                                                     local_env: dict[str, str]) -> None:
    tokens = provider(local_env)
    refused = tokens.token().access_token
    token_server.delay = 0.2
    renewed: list[str] = []
    workers = [threading.Thread(target=lambda: renewed.append(
        tokens.token(force_refresh=True, refused=refused).access_token)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    assert len(renewed) == 6 and len(set(renewed)) == 1 and refused not in renewed
    assert token_server.requests == 2


def test_threads_share_one_request(token_server: TokenServer, local_env: dict[str, str]) -> None:
    token_server.delay = 0.3
    tokens = provider(local_env)
    seen: list[str] = []
    workers = [threading.Thread(target=lambda: seen.append(tokens.token().access_token)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    assert len(seen) == 8 and len(set(seen)) == 1
    assert token_server.requests == 1


def test_eight_processes_refreshing_at_once_make_at_most_two_requests(
        token_server: TokenServer, local_env: dict[str, str], tmp_path: Path) -> None:
    token_server.delay = 0.5  # long enough that every process arrives while the first one is fetching
    env = {**_base_env(), **local_env}
    command = [sys.executable, "-m", "dasctl", "auth", "token"]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True) for _ in range(8)]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8, [err for _, err in outputs]
    printed = {out.strip() for out, _ in outputs}
    assert token_server.requests <= 2
    assert len(printed) <= 2 and printed <= set(token_server.issued)
    cache_files = list((Path(local_env["DASCTL_CONFIG_DIR"]) / "tokens").glob("*.json"))
    assert len(cache_files) == 1
    assert json.loads(cache_files[0].read_text())["access_token"] in printed


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.mark.parametrize(
    "garbage",
    [b"{not json", b"", b"[]", b'{"access_token": 5}', b"\xff\xfe", b'{"auth_url": null}'],
)
def test_corrupt_cache_is_discarded_with_a_warning(token_server: TokenServer, local_env: dict[str, str],
                                                   garbage: bytes, caplog: pytest.LogCaptureFixture) -> None:
    first = provider(local_env).token()
    cache = auth.TokenCache(config.load_profile(None, None, local_env), config.DEMO_CLIENT_ID, local_env)
    cache.path.write_bytes(garbage)
    token = provider(local_env).token()
    assert token.source == "token endpoint" and token.access_token != first.access_token
    assert "corrupt token cache" in caplog.text
    assert json.loads(cache.path.read_text())["access_token"] == token.access_token


def test_wrong_secret_is_an_auth_error_that_says_what_to_do(token_server: TokenServer,
                                                            local_env: dict[str, str]) -> None:
    with pytest.raises(AuthError) as caught:
        provider({**local_env, "DASCTL_CLIENT_SECRET": "wrong-secret"}).token()
    assert "refused client 'dasctl-demo'" in caught.value.message
    assert "invalid_client" in caught.value.message
    assert "DASCTL_CLIENT_SECRET" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (503, None, ServiceUnavailable, "HTTP 503"),
        (200, {"token_type": "Bearer"}, ServiceUnavailable, "without an access_token"),
        (200, b"<html>", ServiceUnavailable, "without an access_token"),
        (403, {"error": "unauthorized_client"}, AuthError, "HTTP 403 (unauthorized_client)"),
    ],
)
def test_endpoint_failures_map_to_exit_codes(token_server: TokenServer, local_env: dict[str, str],
                                             status: int, body: object, error: type[Exception],
                                             message: str) -> None:
    token_server.status, token_server.body = status, body
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        provider(local_env).token()


def test_unreachable_endpoint_is_service_unavailable(local_env: dict[str, str]) -> None:
    env = {**local_env, "DASCTL_URL": "http://127.0.0.1:9"}
    with pytest.raises(ServiceUnavailable, match="cannot reach the token endpoint"):
        provider(env).token()


def test_dasctl_token_overrides_everything(local_env: dict[str, str], token_server: TokenServer) -> None:
    token = provider({**local_env, "DASCTL_TOKEN": "abc.def.ghi"}).token()
    assert (token.authorization, token.source) == ("Bearer abc.def.ghi", "DASCTL_TOKEN")
    with pytest.raises(AuthError, match="refused the token in DASCTL_TOKEN"):
        provider({**local_env, "DASCTL_TOKEN": "abc.def.ghi"}).token(force_refresh=True)
    assert token_server.requests == 0


def test_not_logged_in_profile(isolated_config: Path) -> None:
    env = {"DASCTL_CONFIG_DIR": str(isolated_config)}
    config.store_profile_values("prod", {"url": "https://x.example", "client_id": "someone"}, env)
    with pytest.raises(AuthError, match="not logged in to profile 'prod'") as caught:
        provider({**env, "DASCTL_PROFILE": "prod"}).token()
    assert "dasctl login --profile prod" in (caught.value.hint or "")


# --- secrets -----------------------------------------------------------------------------------------
@pytest.fixture
def fresh_keyring_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_keyring_broken", None)


def test_without_keyring_secrets_go_to_a_0600_file(isolated_config: Path, fresh_keyring_state: None) -> None:
    store = secrets.SecretStore({"DASCTL_CONFIG_DIR": str(isolated_config)})
    result = store.put("prod", secrets.CLIENT_SECRET, "s3cret-value")
    path = isolated_config / "secrets" / "prod.json"
    assert result.location == str(path) and result.keyring_problem
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.get("prod") == secrets.StoredSecret("s3cret-value", str(path))
    assert store.delete("prod") == [str(path)]
    assert store.get("prod") is None and not path.exists()


def test_a_hanging_keyring_is_abandoned_after_the_timeout(isolated_config: Path, fresh_keyring_state: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyring.backend import KeyringBackend

    release = threading.Event()

    class HangingKeyring(KeyringBackend):
        priority = 1  # type: ignore[assignment]

        def get_password(self, service: str, username: str) -> str | None:
            release.wait(10)
            return None

        def set_password(self, service: str, username: str, password: str) -> None:
            release.wait(10)

        def delete_password(self, service: str, username: str) -> None:
            release.wait(10)

    previous = keyring.get_keyring()
    keyring.set_keyring(HangingKeyring())
    try:
        store = secrets.SecretStore({"DASCTL_CONFIG_DIR": str(isolated_config)}, keyring_timeout=0.3)
        result = store.put("prod", secrets.CLIENT_SECRET, "s3cret-value")
        assert result.keyring_problem and "did not answer within 0.3 s" in result.keyring_problem
        assert store.get("prod") is not None
        # the broken keyring is remembered: no second wait in this process
        assert secrets._keyring_broken is not None
    finally:
        release.set()
        keyring.set_keyring(previous)


def test_a_working_keyring_is_preferred_and_clears_the_file(isolated_config: Path,
                                                           fresh_keyring_state: None) -> None:
    import keyring
    from keyring.backend import KeyringBackend

    class MemoryKeyring(KeyringBackend):
        priority = 1  # type: ignore[assignment]
        items: dict[tuple[str, str], str] = {}

        def get_password(self, service: str, username: str) -> str | None:
            return self.items.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.items[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            del self.items[(service, username)]

    env = {"DASCTL_CONFIG_DIR": str(isolated_config)}
    secrets._keyring_broken = "pretend it failed before"
    secrets.SecretStore(env).put("prod", secrets.CLIENT_SECRET, "old-in-file")
    secrets._keyring_broken = None
    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    try:
        store = secrets.SecretStore(env)
        assert store.put("prod", secrets.CLIENT_SECRET, "new-in-keyring").location == "keyring"
        assert not (isolated_config / "secrets" / "prod.json").exists()
        assert store.get("prod") == secrets.StoredSecret("new-in-keyring", "keyring")
        assert store.delete("prod") == ["keyring"]
    finally:
        keyring.set_keyring(previous)


# --- network settings --------------------------------------------------------------------------------
def test_ca_bundle_precedence_and_errors(isolated_config: Path, tmp_path: Path) -> None:
    import certifi

    env = {"DASCTL_CONFIG_DIR": str(isolated_config)}
    profile = config.load_profile(None, None, env)
    assert net.NetworkSettings.from_profile(profile, env).ca_bundle is None
    system = net.NetworkSettings.from_profile(profile, {**env, "REQUESTS_CA_BUNDLE": certifi.where()})
    assert (system.ca_bundle, system.ca_bundle_source) == (certifi.where(), "REQUESTS_CA_BUNDLE")
    bundle = tmp_path / "ca.pem"
    bundle.write_text(Path(certifi.where()).read_text())
    flagged = config.load_profile(None, {"ca_bundle": str(bundle)}, env)
    chosen = net.NetworkSettings.from_profile(flagged, {**env, "REQUESTS_CA_BUNDLE": certifi.where()})
    assert (chosen.ca_bundle, chosen.ca_bundle_source) == (str(bundle.resolve()), "flag")
    # the profile's bundle wins over REQUESTS_CA_BUNDLE in requests too (requests itself would not)
    session = chosen.requests_session()
    assert session.verify == str(bundle.resolve())
    assert chosen.ssl_context().verify_mode.name == "CERT_REQUIRED"
    with pytest.raises(UsageError, match="REQUESTS_CA_BUNDLE"):
        net.NetworkSettings.from_profile(profile, {**env, "REQUESTS_CA_BUNDLE": "/no/such.pem"})


def test_aiohttp_session_uses_the_same_trust(isolated_config: Path) -> None:
    import asyncio

    env = {"DASCTL_CONFIG_DIR": str(isolated_config)}
    settings = net.NetworkSettings.from_profile(config.load_profile(None, None, env), env)

    async def build() -> tuple[bool, object]:
        session = settings.aiohttp_session()
        try:
            return session.trust_env, session.connector
        finally:
            await session.close()

    trust_env, connector = asyncio.run(build())
    assert trust_env is True and connector is not None


@pytest.fixture
def tls_token_server(token_server: TokenServer, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The test token server behind TLS with a self-signed certificate for 127.0.0.1: (url, cert.pem)."""
    import shutil
    import socket
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=30)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    plain_port = int(token_server.url.rsplit(":", 1)[1])
    stop = threading.Event()

    def received(tls: ssl.SSLSocket) -> bytes:
        # b"" is the client's end (a bare handshake sends nothing): looping on it spun this daemon thread at
        # full speed for the rest of the xdist worker's life, about 45 CPU-seconds of a whole run
        data = tls.recv(65536)
        if not data:
            raise ConnectionResetError("the client closed before its request was complete")
        return data

    def relay(client: socket.socket) -> None:
        # terminate TLS here and pass the bytes on to the plain test server
        try:
            with context.wrap_socket(client, server_side=True) as tls, \
                    socket.create_connection(("127.0.0.1", plain_port)) as upstream:
                tls.settimeout(5)
                upstream.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += received(tls)
                head, _, body = request.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                while len(body) < length:
                    body += received(tls)
                upstream.sendall(head.replace(b"keep-alive", b"close") + b"\r\n\r\n" + body)
                while chunk := upstream.recv(65536):
                    tls.sendall(chunk)
        except (OSError, ssl.SSLError):
            pass

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=relay, args=(client,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{port}", cert
    stop.set()
    thread.join(5)
    listener.close()


def test_tls_needs_the_ca_bundle_and_uses_it(tls_token_server: tuple[str, Path], isolated_config: Path,
                                             token_server: TokenServer) -> None:
    url, cert = tls_token_server
    env = {"DASCTL_CONFIG_DIR": str(isolated_config), "DASCTL_URL": url}
    with pytest.raises(ServiceUnavailable, match="TLS verification failed") as caught:
        provider(env).token()
    assert "--ca-bundle" in (caught.value.hint or "")
    token = provider({**env, "DASCTL_CA_BUNDLE": str(cert)}).token()
    assert token.source == "token endpoint" and token_server.requests == 1


def test_websocket_trust_follows_the_same_ca_bundle(tls_token_server: tuple[str, Path],
                                                    isolated_config: Path) -> None:
    import socket
    import ssl

    url, cert = tls_token_server
    port = int(url.rsplit(":", 1)[1])
    env = {"DASCTL_CONFIG_DIR": str(isolated_config), "DASCTL_URL": url}

    def handshake(settings: net.NetworkSettings) -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            try:
                with settings.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1"):
                    return True
            except ssl.SSLCertVerificationError:
                return False

    without = net.NetworkSettings.from_profile(config.load_profile(None, None, env), env)
    with_bundle = net.NetworkSettings.from_profile(
        config.load_profile(None, {"ca_bundle": str(cert)}, env), env)
    assert handshake(without) is False
    assert handshake(with_bundle) is True


def test_the_trust_is_read_at_the_first_handshake_and_is_the_same_trust(
        tls_token_server: tuple[str, Path], isolated_config: Path) -> None:
    """A session that never speaks TLS (the local emulator) does not pay for reading a trust store; one
    that does gets exactly create_default_context's trust (plus certifi's without a bundle), through
    aiohttp as the sessions connect."""
    import asyncio
    import ssl

    import aiohttp
    import certifi

    url, cert = tls_token_server
    env = {"DASCTL_CONFIG_DIR": str(isolated_config), "DASCTL_URL": url}
    with_bundle = net.NetworkSettings.from_profile(
        config.load_profile(None, {"ca_bundle": str(cert)}, env), env)
    without = net.NetworkSettings.from_profile(config.load_profile(None, None, env), env)
    assert without.ca_bundle is None

    async def get(settings: net.NetworkSettings) -> int | str:
        async with settings.aiohttp_session() as session:
            try:
                async with session.get(url + "/") as response:
                    return response.status
            except aiohttp.ClientConnectorCertificateError as error:
                return type(error.certificate_error).__name__

    assert with_bundle.ssl_context().cert_store_stats()["x509_ca"] == 0  # made, not read yet
    assert isinstance(asyncio.run(get(with_bundle)), int)  # the handshake trusted the bundle
    assert with_bundle.ssl_context().cert_store_stats()["x509_ca"] == 1
    assert asyncio.run(get(without)) == "SSLCertVerificationError"  # verifies, and no system CA signed it
    expected = ssl.create_default_context()
    expected.load_verify_locations(cafile=certifi.where())
    assert without.ssl_context().cert_store_stats() == expected.cert_store_stats()
    assert without.ssl_context().verify_mode == ssl.CERT_REQUIRED and without.ssl_context().check_hostname


def test_a_broken_ca_bundle_or_an_untrusted_certificate_is_said_as_such(
        tls_token_server: tuple[str, Path], dasctl: Callable[..., subprocess.CompletedProcess[str]],
        tmp_path: Path) -> None:
    """The trust is read at the first handshake, so a CA bundle that is not PEM shows only there: it is
    named as the problem (exit 2), not reported as an unreachable or untrusted server; a certificate the
    trust does not cover is a TLS failure with the --ca-bundle hint, not 'is the service running?'."""
    url, _ = tls_token_server
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    recording = str(DATA / "speech-a-8k-mono.wav")
    said = f"dasctl: error: the CA bundle '{broken}' (from environment) holds no certificate that can be read"
    login = dasctl("login", "--client-id", "c", env={"DASCTL_URL": url, "DASCTL_CLIENT_SECRET": "s",
                                                     "DASCTL_CA_BUNDLE": str(broken)})
    assert login.returncode == 2 and login.stderr.startswith(said), login.stderr
    session = {"DASCTL_URL": url, "DASCTL_TOKEN": "a-token"}
    register = dasctl("register", recording, "--speed", "0", "-q",
                      env={**session, "DASCTL_CA_BUNDLE": str(broken)})
    assert register.returncode == 2 and register.stderr.startswith(said), register.stderr
    untrusted = dasctl("register", recording, "--speed", "0", "-q", env=session)
    assert untrusted.returncode == 6
    assert untrusted.stderr == (
        f"dasctl: error: TLS verification failed for the signalling service at {url}: self-signed "
        "certificate\n  If the server uses a private CA, pass --ca-bundle or set DASCTL_CA_BUNDLE.\n")

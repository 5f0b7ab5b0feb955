"""The OAuth 2.0 client-credentials token endpoint (docs/protocol.md §2) and the tokens it issued."""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import time

from aiohttp import web

from dasctl.emulator.options import EmulatorOptions, Handler
from dasctl.logs import register_secret

log = logging.getLogger("dasctl.emulator")


class TokenStore:
    """Opaque random tokens kept in memory with their expiry."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._expiry: dict[str, float] = {}

    def issue(self) -> str:
        now = time.monotonic()
        # forget expired tokens so a long-running emulator does not grow
        for token in [t for t, expiry in self._expiry.items() if expiry <= now]:
            del self._expiry[token]
        token = secrets.token_urlsafe(32)
        register_secret(token)
        self._expiry[token] = now + self.ttl
        return token

    def valid(self, token: str) -> bool:
        expiry = self._expiry.get(token)
        return expiry is not None and time.monotonic() < expiry

    def check_authorization(self, header: str | None) -> bool:
        """Whether an `Authorization: Bearer <token>` header carries a live token."""
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        return scheme.lower() == "bearer" and self.valid(token.strip())


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    # RFC 6749 §5.2: JSON error body, no caching
    return web.json_response(
        {"error": error, "error_description": description},
        status=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def token_endpoint(options: EmulatorOptions, store: TokenStore) -> Handler:
    """The aiohttp handler for POST <auth path>."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if options.faults.token_5xx:
            log.info("token request answered 503 (fault injected)")
            return web.json_response(
                {"error": "temporarily_unavailable", "error_description": "injected fault"}, status=503
            )
        if request.content_type != "application/x-www-form-urlencoded":
            return _oauth_error(
                400, "invalid_request", "send a form body (application/x-www-form-urlencoded)"
            )
        try:
            form = await request.post()
        except Exception:  # a body aiohttp cannot parse is the client's mistake, not ours
            return _oauth_error(400, "invalid_request", "unreadable form body")
        grant_type = form.get("grant_type")
        if grant_type != "client_credentials":
            if not grant_type:
                return _oauth_error(400, "invalid_request", "grant_type is missing")
            return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        if not isinstance(client_id, str) or not isinstance(client_secret, str):
            return _oauth_error(401, "invalid_client", "client_id and client_secret are required")
        good = hmac.compare_digest(client_id.encode(), options.client_id.encode()) and hmac.compare_digest(
            client_secret.encode(), options.client_secret.encode()
        )
        if not good:
            log.info("token refused: invalid_client")
            return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
        body: dict[str, object] = {"access_token": store.issue(), "token_type": "Bearer"}
        if options.send_expires_in:
            # an integer (RFC 6749), rounded up: a 0.5 s token must not be announced as already expired
            body["expires_in"] = max(1, math.ceil(store.ttl))
        log.debug("token issued to %s", client_id)
        return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    return handle

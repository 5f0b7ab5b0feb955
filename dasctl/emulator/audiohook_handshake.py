"""The AudioHook upgrade request (docs/protocol.md, AudioHook): UUID headers, API key, signature."""

from __future__ import annotations

import logging
import time
import uuid

from aiohttp import web

from dasctl.emulator import httpsig
from dasctl.emulator.options import EmulatorOptions

log = logging.getLogger("dasctl.emulator")

HEADER_ORGANIZATION = "audiohook-organization-id"
HEADER_SESSION = "audiohook-session-id"
HEADER_CORRELATION = "audiohook-correlation-id"
HEADER_API_KEY = "x-api-key"


def _is_uuid(value: str | None) -> bool:
    try:
        uuid.UUID(value or "")
    except ValueError:
        return False
    return True


def check_handshake(request: web.Request, options: EmulatorOptions) -> web.Response | None:
    """An HTTP error response when the upgrade request must be refused, else None."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    for name in (HEADER_ORGANIZATION, HEADER_SESSION, HEADER_CORRELATION):
        if not _is_uuid(headers.get(name)):
            return web.Response(status=400, text=f"header {name} must be a UUID\n")
    api_key = headers.get(HEADER_API_KEY)
    if not api_key:
        return web.Response(status=401, text="header X-API-KEY is missing\n")
    if api_key != options.audiohook_api_key:
        return web.Response(status=401, text="unknown X-API-KEY\n")
    if options.audiohook_secret is not None:
        try:
            # @request-target is the path and query exactly as received (RFC 9421), never re-encoded
            httpsig.verify(
                headers, request.raw_path, request.host, api_key, options.audiohook_secret, time.time()
            )
        except httpsig.SignatureError as error:
            log.info("audiohook handshake refused: %s", error)
            return web.Response(status=401, text=f"signature refused: {error}\n")
    return None

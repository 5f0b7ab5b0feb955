"""The `audiohook` audio consumer (PROTOCOL.md §4.2): the server side of Genesys AudioHook v2."""

from __future__ import annotations

from aiohttp import web

from dasctl.emulator.options import EmulatorOptions
from dasctl.emulator.sessions import SessionRegistry


def audiohook_consumer(options: EmulatorOptions, registry: SessionRegistry) -> web.RequestHandler:
    """The aiohttp handler for the audiohook WebSocket."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(status=501, text="audiohook consumer not yet available")

    return handle

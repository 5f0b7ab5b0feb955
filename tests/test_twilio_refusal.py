"""A twilio refusal that arrives after the last frame is still a refusal.

At --speed 0 a short recording is all sent before the service has read `start`; the service's close
(1008, no session for the call id) then answers the client's own close. Read as the end of the audio, it
made `dasctl stream --wait` stop trying while the session was about to appear (seen under load in
test_live_calls). The real emulator answers too fast on a quiet machine to show the race, so a small
consumer here waits before it refuses: a unit test of the twilio client, over a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from dasctl.audio import Pacer
from dasctl.channels.twilio import AudioRefused, stream_twilio


async def _frames(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"\xff" * 160


async def _consumer(refuse: bool) -> tuple[web.AppRunner, str, list[str]]:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        start = json.loads((await ws.receive()).data)
        seen.append(start["event"])
        await asyncio.sleep(0.3)  # a busy service: the client has sent everything and closed meanwhile
        if refuse:
            await ws.close(code=1008, message=b"no session is waiting for call_id c1")
        else:
            async for _message in ws:
                pass
        return ws

    app = web.Application()
    app.router.add_get("/twilio", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"ws://127.0.0.1:{port}/twilio", seen


async def _stream(refuse: bool) -> bool:
    runner, url, seen = await _consumer(refuse)
    try:
        async with aiohttp.ClientSession() as http:
            sent: list[float] = []
            ended = await asyncio.wait_for(
                stream_twilio(http, url, "c1", _frames(5), Pacer(0), sent.append), 10
            )
        assert seen == ["start"] and sent[-1] == pytest.approx(0.1)
        return ended
    finally:
        await runner.cleanup()


def test_a_refusal_that_answers_the_clients_close_is_a_refusal() -> None:
    with pytest.raises(AudioRefused, match=r"refused the stream for call c1 \(close code 1008"):
        asyncio.run(_stream(refuse=True))


def test_a_normal_answer_to_the_clients_close_is_the_end_of_the_audio() -> None:
    assert asyncio.run(_stream(refuse=False)) is False

"""python-engineio's own log lines ("packet queue is empty, aborting") stay off stderr unless -vv.

The signalling peer here is a few lines of Engine.IO v4 written from its protocol: it accepts the
namespace, then never pings (0.3 s ping interval) but keeps the socket busy with NOOP packets.
python-engineio's client, with nothing to send for its ping interval + 5 s, logs "packet queue is
empty, aborting" at ERROR level (and, with its default handler, a second time raw): what a user saw
when a service stalled. dasctl's own --timeout (7 s) then ends the session.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from tests.conftest import DATA

NOISE = "packet queue is empty"


@pytest.fixture
def silent_signalling() -> Iterator[str]:
    """An Engine.IO server that connects the namespace and then says nothing; its base URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    address: list[str] = []
    stop = asyncio.Event()

    async def engineio(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        handshake = {
            "sid": "silent",
            "upgrades": [],
            "pingInterval": 300,
            "pingTimeout": 300,
            "maxPayload": 10**6,
        }
        await ws.send_str("0" + json.dumps(handshake))

        async def noops() -> None:
            while not ws.closed:
                await ws.send_str("6")  # Engine.IO NOOP: the client reads, but has nothing to answer
                await asyncio.sleep(0.1)

        busy = asyncio.ensure_future(noops())
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                break
            if message.data.startswith("40"):  # Socket.IO CONNECT to a namespace: accept it
                namespace = message.data[2:].split(",", 1)[0] if "," in message.data else "/"
                await ws.send_str(f"40{namespace}," + json.dumps({"sid": "silent-ns"}))
            # everything else (initialize, pongs): silence, and no pings
        busy.cancel()
        return ws

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/socket.io/", engineio)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        address.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield address[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)


@pytest.mark.parametrize(("flags", "shown"), [((), False), (("-vv",), True)])
def test_library_log_lines_only_under_vv(
    silent_signalling: str, dasctl: Any, flags: tuple[str, ...], shown: bool
) -> None:
    env = {"DASCTL_PROFILE": "local", "DASCTL_URL": silent_signalling, "DASCTL_TOKEN": "a-token-for-the-test"}
    run = dasctl(
        *flags, "register", str(DATA / "speech-a-8k-mono.wav"), "--timeout", "7", env=env, timeout=60
    )
    assert run.returncode == 6, run.stderr  # the service went quiet: transient, exit 6
    assert "dasctl: error:" in run.stderr
    assert (NOISE in run.stderr) is shown, run.stderr
    if shown:  # under -vv it comes once, through dasctl's (redacting) handler, never raw
        lines = [line for line in run.stderr.splitlines() if NOISE in line]
        assert all(line.startswith("dasctl: ") for line in lines), lines

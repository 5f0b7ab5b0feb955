"""The emulator process: one aiohttp application with the token endpoint, Socket.IO and both consumers."""

from __future__ import annotations

import asyncio
import logging
import signal
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import socketio
from aiohttp import WSCloseCode, web

from dasctl import config
from dasctl.emulator.audiohook import audiohook_consumer
from dasctl.emulator.options import AUDIO_SOCKETS, EmulatorOptions
from dasctl.emulator.sessions import SessionRegistry
from dasctl.emulator.signalling import PacketJson, Signalling
from dasctl.emulator.tokens import TokenStore, token_endpoint
from dasctl.emulator.twilio import twilio_consumer

log = logging.getLogger("dasctl.emulator")


@dataclass
class Emulator:
    """The parts of a running emulator (tests in-process can reach into them)."""

    app: web.Application
    sio: socketio.AsyncServer
    tokens: TokenStore
    registry: SessionRegistry
    signalling: Signalling


def build(options: EmulatorOptions) -> Emulator:
    """Wire the token endpoint, the Socket.IO server and both audio consumers into one aiohttp app."""
    app = web.Application(client_max_size=64 * 1024)
    app[AUDIO_SOCKETS] = weakref.WeakSet()
    tokens = TokenStore(options.token_ttl)
    registry = SessionRegistry()
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        # the collected audio rides on result-success; a long target means a big packet
        max_http_buffer_size=4 * 1024 * 1024,
        logger=False,
        engineio_logger=False,
        json=PacketJson,
    )
    sio.attach(app, socketio_path=config.SOCKETIO_PATH)
    signalling = Signalling(sio, options, tokens, registry)
    app.router.add_post(config.AUTH_PATH, token_endpoint(options, tokens))
    app.router.add_get(config.TWILIO_AUDIO_PATH, twilio_consumer(options, registry))
    app.router.add_get(config.AUDIOHOOK_AUDIO_PATH, audiohook_consumer(options, registry))
    return Emulator(app, sio, tokens, registry, signalling)


def banner(options: EmulatorOptions, port: int) -> list[str]:
    """What `dasctl serve` prints on start: URLs and the profile values to use (never the secret)."""
    host = options.host if options.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    base = f"http://{host}:{port}"
    ws = f"ws://{host}:{port}"
    lines = [
        f"das-Peak Streaming emulator listening on {base}",
        f"  token endpoint   {base}{config.AUTH_PATH}",
        f"  signalling       {base} (Engine.IO path /{config.SOCKETIO_PATH}, namespaces "
        f"{config.DEFAULT_NAMESPACE_PREFIX}/register, /verify, /alive)",
        f"  twilio audio     {ws}{config.TWILIO_AUDIO_PATH}",
        f"  audiohook audio  {ws}{config.AUDIOHOOK_AUDIO_PATH}",
        f"  client id        {options.client_id}"
        + (
            " (demo secret: the built-in 'local' profile knows it)"
            if options.client_id == config.DEMO_CLIENT_ID
            and options.client_secret == config.DEMO_CLIENT_SECRET
            else ""
        ),
        f"  model hashes     {', '.join(options.model_hashes)}",
        "  audiohook        API key "
        + ("(the demo key)" if options.audiohook_api_key == config.DEMO_AUDIOHOOK_API_KEY else "(configured)")
        + (", signatures required" if options.audiohook_secret else ", signatures not required"),
    ]
    if options.pause_at is not None:
        lines.append(
            f"  audiohook pause  `pause` after {options.pause_at:g} s of audio, "
            f"`resume` {options.resume_after:g} s after `paused`"
        )
    if options.start_paused or options.discard_to is not None:
        asked = []
        if options.start_paused:
            asked.append(f"start paused (`resume` {options.resume_after:g} s after `paused`)")
        if options.discard_to is not None:
            asked.append(f"discard the audio up to {options.discard_to:g} s")
        lines.append(f"  audiohook opened {'; '.join(asked)}")
    if options.faults.describe():
        lines.append(f"  FAULTS INJECTED  {'; '.join(options.faults.describe())}")
    default = port == config.DEFAULT_EMULATOR_PORT and host == config.DEFAULT_EMULATOR_HOST
    lines.append(
        "Use it with:  " + ("" if default else f"DASCTL_URL={base} ") + "dasctl register FILE --profile local"
    )
    lines.append("Stop with Ctrl-C.")
    return lines


async def serve(options: EmulatorOptions, on_ready: Callable[[list[str]], None]) -> None:
    """Run until SIGINT or SIGTERM, then close every connection and return."""
    emulator = build(options)
    # aiohttp's keep-alive timer also runs from the moment a connection is made: a connection that
    # never completes its HTTP request is closed after the handshake timeout (no descriptor kept)
    runner = web.AppRunner(
        emulator.app,
        handle_signals=False,
        shutdown_timeout=1.0,
        keepalive_timeout=options.handshake_timeout,
    )
    # signals are ours before the port accepts anything: a SIGINT right after the listen is a clean stop
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await runner.setup()
        site = web.TCPSite(runner, options.host, options.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        port = options.port
        server = site._server  # aiohttp keeps the listening sockets here; the only way to learn port 0's pick
        sockets = getattr(server, "sockets", None)
        if sockets:
            port = sockets[0].getsockname()[1]
        sweeper = asyncio.create_task(emulator.signalling.close_unattached())
        on_ready(banner(options, port))
        try:
            await stop.wait()
        finally:
            sweeper.cancel()
            log.info("shutting down (%d live sessions)", len(emulator.registry))
            await close_everything(emulator)
            await runner.cleanup()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def close_everything(emulator: Emulator) -> None:
    """Close live connections first, so that shutdown does not wait for clients to leave."""
    await emulator.sio.shutdown()
    if emulator.sio.eio.sockets:  # it waits on a set of tasks, which must not be empty
        await emulator.sio.eio.disconnect()  # no sid: every Engine.IO client
    sockets: weakref.WeakSet[web.WebSocketResponse] = emulator.app[AUDIO_SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"emulator shutting down")

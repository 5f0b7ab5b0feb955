"""Load test of `dasctl serve`: N concurrent register sessions streaming speech as fast as they can.

Starts a fresh emulator subprocess on a free port, runs N sessions at once with raw protocol
clients (python-socketio's AsyncClient for signalling, an aiohttp WebSocket for twilio audio),
and prints sessions/s, audio seconds processed per wall second, and errors (must be 0).

    .venv/bin/python benchmarks/emulator_load.py [--sessions 50] [--rounds 1] [--protocol twilio]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
import uuid
import warnings
from pathlib import Path

import aiohttp
import numpy as np
import socketio
import soundfile
from local_emulator import running_emulator

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # Sun's g711, independent of dasctl's client encoder (audioop-lts on 3.13+)

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "speech-a-8k-mono.wav"
NAMESPACE = "/socket.io/register"


def speech_mulaw() -> bytes:
    samples, rate = soundfile.read(SPEECH, dtype="int16")
    assert rate == 8000 and samples.ndim == 1
    return audioop.lin2ulaw(np.ascontiguousarray(samples).tobytes(), 2)


async def get_token(http: aiohttp.ClientSession, base: str) -> str:
    form = {
        "client_id": "dasctl-demo",
        "client_secret": "dasctl-demo-secret",
        "grant_type": "client_credentials",
    }
    async with http.post(base + "/socket.io/oauth2/token", data=form) as response:
        body = await response.json()
    return f"{body['token_type']} {body['access_token']}"


def initialize(call_id: str, protocol: str) -> dict[str, object]:
    return {
        "metadata": {
            "audio_protocol": protocol,
            "audio_format": "raw",
            "audio_codec": "mulaw",
            "sample_format": "",
            "sample_rate": "8000",
            "channels": "1",
            "call_id": call_id,
        },
        "register_request": {
            "authenticity_threshold": 0.8,
            "audio_total_duration": 5.0,
            "model_hash": "dasctl-emulator-model-v1",
        },
    }


async def stream_twilio(http: aiohttp.ClientSession, url: str, call_id: str, audio: bytes) -> int:
    sent = 0
    async with http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"event": "start", "start": {"callSid": call_id}}))
        for offset in range(0, len(audio), 160):
            if ws.closed:
                break
            chunk = audio[offset : offset + 160]
            try:
                await ws.send_str(
                    json.dumps({"event": "media", "media": {"payload": base64.b64encode(chunk).decode()}})
                )
            except (ConnectionResetError, aiohttp.ClientError):
                break
            sent += len(chunk)
        if not ws.closed:
            try:
                await ws.send_str(json.dumps({"event": "stop"}))
            except (ConnectionResetError, aiohttp.ClientError):
                pass
            await ws.receive(timeout=30)  # the server's close
    return sent


async def stream_audiohook(http: aiohttp.ClientSession, url: str, call_id: str, audio: bytes) -> int:
    session_id = str(uuid.uuid4())
    organization = str(uuid.uuid4())
    headers = {
        "Audiohook-Organization-Id": organization,
        "Audiohook-Session-Id": session_id,
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "X-API-KEY": "dasctl-demo-audiohook-key",
    }
    seq = 0
    serverseq = 0
    sent = 0

    async with http.ws_connect(url, headers=headers) as ws:

        async def send(kind: str, parameters: dict[str, object]) -> None:
            nonlocal seq
            seq += 1
            await ws.send_str(
                json.dumps(
                    {
                        "version": "2",
                        "id": session_id,
                        "type": kind,
                        "seq": seq,
                        "serverseq": serverseq,
                        "position": f"PT{sent / 8000:.2f}S",
                        "parameters": parameters,
                    }
                )
            )

        await send(
            "open",
            {
                "organizationId": organization,
                "conversationId": call_id,
                "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
                "media": [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}],
            },
        )
        opened = json.loads((await ws.receive(timeout=10)).data)
        serverseq = opened["seq"]
        disconnected = asyncio.Event()

        async def read() -> None:
            nonlocal serverseq
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    body = json.loads(message.data)
                    serverseq = body["seq"]
                    if body["type"] == "disconnect":
                        disconnected.set()
                        await send("close", {"reason": "disconnect"})
                    elif body["type"] == "closed":
                        return

        reader = asyncio.create_task(read())
        for offset in range(0, len(audio), 1600):
            if disconnected.is_set():
                break
            await ws.send_bytes(audio[offset : offset + 1600])
            sent += len(audio[offset : offset + 1600])
            await asyncio.sleep(0)
        await asyncio.wait_for(reader, 30)
    return sent


async def one_session(
    http: aiohttp.ClientSession, base: str, authorization: str, audio: bytes, protocol: str
) -> tuple[str, float]:
    call_id = str(uuid.uuid4())
    sio = socketio.AsyncClient(reconnection=False)
    events: asyncio.Queue[tuple[str, tuple[object, ...]]] = asyncio.Queue()

    async def on_any(event: str, *args: object) -> None:
        await events.put((event, args))

    sio.on("*", on_any, namespace=NAMESPACE)
    await sio.connect(
        base,
        headers={"Authorization": authorization},
        namespaces=[NAMESPACE],
        transports=["websocket"],
        wait_timeout=30,
    )
    try:
        await sio.emit("initialize", initialize(call_id, protocol), namespace=NAMESPACE)
        name, _ = await asyncio.wait_for(events.get(), 30)
        if name != "info-consumer-ready":
            return name, 0.0
        ws_base = base.replace("http://", "ws://")
        if protocol == "twilio":
            sent = await stream_twilio(http, ws_base + "/audio/twilio", call_id, audio)
        else:
            sent = await stream_audiohook(http, ws_base + "/audio/audiohook", call_id, audio)
        while True:
            name, args = await asyncio.wait_for(events.get(), 30)
            if name.startswith(("result-", "error-")):
                collected = args[1] if len(args) > 1 and isinstance(args[1], bytes) else b""
                return name, len(collected) / 8000 if collected else sent / 8000
    finally:
        await sio.disconnect()


async def run(args: argparse.Namespace) -> int:
    audio = speech_mulaw()
    errors = 0
    sessions = 0
    audio_seconds = 0.0
    with running_emulator("--consumer-timeout", "60", "--idle-timeout", "60") as emulator:
        base = emulator.url
        async with aiohttp.ClientSession() as http:
            authorization = await get_token(http, base)
            started = time.perf_counter()
            for _ in range(args.rounds):
                results = await asyncio.gather(
                    *(
                        one_session(http, base, authorization, audio, args.protocol)
                        for _ in range(args.sessions)
                    ),
                    return_exceptions=True,
                )
                for result in results:
                    sessions += 1
                    if isinstance(result, BaseException) or result[0] != "result-success":
                        errors += 1
                        print(f"error: {result!r}", file=sys.stderr)
                    else:
                        audio_seconds += result[1]
            wall = time.perf_counter() - started
    print(f"protocol                 {args.protocol}")
    print(f"concurrent sessions      {args.sessions} x {args.rounds} round(s)")
    print(f"wall time                {wall:.2f} s")
    print(f"sessions/s               {sessions / wall:.1f}")
    print(
        f"audio s processed / s    {audio_seconds / wall:.1f}  (audio the emulator consumed per wall second)"
    )
    print(f"errors                   {errors}")
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--protocol", choices=("twilio", "audiohook"), default="twilio")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())

"""dasctl's AudioHook client against a minimal AudioHook server written here from docs/protocol.md §4.2.

Nothing of dasctl's emulator is used: the peer below is its own reading of the protocol (aiohttp
WebSocketResponse). It records every message and frame, and checks what a strict server checks:
seq without gaps, serverseq, the exact position of every message, the signature over the request
target as it arrived, the close transaction after `disconnect` (before and after `opened`),
pause/resume (no audio between `paused` and `resumed`), and what `opened` may ask: `startPaused` (no
audio before `resumed`) and `discardTo` (the skipped audio in `discarded`, every position counting it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from dasctl.audio import Pacer
from dasctl.channels.audiohook import stream_audiohook
from dasctl.errors import AuthError, ServiceUnavailable

API_KEY = "peer-api-key"
SECRET = base64.b64encode(b"the peer's own 32-byte secret!!!").decode()
POSITION = re.compile(r"^PT(\d+(?:\.\d+)?)S$")
RATE = 8000


@dataclass
class Script:
    """What the peer does: when to disconnect, pause and resume (byte counts are audio received)."""

    disconnect_before_opened: tuple[str, str] | None = None  # (reason, info) instead of `opened`
    disconnect_at: int | None = None  # bytes of audio, then `disconnect`
    disconnect_reason: tuple[str, str | None] = ("completed", None)
    pause_at: int | None = None
    resume_after: float = 0.3  # seconds after the client's `paused`
    secret: str | None = None  # when set, the handshake signature is required
    start_paused: bool = False  # `opened` says startPaused (then `resume` resume_after s after `paused`)
    discard_to: str | None = None  # `opened` says discardTo (an ISO duration)


@dataclass
class Record:
    """Everything the peer saw on one connection."""

    target: str = ""
    log: list[tuple[str, Any]] = field(default_factory=list)  # ("msg", dict) or ("audio", nbytes)
    problems: list[str] = field(default_factory=list)
    socket_closed_by_client: bool = False
    signature_ok: bool | None = None
    audio: bytearray = field(default_factory=bytearray)  # every audio byte, in order

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [m for what, m in self.log if what == "msg" and (kind is None or m["type"] == kind)]

    def audio_bytes(self) -> int:
        return sum(n for what, n in self.log if what == "audio")


def seconds(position: str) -> Decimal:
    match = POSITION.match(position)
    assert match, f"position {position!r} is not PT<seconds>S"
    return Decimal(match.group(1))


def check_signature(request: web.Request, secret: str) -> bool:
    """RFC 9421 as the reference server does it, over the request target exactly as it arrived."""
    signature_input = request.headers.get("Signature-Input", "")
    signature = request.headers.get("Signature", "")
    label, _, params = signature_input.partition("=")
    names = re.findall(r'"([^"]+)"', params[: params.index(")") + 1]) if ")" in params else []
    values = {"@request-target": request.raw_path, "@authority": request.host}
    lines = []
    for name in names:
        value = values.get(name) if name.startswith("@") else request.headers.get(name)
        if value is None:
            return False
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {params}')
    digest = hmac.new(base64.b64decode(secret), "\n".join(lines).encode(), hashlib.sha256).digest()
    return bool(names) and signature == f"{label}=:{base64.b64encode(digest).decode()}:"


class Peer:
    """The server side of AudioHook v2, one connection at a time."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.record = Record()
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return f"ws://127.0.0.1:{self.port}/hook"

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        record, script = self.record, self.script
        record.target = request.raw_path
        if script.secret is not None:
            record.signature_ok = check_signature(request, script.secret)
            if not record.signature_ok:
                return web.Response(status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session_id = request.headers["Audiohook-Session-Id"]
        out_seq = 0
        in_seq = 0
        received = 0
        paused = False  # from the client's `paused` (or `opened` with startPaused) to its `resumed`
        discarded = 0  # samples the client said it skipped
        pause_sent = False
        disconnect_sent = False

        async def send(kind: str, parameters: dict[str, Any]) -> None:
            nonlocal out_seq
            out_seq += 1
            message = {"version": "2", "id": session_id, "type": kind, "seq": out_seq, "clientseq": in_seq}
            await ws.send_str(json.dumps({**message, "parameters": parameters}))

        async def resume_later() -> None:
            await asyncio.sleep(script.resume_after)
            await send("resume", {})

        resumer: asyncio.Task[None] | None = None
        async for frame in ws:
            if frame.type == WSMsgType.BINARY:
                record.log.append(("audio", len(frame.data)))
                record.audio += frame.data
                if paused:
                    record.problems.append("audio between paused and resumed")
                received += len(frame.data)
                if script.pause_at is not None and not pause_sent and received >= script.pause_at:
                    pause_sent = True
                    await send("pause", {})
                if (
                    script.disconnect_at is not None
                    and not disconnect_sent
                    and received >= script.disconnect_at
                ):
                    disconnect_sent = True
                    reason, info = script.disconnect_reason
                    await send("disconnect", {"reason": reason, **({"info": info} if info else {})})
                continue
            if frame.type != WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            record.log.append(("msg", message))
            if message["seq"] != in_seq + 1:
                record.problems.append(f"seq {message['seq']} after {in_seq}")
            in_seq = message["seq"]
            if message["serverseq"] > out_seq:
                record.problems.append(f"serverseq {message['serverseq']} > {out_seq}")
            if message["type"] == "discarded":
                discarded += int(seconds(message["parameters"]["discarded"]) * RATE)
                if seconds(message["parameters"]["start"]) != Decimal(received) / RATE:
                    record.problems.append(f"discarded from {message['parameters']['start']}")
            if seconds(message["position"]) != Decimal(received + discarded) / RATE:
                record.problems.append(
                    f"{message['type']} position {message['position']} after {received} bytes "
                    f"and {discarded} discarded"
                )
            if message.get("version") != "2" or message.get("id") != session_id:
                record.problems.append(f"bad envelope {message}")
            kind = message["type"]
            if kind == "open":
                if script.disconnect_before_opened:
                    reason, info = script.disconnect_before_opened
                    disconnect_sent = True
                    await send("disconnect", {"reason": reason, "info": info})
                else:
                    opened = {"startPaused": script.start_paused, "media": message["parameters"]["media"][:1]}
                    if script.discard_to is not None:
                        opened["discardTo"] = script.discard_to
                    paused = script.start_paused
                    await send("opened", opened)
            elif kind == "ping":
                await send("pong", {})
            elif kind == "paused":
                paused = True
                if resumer is None:
                    resumer = asyncio.create_task(resume_later())
            elif kind == "resumed":
                paused = False
            elif kind == "close":
                await send("closed", {})
        else:
            record.socket_closed_by_client = True
        if resumer is not None:
            resumer.cancel()
        return ws


async def frames(audio: bytes, size: int = 1600) -> AsyncIterator[bytes]:
    for offset in range(0, len(audio), size):
        yield audio[offset : offset + size]


def run(
    script: Script,
    audio: bytes,
    *,
    speed: float = 0,
    query: str = "",
    secret: str | None = None,
    frame: int = 1600,
) -> tuple[Record, Any, list[bool]]:
    """Stream audio to a fresh peer with dasctl's client: (what the peer saw, result or error, pauses)."""
    import aiohttp

    pauses: list[bool] = []

    async def main() -> tuple[Record, Any]:
        peer = Peer(script)
        url = await peer.start() + query
        try:
            async with aiohttp.ClientSession() as http:
                try:
                    outcome: Any = await stream_audiohook(
                        http,
                        url,
                        str(uuid.uuid4()),
                        frames(audio, frame),
                        Pacer(speed),
                        lambda _seconds: None,
                        api_key=API_KEY,
                        secret=secret,
                        connect_timeout=5,
                        on_pause=pauses.append,
                    )
                except (AuthError, ServiceUnavailable) as error:
                    outcome = error
            await asyncio.sleep(0.1)  # let the peer's handler see the socket close
        finally:
            await peer.stop()
        return peer.record, outcome

    record, outcome = asyncio.run(main())
    return record, outcome, pauses


AUDIO = bytes(range(256)) * 200  # 51200 bytes = 6.4 s; the content does not matter to the peer


def test_positions_are_exact_and_sequence_numbers_have_no_gaps() -> None:
    # 1597-byte frames: positions like PT0.199625S that millisecond rounding would get wrong
    record, outcome, _ = run(Script(disconnect_at=20000), AUDIO, frame=1597)
    assert outcome is True  # `completed`: the service had enough
    assert record.problems == []
    kinds = [m["type"] for m in record.messages()]
    assert kinds[0] == "open" and kinds[-1] == "close"
    close = record.messages("close")[0]
    assert close["parameters"] == {"reason": "disconnect"}
    assert close["position"] == f"PT{Decimal(record.audio_bytes()) / RATE}S"
    assert "." in close["position"] and "E" not in close["position"]
    assert record.socket_closed_by_client


def test_audio_ending_first_closes_with_reason_end() -> None:
    record, outcome, _ = run(Script(), AUDIO[:12345])
    assert outcome is False
    assert record.problems == []
    close = record.messages("close")[0]
    assert (close["parameters"], close["position"]) == ({"reason": "end"}, "PT1.543125S")
    assert record.socket_closed_by_client


def test_disconnect_before_opened_gets_the_close_transaction_and_its_info_reaches_the_user() -> None:
    record, outcome, _ = run(Script(disconnect_before_opened=("unauthorized", "API key revoked")), AUDIO)
    assert isinstance(outcome, AuthError)
    assert "API key revoked" in str(outcome) and "before opening" in str(outcome)
    assert [m["type"] for m in record.messages()] == ["open", "close"]
    assert record.messages("close")[0]["parameters"] == {"reason": "disconnect"}
    assert record.messages("close")[0]["serverseq"] == 1  # it saw the disconnect
    assert record.audio_bytes() == 0  # never audio before `opened`
    assert record.socket_closed_by_client
    assert record.problems == []


def test_disconnect_with_an_error_after_opened_says_why() -> None:
    script = Script(disconnect_at=8000, disconnect_reason=("error", "transcoder crashed"))
    record, outcome, _ = run(script, AUDIO)
    assert isinstance(outcome, ServiceUnavailable)
    assert "transcoder crashed" in str(outcome)
    assert record.messages()[-1]["type"] == "close"
    assert record.messages("close")[0]["parameters"] == {"reason": "disconnect"}
    assert record.socket_closed_by_client
    assert record.problems == []


@pytest.mark.parametrize("speed", [0, 4])
def test_pause_holds_the_recording_in_place_and_resume_goes_on_from_there(speed: float) -> None:
    record, outcome, pauses = run(
        Script(pause_at=9600, disconnect_at=30000, resume_after=0.3), AUDIO, speed=speed
    )
    assert outcome is True
    assert record.problems == []  # includes: no audio between paused and resumed
    paused, resumed = record.messages("paused")[0], record.messages("resumed")[0]
    assert paused["parameters"] == {}
    assert resumed["parameters"] == {"start": paused["position"], "discarded": "PT0S"}
    assert resumed["position"] == paused["position"]
    # frames in flight when `pause` left may still arrive (allowed); after `paused`, none (problems)
    at_pause = seconds(paused["position"]) * RATE
    assert 9600 <= at_pause < 30000
    assert record.audio_bytes() >= 30000
    assert pauses == [True, False]


def test_signature_is_over_the_target_as_sent() -> None:
    query = "?tenant=a%7eb&path=x%2fy&q=two words"
    record, outcome, _ = run(Script(secret=SECRET, disconnect_at=8000), AUDIO, query=query, secret=SECRET)
    assert record.signature_ok is True, record.target
    assert outcome is True
    assert record.target.startswith("/hook?tenant=")
    assert " " not in record.target


def test_start_paused_sends_paused_at_once_and_no_audio_until_resume() -> None:
    record, outcome, pauses = run(Script(start_paused=True, resume_after=0.3, disconnect_at=16000), AUDIO)
    assert outcome is True
    assert record.problems == []  # includes: no audio before `resumed`
    kinds = [m["type"] for m in record.messages()]
    assert kinds[:3] == ["open", "paused", "resumed"]
    assert record.log.index(("msg", record.messages("resumed")[0])) < next(
        i for i, (what, _) in enumerate(record.log) if what == "audio"
    )
    resumed = record.messages("resumed")[0]
    assert resumed["parameters"] == {"start": "PT0S", "discarded": "PT0S"}  # held in place
    assert record.messages("paused")[0]["position"] == "PT0S"
    assert bytes(record.audio) == AUDIO[: len(record.audio)]  # from the very start
    assert pauses == [True, False]


@pytest.mark.parametrize(
    ("discard_to", "frame", "skipped"),
    [
        ("PT1.3S", 1600, 9600),  # 10400 samples, rounded down to whole 200 ms frames: 1.2 s
        ("PT1.2S", 1600, 9600),  # exactly on a frame
        ("PT0.1S", 1600, 0),  # inside the first frame: nothing skipped, no `discarded`
        ("PT2.0004S", 1597, 15970),  # 16003 samples: ten frames of 1597
    ],
)
def test_discard_to_skips_whole_frames_and_counts_them_in_every_position(
    discard_to: str, frame: int, skipped: int
) -> None:
    record, outcome, _ = run(Script(discard_to=discard_to), AUDIO, frame=frame)
    assert outcome is False  # the audio ran out: close with reason end
    assert record.problems == []  # every position = audio received + audio discarded, exactly
    assert bytes(record.audio) == AUDIO[skipped:]
    discards = record.messages("discarded")
    if skipped:
        assert [m["parameters"] for m in discards] == [
            {"start": "PT0S", "discarded": f"PT{Decimal(skipped) / RATE}S"}
        ]
        assert discards[0]["position"] == f"PT{Decimal(skipped) / RATE}S"
    else:
        assert discards == []
    close = record.messages("close")[0]
    assert close["position"] == f"PT{Decimal(len(AUDIO)) / RATE}S"  # the whole stream: sent + skipped


def test_discard_to_past_the_end_skips_everything() -> None:
    record, outcome, _ = run(Script(discard_to="PT60S"), AUDIO)
    assert outcome is False and record.problems == []
    assert record.audio == b""
    assert record.messages("discarded")[0]["parameters"] == {"start": "PT0S", "discarded": "PT6.4S"}


def test_discard_then_start_paused_in_the_reference_clients_order() -> None:
    script = Script(start_paused=True, discard_to="PT1S", resume_after=0.2, disconnect_at=8000)
    record, outcome, _ = run(script, AUDIO)
    assert outcome is True and record.problems == []
    assert [m["type"] for m in record.messages()][:4] == ["open", "discarded", "paused", "resumed"]
    assert record.messages("resumed")[0]["parameters"] == {"start": "PT1S", "discarded": "PT0S"}
    assert bytes(record.audio) == AUDIO[8000 : 8000 + len(record.audio)]

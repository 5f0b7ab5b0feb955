"""How many descriptors idle, half-open connections hold in `dasctl serve`, and for how long.

Opens N connections of each kind that never complete a handshake (TCP with nothing sent, half an HTTP
request, twilio and audiohook WebSockets with no first message, Engine.IO with no namespace) and prints
the emulator's open descriptors (/proc/PID/fd, Linux) right after and at a few later times. With the
default --handshake-timeout (10 s) they are back to the baseline by t=12 s.

    .venv/bin/python benchmarks/idle_connections.py [--each 100] [--handshake-timeout 10]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import uuid
from pathlib import Path

import websocket

sys.path.insert(0, str(Path(__file__).parent))
from local_emulator import running_emulator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--each", type=int, default=100, help="connections of each kind")
    parser.add_argument("--handshake-timeout", type=float, default=10.0)
    args = parser.parse_args()
    with running_emulator("--handshake-timeout", str(args.handshake_timeout)) as emulator:

        def fds() -> int:
            return len(os.listdir(f"/proc/{emulator.proc.pid}/fd"))

        baseline = fds()
        port = emulator.port
        held: list[object] = []
        for _ in range(args.each):
            held.append(socket.create_connection(("127.0.0.1", port)))
            half = socket.create_connection(("127.0.0.1", port))
            half.sendall(b"GET /audio/twilio HTTP/1.1\r\n")
            held.append(half)
            held.append(websocket.create_connection(f"ws://127.0.0.1:{port}/audio/twilio"))
            headers = [
                f"Audiohook-Organization-Id: {uuid.uuid4()}",
                f"Audiohook-Session-Id: {uuid.uuid4()}",
                f"Audiohook-Correlation-Id: {uuid.uuid4()}",
                "X-API-KEY: dasctl-demo-audiohook-key",
            ]
            held.append(websocket.create_connection(f"ws://127.0.0.1:{port}/audio/audiohook", header=headers))
            engineio = websocket.create_connection(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
            engineio.recv()
            held.append(engineio)
        started = time.monotonic()
        print(f"baseline {baseline} fds; with {len(held)} idle connections: {fds()} fds")
        for at in (args.handshake_timeout / 2, args.handshake_timeout + 2, 2 * args.handshake_timeout):
            time.sleep(max(0.0, started + at - time.monotonic()))
            print(f"t={at:5.1f} s: {fds()} fds ({fds() - baseline} above baseline)")


if __name__ == "__main__":
    main()

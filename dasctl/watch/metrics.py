"""`dasctl watch --metrics ADDR`: Prometheus metrics (the official prometheus-client) and `/healthz`.

The metrics are counted by a WatchObserver (`MetricsObserver`) that sits beside the display, plus two
hooks the runner calls (a retry, a store write). No label names a file, a speaker or a call: the series
count stays fixed however many recordings pass.

`/healthz` answers 200 while the runner's loop turns and the store answers, 503 otherwise, with a JSON
reason either way. Served from a thread (the standard library's WSGI server), so a busy loop cannot
make the health check itself hang; it reads only what the loop last wrote.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from dasctl.errors import UsageError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from dasctl.session import Progress
    from dasctl.watch.observer import WatchObserver, WatchTotals

#: the loop ticks at least once a second; this long without a tick is a stuck watch
LOOP_STALE_S = 15.0
DEFAULT_PORT = 9464
_DURATION_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)
_VOICE_BUCKETS = (1, 2, 4, 6, 8, 10, 12, 15, 20, 30, 45, 60)
_STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def parse_address(text: str) -> tuple[str, int]:
    """`PORT`, `:PORT`, `HOST:PORT` or `[V6]:PORT`; the host defaults to loopback (never every interface
    unless asked, e.g. 0.0.0.0:9464). UsageError when it is not an address."""
    host, _, port_text = text.rpartition(":") if ":" in text else ("", "", text)
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise UsageError(f"--metrics {text!r} is not an address",
                         f"Give a port or HOST:PORT, e.g. --metrics 127.0.0.1:{DEFAULT_PORT}")
    return host, port


class WatchMetrics:
    """The metrics of one watch process, in a registry of its own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.files = Counter("dasctl_watch_files", "Recordings by outcome: done, failed, skipped, retried.",
                             ["outcome"], registry=self.registry)
        for outcome in ("done", "failed", "skipped", "retried"):
            self.files.labels(outcome)  # every series from the start: rate() needs a zero to begin at
        self.in_flight = Gauge("dasctl_watch_sessions_in_flight", "Register sessions running now.",
                               registry=self.registry)
        self.queued = Gauge("dasctl_watch_files_queued", "Settled recordings waiting for a free session.",
                            registry=self.registry)
        self.duration = Histogram("dasctl_watch_session_duration_seconds",
                                  "Wall time of a recording's final attempt.", buckets=_DURATION_BUCKETS,
                                  registry=self.registry)
        self.voice = Histogram("dasctl_watch_voice_seconds", "Voice the service collected per recording.",
                               buckets=_VOICE_BUCKETS, registry=self.registry)
        self.service_errors = Counter("dasctl_watch_service_errors",
                                      "Terminal events other than result-success, by event name.",
                                      ["event"], registry=self.registry)
        self.store_write = Histogram("dasctl_watch_store_write_seconds", "Latency of one store transaction.",
                                     buckets=_STORE_BUCKETS, registry=self.registry)
        self.claims = Gauge("dasctl_watch_claims_held", "Recordings this watcher holds (shared inbox).",
                            registry=self.registry)
        self.last_tick = time.monotonic()  # written by the loop, read by /healthz
        self.store_ok: str | None = None  # None: answering; else why not
        self.stopping = False

    def store_call(self, seconds: float, error: BaseException | None) -> None:
        """WatchState's hook: one store transaction took this long (and failed with this error)."""
        self.store_write.observe(seconds)
        self.store_ok = None if error is None else (str(error).splitlines() or ["error"])[0]


class MetricsObserver:
    """Forwards every event to the display and counts it."""

    def __init__(self, display: WatchObserver, metrics: WatchMetrics, claims: Callable[[], int]) -> None:
        self.display = display
        self.metrics = metrics
        self.claims = claims

    def status(self, message: str) -> None:
        self.display.status(message)

    def warning(self, message: str) -> None:
        self.display.warning(message)

    def started(self, name: str, attempt: int) -> None:
        if attempt > 1:
            self.metrics.files.labels("retried").inc()
        self.display.started(name, attempt)

    def progress(self, name: str, progress: Progress) -> None:
        self.display.progress(name, progress)

    def finished(self, name: str, report: dict[str, Any]) -> None:
        ok = report.get("exit_code") == 0
        self.metrics.files.labels("done" if ok else "failed").inc()
        total = (report.get("timings") or {}).get("total")
        if isinstance(total, (int, float)):
            self.metrics.duration.observe(total)
        voice = report.get("voice_seconds")
        if isinstance(voice, (int, float)):
            self.metrics.voice.observe(voice)
        outcome = report.get("outcome")
        event = outcome.get("event") if isinstance(outcome, dict) else None
        if not ok and isinstance(event, str):
            self.metrics.service_errors.labels(event).inc()
        self.display.finished(name, report)

    def totals(self, totals: WatchTotals) -> None:
        self.metrics.in_flight.set(totals.in_flight)
        self.metrics.queued.set(totals.queued)
        self.metrics.claims.set(self.claims())
        self.metrics.last_tick = time.monotonic()
        self.display.totals(totals)

    def skipped(self, name: str, reason: str) -> None:
        self.metrics.files.labels("skipped").inc()
        self.display.skipped(name, reason)

    def summary(self, figures: dict[str, Any]) -> None:
        self.display.summary(figures)

    def close(self) -> None:
        self.metrics.stopping = True
        self.display.close()


def health(metrics: WatchMetrics, now: float | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of /healthz."""
    now = time.monotonic() if now is None else now
    since = now - metrics.last_tick
    body: dict[str, Any] = {"loop_seconds_since_tick": round(since, 3)}
    reason = None
    if metrics.stopping:
        reason = "watch is stopping"
    elif since > LOOP_STALE_S:
        reason = f"the watch loop has not turned for {since:.0f} s"
    elif metrics.store_ok is not None:
        reason = f"the store does not answer: {metrics.store_ok}"
    if reason is not None:
        return 503, {**body, "status": "unhealthy", "reason": reason}
    return 200, {**body, "status": "ok", "store": "ok"}


def serve(metrics: WatchMetrics, address: tuple[str, int]) -> WSGIServer:
    """Serve /metrics and /healthz on address from a daemon thread; UsageError when it cannot bind."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    exposition = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            code, body = health(metrics)
            start_response(f"{code} {'OK' if code == 200 else 'Service Unavailable'}",
                           [("Content-Type", "application/json")])
            return [json.dumps(body).encode() + b"\n"]
        if path in ("/metrics", "/"):
            result: Iterable[bytes] = exposition(environ, start_response)
            return result
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: /metrics and /healthz are served here\n"]

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # scrapes every 15 s are not news
            pass

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET

    try:
        server = make_server(address[0], address[1], app, server_class=Server, handler_class=QuietHandler)
    except OSError as error:
        raise UsageError(f"--metrics {address[0]}:{address[1]}: cannot listen: {error.strerror or error}",
                         "Pick a free port, or another address.") from None
    thread = threading.Thread(target=server.serve_forever, name="dasctl-watch-metrics", daemon=True)
    thread.start()
    return server

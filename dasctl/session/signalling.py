"""The Socket.IO side of a session: the client class, connecting with the token, and leaving quietly.

docs/protocol.md, authentication and signalling: the token goes in the Authorization header of the
handshake; a refused token is refreshed once. Every event of the namespace is funnelled into one queue,
in the service's order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any

from dasctl.errors import AuthError, ServiceUnavailable

if TYPE_CHECKING:
    import aiohttp

    from dasctl.auth import TokenProvider
    from dasctl.config import Profile
    from dasctl.net import NetworkSettings

log = logging.getLogger(__name__)

#: What the connection puts on its queue: ("event", (name, args)) or ("disconnect", reason).
EventQueue = asyncio.Queue[tuple[str, Any]]


@functools.cache
def _async_client_class() -> type:
    """socketio.AsyncClient, except that a message still in flight when the connection closes is dropped.

    python-socketio hands each Engine.IO message to a task of its own. A binary event (result-success
    carries the collected audio) is a placeholder message and then an attachment; when the connection
    closes between the two (a session cancelled by Ctrl-C, or `watch` stopping because its stdout
    closed), the disconnect throws away the half-built packet and the attachment's task fails to decode
    the audio as a packet. Nobody awaits that task, so asyncio printed "Task exception was never
    retrieved" and a traceback on stderr as the command ended (seen once in CI). Once the connection is
    closing nothing more can come of such a message: it is dropped, and shown at -vv only.
    """
    import socketio

    class AsyncClient(socketio.AsyncClient):
        async def _handle_eio_message(self, data: Any) -> None:
            try:
                await super()._handle_eio_message(data)
            except ValueError:
                if self.connected and self.eio.state == "connected":
                    raise
                log.debug("dropped a Socket.IO message that was in flight as the connection closed",
                          exc_info=True)

    return AsyncClient


async def token(tokens: TokenProvider, refused: str | None = None) -> Any:
    """A valid token; after a refusal, a fresh one (sessions refused together share one refresh)."""
    from dasctl import logs

    fresh = await asyncio.to_thread(tokens.token, refused is not None, refused)
    logs.register_secret(fresh.access_token)
    return fresh


async def connect(
    http: aiohttp.ClientSession, profile: Profile, namespace: str, tokens: TokenProvider, timeout: float,
    network: NetworkSettings,
) -> tuple[Any, EventQueue]:
    """Connect to the namespace; on an auth refusal, refresh the token once and retry. `network` is
    the trust `http` was made with, asked why when a TLS handshake fails.

    Returns the client and the queue its events arrive on."""
    refused: str | None = None
    for attempt in (1, 2):
        current = await token(tokens, refused)
        sio, queue, refusal = await attempt_connect(http, profile, namespace, current.authorization, timeout,
                                                    network)
        if sio is not None:
            return sio, queue
        if refusal == "unauthorized" and attempt == 1:
            log.info("the service refused the token; refreshing it once and retrying")
            refused = current.access_token
            continue
        raise AuthError(
            "the service refused the access token (unauthorized), even after a refresh",
            "Run `dasctl login` again, or check that the profile's auth_url belongs to this service.",
        )
    raise AssertionError("unreachable")  # pragma: no cover


async def attempt_connect(
    http: aiohttp.ClientSession, profile: Profile, namespace: str, authorization: str, timeout: float,
    network: NetworkSettings,
) -> tuple[Any, EventQueue, str | None]:
    """One connection attempt: (client, queue, None), or (None, queue, "unauthorized") when the token
    was refused. `network`: the trust `http` was made with, asked why when a handshake fails."""
    import socketio

    url = profile.url
    queue: EventQueue = asyncio.Queue()
    refusals: list[Any] = []
    sio = _async_client_class()(
        reconnection=False,
        logger=False,
        engineio_logger=False,
        http_session=http,
        handle_sigint=False,
        request_timeout=max(timeout, 1.0),
    )

    def on_any(event: str, *args: Any) -> None:
        # one queue keeps the service's order; any number of arguments (result-success carries audio)
        queue.put_nowait(("event", (event, args)))

    def on_connect_error(*args: Any) -> None:
        refusals.append(args[0] if args else None)

    def on_disconnect(*args: Any) -> None:
        queue.put_nowait(("disconnect", args[0] if args else None))

    sio.on("*", on_any, namespace=namespace)
    sio.on("connect_error", on_connect_error, namespace=namespace)
    sio.on("disconnect", on_disconnect, namespace=namespace)
    try:
        await asyncio.wait_for(
            sio.connect(
                url,
                headers={"Authorization": authorization},
                transports=["websocket"],
                namespaces=[namespace],
                socketio_path=_socketio_path(),
                wait_timeout=timeout,
            ),
            timeout + 1.0,
        )
        return sio, queue, None
    except asyncio.TimeoutError:
        await quietly_disconnect(sio)
        raise ServiceUnavailable(
            f"no answer from the signalling service at {url} within {timeout:g} s",
            "The service is slow or unreachable; try again later, or raise --timeout.",
        ) from None
    except socketio.exceptions.ConnectionError as error:
        await quietly_disconnect(sio)
        if url.startswith("https:"):  # the trust is read at the handshake: a broken CA bundle shows here
            problem = network.bundle_problem()
            if problem is not None:
                raise problem from None
            refused_certificate = _certificate_error(error)
            if refused_certificate:
                raise ServiceUnavailable(
                    f"TLS verification failed for the signalling service at {url}: {refused_certificate}",
                    "If the server uses a private CA, pass --ca-bundle or set DASCTL_CA_BUNDLE.",
                ) from None
        if _unreachable(error):
            from dasctl.net import unreachable_hint

            raise ServiceUnavailable(
                f"could not reach the signalling service at {url}", unreachable_hint(profile, "url")
            ) from None
        message = _refusal_message(refusals)
        if message == "unauthorized":
            return None, queue, message
        if message:
            raise ServiceUnavailable(f"the service refused the session: {message}") from None
        raise ServiceUnavailable(
            f"cannot connect to the signalling service at {url}: {error}",
            "Check the URL (dasctl config show) and that the service is running, then try again.",
        ) from None


def _socketio_path() -> str:
    from dasctl.config import SOCKETIO_PATH

    return SOCKETIO_PATH


def _unreachable(error: BaseException) -> bool:
    """Whether a Socket.IO connect failed because nothing answered at the URL (not a refusal by the service).

    python-socketio reports both as "Connection error"; the aiohttp error underneath tells them apart."""
    import aiohttp

    inner = error.__cause__.__context__ if error.__cause__ is not None else None
    return isinstance(inner, aiohttp.ClientConnectionError)


def _certificate_error(error: BaseException) -> str | None:
    """The reason the server's certificate was not trusted, when that is why the connect failed."""
    import aiohttp

    inner = error.__cause__.__context__ if error.__cause__ is not None else None
    if isinstance(inner, aiohttp.ClientConnectorCertificateError):
        reason = inner.certificate_error
        return str(getattr(reason, "verify_message", None) or reason)
    return None


def _refusal_message(refusals: list[Any]) -> str | None:
    """The message of a connect_error: the server's data ({"message": ...}) or a string."""
    for data in refusals:
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return str(data["message"])
        if isinstance(data, str) and data:
            return data
    return None


async def quietly_disconnect(sio: Any) -> None:
    try:
        await asyncio.wait_for(sio.disconnect(), 2.0)
    except (asyncio.TimeoutError, Exception):  # noqa: BLE001  (cleanup must never mask the real outcome)
        log.debug("socket.io disconnect did not finish cleanly", exc_info=True)

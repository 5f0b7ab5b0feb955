"""`dasctl serve`: the local das-Peak Streaming emulator."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer

from dasctl import config
from dasctl.cli.usage import compose_help
from dasctl.errors import UsageError

SECRET_ENV = "DASCTL_SERVE_CLIENT_SECRET"
AUDIOHOOK_SECRET_ENV = "DASCTL_SERVE_AUDIOHOOK_SECRET"


def _read_secret_file(path: Path, flag: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as error:
        raise UsageError(
            f"cannot read {flag} {path}: {error.strerror}", f"Give a readable file to {flag}."
        ) from None
    if not value:
        raise UsageError(f"{flag} {path} is empty", "Put the secret on the file's first line.")
    return value


def _client_secret(client_id: str, secret_file: Path | None) -> str:
    if secret_file is not None:
        return _read_secret_file(secret_file, "--client-secret-file")
    value = os.environ.get(SECRET_ENV)
    if value:
        return value
    if client_id == config.DEMO_CLIENT_ID:
        return config.DEMO_CLIENT_SECRET
    raise UsageError(
        f"no client secret for client id {client_id!r}",
        f"Set {SECRET_ENV} or pass --client-secret-file (secrets never go on the command line).",
    )


def _audiohook_secret(secret_file: Path | None) -> bytes | None:
    if secret_file is not None:
        value: str | None = _read_secret_file(secret_file, "--audiohook-secret-file")
        where = "--audiohook-secret-file"
    else:
        value = os.environ.get(AUDIOHOOK_SECRET_ENV) or None
        where = AUDIOHOOK_SECRET_ENV
    if value is None:
        return None
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(
            f"the AudioHook secret in {where} is not base64", "AudioHook client secrets are base64."
        ) from None
    if not key:
        raise UsageError(f"the AudioHook secret in {where} is empty")
    return key


STOP_LINE = "Stop with Ctrl-C."

SERVE_HELP = compose_help(
    "Run the local das-Peak Streaming emulator (token endpoint, signalling, audio consumers).",
    "Its biometrics are a stand-in; it follows the wire protocol to the letter. In the foreground it logs "
    "one line per session on stderr. Started in the background from a terminal (`&`), it prints one line "
    "and logs to a file, so nothing it says lands in another command's live progress bar.",
    examples=[
        "dasctl serve --log-file serve.log &   # then: dasctl login; dasctl register call.wav",
        "dasctl serve --port 0                 # any free port; the banner says which",
        "dasctl serve --fault-error-event error-das-Peak   # see how a client copes",
    ],
    exit_codes="""
    0 stopped by Ctrl-C or SIGTERM
    2 usage error, or the port is taken
    """,
)


def _in_background(stream: TextIO) -> bool:
    """Whether we are a background job of the terminal `stream` is (`dasctl serve &`)."""
    try:
        return stream.isatty() and os.getpgrp() != os.tcgetpgrp(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def _open_log(path: Path) -> TextIO:
    try:
        return open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the server
    except OSError as error:
        raise UsageError(f"cannot write the log file {path}: {error.strerror}") from None


def serve(
    host: Annotated[
        str, typer.Option(metavar="ADDRESS", help="Address to bind (only 127.0.0.1 is private).")
    ] = config.DEFAULT_EMULATOR_HOST,
    port: Annotated[
        int, typer.Option(metavar="PORT", help="Port to listen on; 0 picks a free one.", min=0, max=65535)
    ] = config.DEFAULT_EMULATOR_PORT,
    client_id: Annotated[
        str, typer.Option(metavar="ID", help=f"OAuth client id to accept (secret from {SECRET_ENV}).")
    ] = config.DEMO_CLIENT_ID,
    client_secret_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="File holding the client secret.")
    ] = None,
    token_ttl: Annotated[
        float, typer.Option(metavar="SECONDS", help="Token lifetime in seconds.", min=0.1)
    ] = 3600.0,
    no_expires_in: Annotated[
        bool, typer.Option("--no-expires-in", help="Leave expires_in out of token responses.")
    ] = False,
    model_hash: Annotated[
        list[str] | None, typer.Option(metavar="HASH", help="Accepted model hash (default: the demo one).")
    ] = None,
    consumer_timeout: Annotated[
        float,
        typer.Option(metavar="SECONDS", min=0.1,
                     help="Seconds for the audio channel to open after info-consumer-ready."),
    ] = 10.0,
    idle_timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds without audio before error-audio.", min=0.1)
    ] = 10.0,
    audiohook_api_key: Annotated[
        str, typer.Option(metavar="KEY", help="AudioHook X-API-KEY to accept.")
    ] = config.DEMO_AUDIOHOOK_API_KEY,
    audiohook_secret_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help=f"File with the AudioHook HMAC secret, base64 (or env {AUDIOHOOK_SECRET_ENV}); "
            "signatures are then required."
        ),
    ] = None,
    max_frame_bytes: Annotated[
        int, typer.Option(metavar="BYTES", help="Largest audio frame accepted.", min=160)
    ] = 65536,
    handshake_timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Seconds a connection has to send its HTTP request, and an audio socket its first message.",
            min=0.1,
        ),
    ] = 10.0,
    pause_at: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="AudioHook: send `pause` once this many seconds of audio arrived.",
            min=0.0,
        ),
    ] = None,
    resume_after: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="AudioHook: send `resume` this many seconds after the client's `paused`.",
            min=0.0,
        ),
    ] = 2.0,
    start_paused: Annotated[
        bool,
        typer.Option(
            "--start-paused",
            help="AudioHook: answer `open` with startPaused (send `resume` --resume-after s after `paused`).",
        ),
    ] = False,
    discard_to: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", min=0.0,
            help="AudioHook: answer `open` with discardTo: the client skips the audio up to SECONDS.",
        ),
    ] = None,
    fault_refuse_tokens: Annotated[
        bool,
        typer.Option("--fault-refuse-tokens", help="Fault: refuse every token at the Socket.IO handshake."),
    ] = False,
    fault_token_5xx: Annotated[
        bool, typer.Option("--fault-token-5xx", help="Fault: the token endpoint answers 503.")
    ] = False,
    fault_drop_signalling_after: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", min=0.0,
                     help="Fault: drop the signalling connection SECONDS after connect."),
    ] = None,
    fault_reset_audio_after: Annotated[
        int | None,
        typer.Option(metavar="BYTES", help="Fault: reset the audio socket after BYTES of audio.", min=0),
    ] = None,
    fault_no_consumer_ready: Annotated[
        bool, typer.Option("--fault-no-consumer-ready", help="Fault: never send info-consumer-ready.")
    ] = False,
    fault_error_event: Annotated[
        str | None,
        typer.Option(metavar="EVENT",
                     help="Fault: answer initialize with this error-* (or result-fail-*) event."),
    ] = None,
    fault_delay_events: Annotated[
        float, typer.Option(metavar="SECONDS", help="Fault: wait SECONDS before every event.", min=0.0)
    ] = 0.0,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file", metavar="FILE", show_default=False,
            help="Append the startup banner and the session log to FILE instead of stderr "
            "(default in the background on a terminal: serve.log in dasctl's state directory).",
        ),
    ] = None,
) -> None:
    """Run the local das-Peak Streaming emulator (token endpoint, signalling, audio consumers)."""
    import asyncio

    from dasctl.cli import common
    from dasctl.logs import RedactingFormatter, register_secret

    try:
        from dasctl.emulator.app import serve as run
        from dasctl.emulator.options import EmulatorOptions, Faults, valid_fault_event
    except ImportError as error:
        raise UsageError(
            f"the emulator needs the server extra ({error.name} is missing)", "pip install 'dasctl[server]'"
        ) from None

    if fault_error_event is not None and not valid_fault_event(fault_error_event):
        raise UsageError(
            f"--fault-error-event {fault_error_event!r} is not a terminal event",
            "Use an error-* name (e.g. error-das-Peak) or result-fail-spoof / result-fail-score.",
        )
    secret = _client_secret(client_id, client_secret_file)
    register_secret(secret)
    hook_secret = _audiohook_secret(audiohook_secret_file)
    register_secret(audiohook_api_key if audiohook_api_key != config.DEMO_AUDIOHOOK_API_KEY else None)
    options = EmulatorOptions(
        host=host,
        port=port,
        client_id=client_id,
        client_secret=secret,
        token_ttl=token_ttl,
        send_expires_in=not no_expires_in,
        model_hashes=tuple(model_hash) if model_hash else (config.DEMO_MODEL_HASH,),
        consumer_timeout=consumer_timeout,
        idle_timeout=idle_timeout,
        audiohook_api_key=audiohook_api_key,
        audiohook_secret=hook_secret,
        max_frame_bytes=max_frame_bytes,
        handshake_timeout=handshake_timeout,
        pause_at=pause_at,
        resume_after=resume_after,
        start_paused=start_paused,
        discard_to=discard_to,
        faults=Faults(
            refuse_tokens=fault_refuse_tokens,
            token_5xx=fault_token_5xx,
            drop_signalling_after=fault_drop_signalling_after,
            reset_audio_after=fault_reset_audio_after,
            no_consumer_ready=fault_no_consumer_ready,
            error_event=fault_error_event,
            delay_events=fault_delay_events,
        ),
    )

    # one line per session on stderr by default; -v adds detail. Started with `&` from a terminal, the
    # log goes to a file: it would otherwise print into the live bar of the next command in that terminal.
    background = _in_background(sys.stderr)
    if log_file is None and background:
        log_file = config.private_dir(config.state_dir()) / "serve.log"
    log_stream = _open_log(log_file) if log_file is not None else sys.stderr
    session_log = logging.getLogger("dasctl.emulator")
    session_log.propagate = False
    handler = logging.StreamHandler(log_stream)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(message)s", "%H:%M:%S"))
    session_log.handlers[:] = [handler]
    verbosity = common.OPTIONS.verbosity
    session_log.setLevel(
        logging.WARNING if common.OPTIONS.quiet else logging.DEBUG if verbosity else logging.INFO
    )

    def ready(lines: list[str]) -> None:
        stop = STOP_LINE
        if background:
            # a background job is not stopped with Ctrl-C, and the terminal belongs to the next command
            stop = f"Stop with `kill {os.getpid()}` (or `kill %N`, N from `jobs`)."
        lines = [stop if line.startswith(STOP_LINE) else line for line in lines]
        for line in lines:
            print(line, file=log_stream, flush=True)
        if log_stream is not sys.stderr:
            print(f"{lines[0]}; log in {log_file}", file=sys.stderr, flush=True)
            if background:
                print(stop, file=sys.stderr, flush=True)

    try:
        asyncio.run(run(options, ready))
    except OSError as error:
        raise UsageError(
            f"cannot listen on {host}:{port}: {error.strerror or error}",
            "Is another emulator running? Pick another --port (0 = any free port).",
        ) from None
    print("emulator stopped", file=log_stream, flush=True)


def install(app: typer.Typer) -> None:
    """Add this module's commands to the application."""
    app.command("serve", help=SERVE_HELP)(serve)

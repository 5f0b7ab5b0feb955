"""Logging to stderr with every registered secret masked, at every verbosity (even -vv)."""

from __future__ import annotations

import logging
import threading
from typing import IO

_secrets: set[str] = set()
_lock = threading.Lock()
MASK = "****"


def register_secret(value: str | None) -> None:
    """Mask this value in every log line from now on (client secrets, tokens, API keys)."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Replace every registered secret in text with a mask."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFormatter(logging.Formatter):
    """Secrets masked; control characters escaped (a record quotes file names, speaker ids, service
    messages): line breaks stay only at -vv, where tracebacks need them."""

    keep_newlines = True

    def format(self, record: logging.LogRecord) -> str:
        from dasctl.safe_text import line

        return line(redact(super().format(record)), keep_newlines=self.keep_newlines)


class OneLineFormatter(RedactingFormatter):
    """Below -vv a log line stays one line: an exception is named, its traceback kept for -vv.

    Mostly for asyncio's "Task exception was never retrieved" from a library's background task as a
    command ends: the user gets one line that says where the details are, never a traceback.
    """

    keep_newlines = False

    def format(self, record: logging.LogRecord) -> str:
        if not record.exc_info:
            return super().format(record)
        error = record.exc_info[1]
        message = f"{record.getMessage()}: {type(error).__name__}: {error}".replace("\n", " ")
        line = logging.LogRecord(record.name, record.levelno, record.pathname, record.lineno,
                                 f"{message} (the traceback with -vv)", None, None)
        return super().format(line)


#: Libraries whose log lines are for debugging dasctl, not for its users ("packet queue is empty,
#: aborting" at ERROR level): shown under -vv only. python-engineio and python-socketio also add a
#: raw StreamHandler of their own unless the logger already has a level, so one is always set here.
LIBRARY_LOGGERS = ("engineio.client", "engineio.server", "socketio.client", "socketio.server")


#: the keys of a JSON log line besides ts, level and msg (what an ELK or Loki user filters on)
JSON_FIELDS = ("file", "speaker", "call_id", "outcome", "worker")


def json_line(level: str, msg: str, **fields: object) -> str:
    """One log event as a compact JSON object (ts in ISO 8601 UTC), redacted like every log line.
    Fields that are None are left out; only plain values are written (never a whole result document,
    which holds a credential)."""
    import json
    from datetime import datetime, timezone

    event: dict[str, object] = {
        "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level,
        "msg": msg,
    }
    for key, value in fields.items():
        if value is not None and isinstance(value, (str, int, float, bool, list, dict)):
            event[key] = value
    return redact(json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str))


class JsonFormatter(logging.Formatter):
    """`--log-format json`: a log record as one JSON object per line (ts, level, msg, logger, and the
    JSON_FIELDS a caller passed with `extra=`); an exception is named, its traceback only with -vv."""

    def __init__(self, tracebacks: bool = False) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {"logger": record.name}
        for key in JSON_FIELDS:
            fields[key] = getattr(record, key, None)
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            fields["error"] = f"{type(error).__name__}: {error}"
            if self.tracebacks:
                fields["traceback"] = self.formatException(record.exc_info)
        return json_line(record.levelname.lower(), message, **fields)


def configure(verbosity: int, stream: IO[str], *, log_format: str = "text") -> None:
    """-v shows dasctl's info, -vv debug from dasctl and its libraries; always redacted. log_format
    "json": one JSON object per line (JsonFormatter) instead of dasctl's text lines."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_dasctl", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler._dasctl = True  # type: ignore[attr-defined]
    if log_format == "json":
        handler.setFormatter(JsonFormatter(tracebacks=verbosity >= 2))
    else:
        formatter = RedactingFormatter if verbosity >= 2 else OneLineFormatter
        handler.setFormatter(formatter("dasctl: %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if verbosity >= 2:
        root.setLevel(logging.DEBUG)
    elif verbosity == 1:
        root.setLevel(logging.WARNING)
        logging.getLogger("dasctl").setLevel(logging.INFO)
    else:
        root.setLevel(logging.WARNING)
        logging.getLogger("dasctl").setLevel(logging.WARNING)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.setLevel(logging.DEBUG if verbosity >= 2 else logging.CRITICAL + 1)
        for own in [h for h in library.handlers if not getattr(h, "_dasctl", False)]:
            library.removeHandler(own)  # their raw, unredacted handler: our root handler covers them

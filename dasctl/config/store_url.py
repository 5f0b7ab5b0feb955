"""The credential store setting: a SQLite file path or a postgresql:// URL, its password kept out of sight."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dasctl.config.constants import POSTGRES_SCHEMES
from dasctl.errors import UsageError

if TYPE_CHECKING:
    from urllib.parse import SplitResult


def split_url(text: str, where: str, hint: str | None = None, shown: str | None = None) -> SplitResult:
    """urlsplit(text), its port checked too: a UsageError naming `where` instead of urllib's ValueError
    (an unclosed '[' is read as an IPv6 address; a port that is not a number fails only when asked for).
    `shown`: the text to name in the error instead (a store URL with its password masked)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - urllib checks the port only when it is read
    except ValueError as error:
        raise UsageError(f"{where}: {text if shown is None else shown!r} is not a valid URL ({error})",
                         hint) from None
    return parts


def parse_store_url(text: str, where: str) -> str:
    """A store: a postgresql:// URL as given, or a SQLite file path (~ expanded)."""
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        hint = "Give a file path (SQLite) or postgresql://USER@HOST/DB."
        if scheme not in POSTGRES_SCHEMES:
            raise UsageError(f"{where}: {masked_store_url(text)!r} is not a store", hint)
        split_url(text, where, hint, shown=masked_store_url(text))
        from dasctl.logs import register_secret

        register_secret(store_url_password(text))
        return text
    return str(Path(text).expanduser())


def store_url_password(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def masked_store_url(url: str) -> str:
    """A store URL fit to show: the password (in the URL or a password= parameter) masked."""
    from urllib.parse import urlsplit, urlunsplit

    from dasctl.logs import MASK

    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL urllib can read: whatever stands before an '@' may be a password
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{MASK}@{rest.rsplit('@', 1)[1]}" if "@" in rest else url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        netloc = f"{userinfo}@{host}"
    query = "&".join(
        f"{item.split('=', 1)[0]}={MASK}" if item.split("=", 1)[0].lower() == "password" else item
        for item in parts.query.split("&")
    ) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

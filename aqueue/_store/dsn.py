"""DSN handling: what aqueue accepts, and how it shows one without the password. Plain
``urllib`` parsing, so that a worker never needs SQLAlchemy loaded.

Besides ``postgresql://user:password@host:port/db?options``, libpq's (and asyncpg's) other
forms work: several hosts tried in turn (``postgresql://u@h1:5432,h2:5433/db?
target_session_attrs=read-write``) and Unix sockets (``postgresql:///db?host=/run/postgresql``).
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from ..errors import ConfigurationError

_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
_QUERY_PASSWORD = re.compile(r"(?i)((?:^|&)password=)[^&]*")


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***``, for logs and errors."""
    try:
        parts = urlsplit(dsn)
        if parts.password is not None:
            user = parts.username or ""
            host = parts.netloc.rpartition("@")[2]
            parts = parts._replace(netloc=f"{user}:***@{host}")
        parts = parts._replace(query=_QUERY_PASSWORD.sub(r"\1***", parts.query))
    except ValueError:
        return "<unparseable DSN>"
    if not parts.scheme:
        return "<unparseable DSN>"
    return _unsplit(parts)


def asyncpg_dsn(dsn: str) -> str:
    """``dsn`` as asyncpg takes it (``postgresql://``). Accepts ``postgresql://``,
    ``postgres://`` and ``postgresql+asyncpg://``; refuses anything else with a
    :class:`ConfigurationError`."""
    try:
        parts: SplitResult | None = urlsplit(dsn)
        _hosts(dsn)  # raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or not parts.scheme or "://" not in dsn:
        raise ConfigurationError(
            f"dsn is not a database URL (expected postgresql://...): {redact_dsn(dsn)}"
        )
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"dsn must be postgresql://... or postgresql+asyncpg://..., got a {parts.scheme!r} URL"
        )
    return _unsplit(parts._replace(scheme="postgresql"))


def sqlalchemy_url(dsn: str) -> str:
    """``dsn`` for SQLAlchemy's asyncpg dialect (``postgresql+asyncpg://``). Several hosts
    become the repeated ``?host=h1:5432&host=h2:5433`` it takes instead (each with its port:
    5432 where the DSN gives none, as libpq's default)."""
    parts = urlsplit(asyncpg_dsn(dsn))._replace(scheme="postgresql+asyncpg")
    hosts = _hosts(dsn)
    if len(hosts) > 1:
        if any(host.startswith("[") for host, _port in hosts):
            raise ConfigurationError(
                "app.engine cannot use a DSN with several hosts when one is an IPv6 address; "
                "name them by host name, or pass your own engine=..."
            )
        user, at, _hostlist = parts.netloc.rpartition("@")
        query = "&".join(f"host={host}:{port or 5432}" for host, port in hosts)
        parts = parts._replace(
            netloc=user + at, query=query + ("&" + parts.query if parts.query else "")
        )
    return _unsplit(parts)


def _hosts(dsn: str) -> list[tuple[str, int | None]]:
    """The ``host[:port]`` entries of the DSN's netloc (several: a multi-host DSN; one with an
    empty host: the host is in the query string, or the default). Raises ``ValueError`` on a
    port that is not a number from 1 to 65535."""
    hostlist = urlsplit(dsn).netloc.rpartition("@")[2]
    hosts: list[tuple[str, int | None]] = []
    for entry in hostlist.split(","):
        if entry.startswith("["):  # [IPv6]:port
            host, bracket, rest = entry.partition("]")
            host += bracket
            if rest and not rest.startswith(":"):
                raise ValueError(f"bad host {entry!r}")
            port = rest[1:]
        else:
            host, _colon, port = entry.partition(":")
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"bad port {port!r}")
        hosts.append((host, int(port) if port else None))
    return hosts


def _unsplit(parts: SplitResult) -> str:
    """``urlunsplit``, except that an empty host keeps its ``//`` (``postgresql:///db?host=
    /run/postgresql``: ``urlunsplit`` would make it ``postgresql:/db``, a path, not a DSN)."""
    text = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if parts.query:
        text += "?" + parts.query
    if parts.fragment:
        text += "#" + parts.fragment
    return text

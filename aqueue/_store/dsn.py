"""DSN handling: what aqueue accepts, and how it shows one without the password. Plain
``urllib`` parsing, so that a worker never needs SQLAlchemy loaded."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

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
    return urlunsplit(parts)


def asyncpg_dsn(dsn: str) -> str:
    """``dsn`` as asyncpg takes it (``postgresql://``). Accepts ``postgresql://``,
    ``postgres://`` and ``postgresql+asyncpg://``; refuses anything else with a
    :class:`ConfigurationError`."""
    try:
        parts = urlsplit(dsn)
        parts.port  # noqa: B018 - raises ValueError on a bad port
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
    return urlunsplit(parts._replace(scheme="postgresql"))


def sqlalchemy_url(dsn: str) -> str:
    """``dsn`` for SQLAlchemy's asyncpg dialect (``postgresql+asyncpg://``)."""
    return "postgresql+asyncpg" + asyncpg_dsn(dsn)[len("postgresql") :]

"""DSN handling: what aqueue accepts, and how it shows one without the password."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ConfigurationError


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***``, for logs and errors."""
    try:
        return make_url(dsn).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable DSN>"


def asyncpg_url(dsn: str) -> str:
    """``dsn`` as a SQLAlchemy asyncpg URL. Accepts ``postgresql://``, ``postgres://`` and
    ``postgresql+asyncpg://``; refuses anything else with a :class:`ConfigurationError`."""
    try:
        url = make_url(dsn)
    except ArgumentError:
        raise ConfigurationError(
            f"dsn is not a database URL (expected postgresql://...): {redact_dsn(dsn)}"
        ) from None
    if url.drivername not in ("postgresql", "postgres", "postgresql+asyncpg"):
        raise ConfigurationError(
            "dsn must be postgresql://... or postgresql+asyncpg://..., "
            f"got a {url.drivername!r} URL"
        )
    return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)

"""DSN handling: what aqueue accepts, and how it shows text without the password (the one
redaction every message aqueue writes goes through: :func:`redact`). Plain ``urllib``
parsing, so that a worker never needs SQLAlchemy loaded.

Besides ``postgresql://user:password@host:port/db?options``, libpq's (and asyncpg's) other
forms work: several hosts tried in turn (``postgresql://u@h1:5432,h2:5433/db?
target_session_attrs=read-write``) and Unix sockets (``postgresql:///db?host=/run/postgresql``).
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlsplit

from ..errors import ConfigurationError

_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
# A password shorter than this is replaced only where it stands as one (in a DSN's userinfo,
# after password=), never as a bare word: "postgres" or "secret" would turn "postgresql" into
# "***ql". Ten characters or more is unlikely to be an ordinary word of an error message.
MIN_BARE_PASSWORD_CHARS = 10
# scheme://user:PASSWORD@ (to the last @ before the path: urlsplit's reading of a userinfo).
# The lookbehind starts a match only where a scheme can start: without it a long run of
# letters is scanned once per letter (quadratic; seconds for a 100 KB exception message).
_USERINFO_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:)[^\s/]*(?=@)"
)
# password=VALUE: a query string's (to the next &) and libpq's keyword form (quoted or not),
# also PGPASSWORD=... and password="..." in a repr.
_PASSWORD_VALUE = re.compile(
    r"""(?i)(password\s*=(?!=)\s*)('(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|[^\s&'"]+)"""
)


def redact(text: str, password: str | None = None) -> str:
    """``text`` with secrets replaced by ``***``: the password of every DSN in it
    (``scheme://user:***@``), every ``password=`` value (query string or libpq keyword form,
    quoted or not), and ``password`` itself wherever it appears (also percent-encoded), if it
    has at least :data:`MIN_BARE_PASSWORD_CHARS` characters."""
    text = _USERINFO_PASSWORD.sub(r"\1***", text)
    text = _PASSWORD_VALUE.sub(r"\1***", text)
    if password and len(password) >= MIN_BARE_PASSWORD_CHARS:
        for form in {password, quote(password, safe="")}:
            text = text.replace(form, "***")
    return text


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***``, for logs and errors."""
    return redact(dsn, dsn_password(dsn))


def dsn_password(dsn: str) -> str | None:
    """The password ``dsn`` carries, in its userinfo or as ``?password=`` (``None``: none)."""
    try:
        parts = urlsplit(dsn)
        userinfo, at, _hosts = parts.netloc.rpartition("@")
    except ValueError:
        return None
    if at and ":" in userinfo:
        return unquote(userinfo.partition(":")[2]) or None
    for key, value in parse_qsl(parts.query):
        if key == "password":
            return value or None
    return None


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

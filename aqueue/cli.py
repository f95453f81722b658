"""``python -m aqueue``: run a worker, or apply migrations.

::

    python -m aqueue worker --app myproject.jobs:app --concurrency 32 --queue default
    python -m aqueue migrate --app myproject.jobs:app

Every worker setting is an option (``--lease-s``) and an environment variable
(``AQUEUE_LEASE_S``); options win. Runs on uvloop where it is installed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from .app import App
from .config import SCHEMA_DEFAULT
from .errors import AqueueError, ConfigurationError

log = logging.getLogger("aqueue")

EXIT_ABANDONED = 3  # the worker stopped, leaving handlers that ignored cancellation

_SETTINGS = (
    ("--lease-s", "lease_s", "seconds a claim holds a job without a heartbeat (default 30)"),
    ("--heartbeat-s", "heartbeat_s", "seconds between lease extensions (default lease/3)"),
    ("--poll-interval-s", "poll_interval_s", "longest sleep without a NOTIFY (default 5)"),
    (
        "--maintenance-interval-s",
        "maintenance_interval_s",
        "seconds between the leader's rescues and retention, and the others' tries to lead "
        "(default 5)",
    ),
    (
        "--shutdown-timeout-s",
        "shutdown_timeout_s",
        "seconds running jobs get to finish on SIGTERM (default 30)",
    ),
    (
        "--cancel-grace-s",
        "cancel_grace_s",
        "seconds cancelled handlers get to end before the worker leaves them (default 5)",
    ),
    (
        "--loop-block-limit-s",
        "loop_block_limit_s",
        "a loop blocked longer stops heartbeating, so its jobs get rescued (default 600)",
    ),
    (
        "--retention-s",
        "retention_s",
        "seconds completed and cancelled jobs are kept (default 86400)",
    ),
    (
        "--failed-retention-s",
        "failed_retention_s",
        "seconds failed jobs are kept (default 1209600)",
    ),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aqueue", description=__doc__.split("\n")[0])
    parser.add_argument("--log-level", default=os.environ.get("AQUEUE_LOG_LEVEL", "INFO"))
    commands = parser.add_subparsers(dest="command", required=True)

    worker = commands.add_parser("worker", help="run a worker until SIGTERM/SIGINT")
    worker.add_argument("--app", required=True, help="module:attribute of your aqueue.App")
    worker.add_argument("--dsn", help="postgresql://... (default: the app's, $AQUEUE_DSN)")
    worker.add_argument("--concurrency", type=int, help="handlers at once (default 16)")
    worker.add_argument(
        "--queue",
        action="append",
        dest="queues",
        metavar="NAME[=SLOTS]",
        help="claim from this queue (repeatable; default: every queue); NAME=SLOTS gives it "
        "that many slots of its own, a bare NAME shares --concurrency",
    )
    for flag, dest, text in _SETTINGS:
        worker.add_argument(flag, dest=dest, type=float, help=text)

    migrate = commands.add_parser("migrate", help="create or upgrade aqueue's tables")
    migrate.add_argument("--app", help="module:attribute of your aqueue.App")
    migrate.add_argument("--dsn", help="postgresql://... (default: the app's, $AQUEUE_DSN)")
    migrate.add_argument("--schema", help=f"schema without --app (default {SCHEMA_DEFAULT})")
    return parser


def load_app(spec: str) -> App:
    """Import ``module:attribute`` and return the App it names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"--app must look like module:attribute, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # an import inside the user's module failed: show the traceback
        raise ConfigurationError(f"--app {spec}: no module named {exc.name!r}") from None
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise ConfigurationError(f"{spec} is not an aqueue.App (got {type(app).__name__})")
    return app


async def _worker(args: argparse.Namespace) -> None:
    app = load_app(args.app)
    if args.dsn:
        app._override_dsn(args.dsn)
    settings: dict[str, Any] = {dest: getattr(args, dest) for _, dest, _ in _SETTINGS}
    if args.queues:
        settings["queues"] = args.queues
    app._settings(args.concurrency, settings)  # a bad setting: refused before anything opens
    try:
        stats = await app.run_worker(args.concurrency, **settings)
        log.info("worker exited: %s", stats)
        if stats.abandoned:
            # Their tasks still run: closing the pool, or the event loop's own shutdown
            # (which waits for every task), would wait for them forever.
            log.error(
                "exiting with %d handler(s) that ignored cancellation still running",
                stats.abandoned,
            )
            logging.shutdown()
            os._exit(EXIT_ABANDONED)
    finally:
        await app.close()


async def _migrate(args: argparse.Namespace) -> None:
    if args.app:
        app = load_app(args.app)
        if args.dsn:
            app._override_dsn(args.dsn)
    else:
        app = App(args.dsn, schema=args.schema or SCHEMA_DEFAULT)
    try:
        applied = await app.migrate()
        print(f"schema {app.schema}: applied {applied or 'nothing (up to date)'}")
    finally:
        await app.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    command = _worker if args.command == "worker" else _migrate
    try:
        anyio.run(command, args, backend="asyncio", backend_options=_backend_options())
    except ConfigurationError as exc:
        print(f"aqueue: {exc}", file=sys.stderr)
        return 2
    except AqueueError as exc:
        print(f"aqueue: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _backend_options() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}

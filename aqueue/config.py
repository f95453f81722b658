"""Validated settings and names. Every setting has a keyword argument (``lease_s``), a CLI
option (``--lease-s``) and an environment variable (``AQUEUE_LEASE_S``); an explicit argument
wins over the environment, which wins over the default."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError

__all__ = ["WorkerSettings"]

CONCURRENCY_DEFAULT = 16
LEASE_S_DEFAULT = 30.0
POLL_INTERVAL_S_DEFAULT = 5.0
MAINTENANCE_INTERVAL_S_DEFAULT = 5.0
SHUTDOWN_TIMEOUT_S_DEFAULT = 30.0
SCHEMA_DEFAULT = "aqueue"
QUEUE_DEFAULT = "default"
PRIORITY_DEFAULT = 10
MAX_TRIES_DEFAULT = 5
FAILURE_INFO_MAX_CHARS = 64 * 1024
MAX_PAYLOAD_BYTES_DEFAULT = 1024 * 1024
LOOP_BLOCK_LIMIT_S_DEFAULT = 600.0
CANCEL_GRACE_S_DEFAULT = 5.0
RETENTION_S_DEFAULT = 24 * 3600.0
FAILED_RETENTION_S_DEFAULT = 14 * 24 * 3600.0

# A schema is spliced into SQL text, so only a plain lower-case identifier is accepted.
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Queue names and job types travel as bound parameters; the pattern keeps them readable
# in logs and NOTIFY payloads.
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,127}")


def validate_schema(schema: str) -> str:
    if not isinstance(schema, str) or not _SCHEMA_RE.fullmatch(schema):
        raise ConfigurationError(
            f"schema must be a plain lower-case SQL identifier ([a-z_][a-z0-9_]*, "
            f"at most 63 characters), got {schema!r}"
        )
    return schema


def validate_name(kind: str, name: str) -> str:
    """Check a queue name or job type (letters, digits, ``_ . : -``; at most 128)."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigurationError(
            f"{kind} must be 1-128 characters of letters, digits and _ . : - "
            f"(not starting with . : -), got {name!r}"
        )
    return name


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """How a worker runs. Build it with :meth:`resolve`; fields are validated there.

    - ``concurrency``: handlers running at once (claims never exceed the free slots), shared
      by every queue that has no slots of its own.
    - ``queues``: queue names to claim from; ``None`` claims from every queue. Given as a
      mapping (``{"default": 16, "mail": 4}``), a list (``["default", "mail"]``), or a
      string (``"default=16,mail"``, as ``AQUEUE_QUEUES`` and the repeatable CLI
      ``--queue mail=4`` give it): a queue with a size has that many slots of its own; the
      others (size ``None``, or none given) share ``concurrency``. The worker runs up to
      the sum at once.
    - ``queue_slots``: the sized queues and their slots (derived from ``queues``).
    - ``lease_s``: how long a claim holds a job without a heartbeat; after it, any worker may
      rescue the job.
    - ``heartbeat_s``: how often running jobs' leases are extended (default ``lease_s / 3``).
    - ``poll_interval_s``: the longest the scheduler sleeps without a notification (a safety
      net for a lost NOTIFY).
    - ``maintenance_interval_s``: how often the fleet's leader rescues expired leases and
      applies retention, and how often the other workers try to take leadership.
    - ``shutdown_timeout_s``: how long a stopping worker waits for running handlers before it
      cancels them and hands their jobs back to the queue.
    - ``cancel_grace_s``: how long a stopping worker waits for the handlers it cancelled to
      end. A handler still running then ignores cancellation: the worker logs where it is
      stuck, records the attempt as failed and stops without it (default 5 s).
    - ``loop_block_limit_s``: heartbeats run in a thread of their own, so a handler that
      blocks the event loop keeps its lease; but a loop blocked longer than this (default
      10 min) is taken for hung: heartbeats stop, and its jobs get rescued.
    - ``retention_s``: how long completed and cancelled jobs are kept (default 1 day; they
      are removed up to a sixth of it later, a whole partition at a time).
    - ``failed_retention_s``: how long failed jobs are kept (default 14 days).
    """

    concurrency: int = CONCURRENCY_DEFAULT
    queues: tuple[str, ...] | None = None
    queue_slots: Mapping[str, int] = dataclasses.field(default_factory=dict)
    lease_s: float = LEASE_S_DEFAULT
    heartbeat_s: float = LEASE_S_DEFAULT / 3
    poll_interval_s: float = POLL_INTERVAL_S_DEFAULT
    maintenance_interval_s: float = MAINTENANCE_INTERVAL_S_DEFAULT
    shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S_DEFAULT
    loop_block_limit_s: float = LOOP_BLOCK_LIMIT_S_DEFAULT
    cancel_grace_s: float = CANCEL_GRACE_S_DEFAULT
    retention_s: float = RETENTION_S_DEFAULT
    failed_retention_s: float = FAILED_RETENTION_S_DEFAULT

    @classmethod
    def resolve(
        cls, overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> WorkerSettings:
        """Merge explicit ``overrides`` (``None`` values ignored) over ``AQUEUE_*`` variables
        over the defaults, and validate. Raises :class:`ConfigurationError` naming the source
        of a bad value."""
        env = os.environ if environ is None else environ
        names = {f.name for f in dataclasses.fields(cls)} - {"queue_slots"}
        unknown = set(overrides) - names
        if unknown:
            raise ConfigurationError(f"unknown worker setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name in names:
            source = f"AQUEUE_{name.upper()}"
            raw: Any = overrides.get(name)
            if raw is not None:
                source = name
            elif source in env and env[source] != "":
                raw = env[source]
            else:
                continue
            values[name] = _coerce(name, raw, source)
            sources[name] = source
        if values.get("queues") is not None:
            values["queues"], values["queue_slots"] = _queue_slots(
                values["queues"], sources["queues"]
            )
        if "heartbeat_s" not in values:
            values["heartbeat_s"] = values.get("lease_s", LEASE_S_DEFAULT) / 3
        settings = cls(**values)
        settings._validate()
        return settings

    def _validate(self) -> None:
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {self.concurrency}")
        for name in (
            "lease_s",
            "heartbeat_s",
            "poll_interval_s",
            "maintenance_interval_s",
            "loop_block_limit_s",
            "cancel_grace_s",
            "retention_s",
            "failed_retention_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.shutdown_timeout_s < 0:
            raise ConfigurationError(
                f"shutdown_timeout_s must be >= 0, got {self.shutdown_timeout_s}"
            )
        if self.heartbeat_s >= self.lease_s:
            raise ConfigurationError(
                f"heartbeat_s ({self.heartbeat_s}) must be shorter than lease_s ({self.lease_s}),"
                " or leases expire between heartbeats"
            )
        if self.queues is not None:
            if not self.queues:
                raise ConfigurationError("queues must name at least one queue, or be None")
            for queue in self.queues:
                validate_name("queue name", queue)


def queue_total(settings: WorkerSettings) -> int:
    """The most handlers the worker runs at once: the sized queues' slots, plus
    ``concurrency`` when some queue (or every queue) shares it."""
    sized = sum(settings.queue_slots.values())
    shared = settings.queues is None or any(q not in settings.queue_slots for q in settings.queues)
    return sized + (settings.concurrency if shared else 0)


def _queue_slots(items: tuple[Any, ...], source: str) -> tuple[tuple[str, ...], dict[str, int]]:
    """Queue names and the sizes of the sized ones, from ``("a", "b=4")`` or
    ``(("a", None), ("b", 4))`` entries. Raises :class:`ConfigurationError`."""
    names: list[str] = []
    slots: dict[str, int] = {}
    for item in items:
        size: Any = None
        if isinstance(item, tuple) and len(item) == 2:
            name, size = item
        elif isinstance(item, str) and "=" in item:
            name, _, size = item.partition("=")
            name, size = name.strip(), size.strip()
        else:
            name = item
        if not isinstance(name, str):
            raise ConfigurationError(f"{source}: a queue name must be a string, got {name!r}")
        validate_name("queue name", name)
        if name in names:
            raise ConfigurationError(f"{source}: queue {name!r} is named twice")
        names.append(name)
        if size is None:
            continue
        try:
            if isinstance(size, bool) or (isinstance(size, float) and size != int(size)):
                raise ValueError
            count = int(size)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{source}: queue {name!r} has slots {size!r}; give a whole number >= 1, or "
                "none to share concurrency"
            ) from None
        if count < 1:
            raise ConfigurationError(f"{source}: queue {name!r} needs at least 1 slot, got {count}")
        slots[name] = count
    return tuple(names), slots


def _coerce(name: str, raw: Any, source: str) -> Any:
    try:
        if name == "concurrency":
            if isinstance(raw, bool):
                raise TypeError
            value: Any = int(raw)
            if isinstance(raw, float) and raw != value:
                raise ValueError
            return value
        if name == "queues":
            if isinstance(raw, str):
                return tuple(q.strip() for q in raw.split(",") if q.strip())
            if isinstance(raw, Mapping):
                return tuple(raw.items())
            return tuple(raw)
        if isinstance(raw, bool):
            raise TypeError
        return float(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{source}: invalid value {raw!r} for {name}") from None

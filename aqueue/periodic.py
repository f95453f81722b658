"""Periodic jobs: the entries :meth:`aqueue.App.periodic` registers, and their schedules.

A schedule is a cron expression (parsed and stepped by ``cronsim``, in an IANA time zone
through ``zoneinfo``) or a fixed interval. Ticks are instants; the leader of the workers
(see the README's "Periodic jobs") takes each tick once, by the database's clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

from cronsim import CronSim, CronSimError
from google.protobuf.message import Message

from .config import validate_name
from .errors import ConfigurationError
from .registry import JobType

__all__ = ["PeriodicEntry"]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
EVERY_MIN = dt.timedelta(seconds=1)
ONE_SECOND = dt.timedelta(seconds=1)


@dataclasses.dataclass(frozen=True, slots=True)
class PeriodicEntry:
    """One periodic entry, as :meth:`aqueue.App.periodic` registered it (see there).

    ``name`` keys its row in the ``periodic`` table (the latest tick taken); ``cron`` with
    ``tz``, or ``every``, its schedule; ``overlap``: whether a tick enqueues while the
    entry's previous job still waits or runs."""

    name: str
    job: JobType[Message]
    payload: Message
    cron: str | None
    every: dt.timedelta | None
    tz: zoneinfo.ZoneInfo
    overlap: bool

    @classmethod
    def make(
        cls,
        job: JobType[Message],
        payload: Message,
        *,
        cron: str | None,
        every: dt.timedelta | None,
        tz: str | zoneinfo.ZoneInfo | None,
        name: str | None,
        overlap: bool,
    ) -> PeriodicEntry:
        """Validate and build an entry; :class:`ConfigurationError` names what is wrong."""
        if not isinstance(job, JobType):
            raise TypeError(f"periodic needs what @app.job returned (a JobType), got {job!r}")
        if (cron is None) == (every is None):
            raise ConfigurationError(
                f"periodic({job.name!r}): give exactly one of cron= and every="
            )
        if not isinstance(overlap, bool):
            raise TypeError(f"overlap must be a bool, got {overlap!r}")
        zone = _zone(tz, job.name)
        if every is not None:
            if not isinstance(every, dt.timedelta):
                raise TypeError(f"every must be a datetime.timedelta, got {every!r}")
            if every < EVERY_MIN:
                raise ConfigurationError(
                    f"periodic({job.name!r}): every={every} is shorter than {EVERY_MIN}"
                )
            if tz is not None:
                raise ConfigurationError(
                    f"periodic({job.name!r}): tz= applies to cron= only (every= counts from "
                    "1970-01-01 UTC)"
                )
        if cron is not None:
            if not isinstance(cron, str):
                raise TypeError(f"cron must be a str, got {cron!r}")
            try:
                CronSim(cron, dt.datetime.now(zone))
            except (CronSimError, ValueError) as exc:
                raise ConfigurationError(
                    f"periodic({job.name!r}): cron={cron!r} is not a cron expression: {exc}"
                ) from None
        entry_name = validate_name("periodic name", job.name if name is None else name)
        return cls(entry_name, job, payload, cron, every, zone, overlap)

    def latest_tick(self, now: dt.datetime) -> dt.datetime:
        """The latest tick at or before ``now`` (an aware datetime), in UTC."""
        if self.every is not None:
            return EPOCH + ((now - EPOCH) // self.every) * self.every
        assert self.cron is not None
        local = now.astimezone(self.tz)
        # cronsim steps strictly before its start: start a second later, and step once more
        # if that lands after now (now was mid-second).
        tick = next(CronSim(self.cron, local + ONE_SECOND, reverse=True))
        if tick > now:
            tick = next(CronSim(self.cron, tick, reverse=True))
        return tick.astimezone(dt.UTC)

    def next_tick(self, now: dt.datetime) -> dt.datetime:
        """The first tick strictly after ``now`` (an aware datetime), in UTC."""
        if self.every is not None:
            return self.latest_tick(now) + self.every
        assert self.cron is not None
        return next(CronSim(self.cron, now.astimezone(self.tz))).astimezone(dt.UTC)


def _zone(tz: str | zoneinfo.ZoneInfo | None, job_name: str) -> zoneinfo.ZoneInfo:
    if tz is None:
        return zoneinfo.ZoneInfo("UTC")
    if isinstance(tz, zoneinfo.ZoneInfo):
        return tz
    if not isinstance(tz, str):
        raise TypeError(f"tz must be an IANA time zone name, got {tz!r}")
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(
            f"periodic({job_name!r}): tz={tz!r} is not a time zone this host knows ({exc}); "
            "install tzdata if the system has no time zone database"
        ) from None

"""The soak's App with the lane cursors turned off, for docs/design/storage.md's comparison
(``--worker-arg=--app=benchmarks.soak_app_no_cursors:app``): the same tables, but every claim
reads each lane, and promotes delayed jobs, from the start, as a design of per-state tables
without cursors would. Not a setting of aqueue's: a measurement only."""

from __future__ import annotations

from aqueue._runtime import scheduler

from .soak_app import app, soak

__all__ = ["app", "soak"]

scheduler.USE_CURSORS = False  # every claim reads every lane from its start

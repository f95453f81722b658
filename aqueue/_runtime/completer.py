"""Completer: persists Outcomes in batches. Whatever finished while the previous batch was
being written goes out in the next statement, so batches grow with load and a lone outcome
is written at once."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from .._store.store import Store
from ..errors import DatabaseError
from .executor import Outcome, Verdict
from .logs import Throttled

log = logging.getLogger("aqueue.worker")

BATCH_MAX = 1000
RETRY_BACKOFF_MAX_S = 2.0


class Completer:
    def __init__(
        self,
        store: Store,
        worker_id: str,
        outcomes: MemoryObjectReceiveStream[Outcome],
        on_persisted: Callable[[dict[str, int]], None],
        outage_log: Throttled,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._outcomes = outcomes
        self._on_persisted = on_persisted
        self._throttled = outage_log
        self.unwritten: list[Outcome] = []

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Persist outcomes until the outcome stream is closed and drained."""
        task_status.started()
        async with self._outcomes:
            batch: list[Outcome] = []
            try:
                async for first in self._outcomes:
                    batch = [first]
                    while len(batch) < BATCH_MAX:
                        try:
                            batch.append(self._outcomes.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    await self._persist(batch)
                    batch = []
            except BaseException:
                # Cancelled: keep what is not known to be written for the worker's last try.
                self.unwritten.extend(batch)
                while True:
                    try:
                        self.unwritten.append(self._outcomes.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                raise

    async def write_once(self, batch: list[Outcome]) -> None:
        """One attempt at writing ``batch``, for the last moments of a cancelled worker."""
        try:
            self._on_persisted(await self._write(batch))
        except DatabaseError as exc:
            log.warning(
                "complete: could not write %d outcome(s) before stopping (%s); their leases "
                "will expire and the jobs will be rescued",
                len(batch),
                exc,
            )

    async def _persist(self, batch: list[Outcome]) -> None:
        # A failed write is retried until it lands: the rows stay running under our lease
        # meanwhile, and if this process dies first the lease expires and they are rescued.
        backoff = 0.05
        while True:
            try:
                counts = await self._write(batch)
            except DatabaseError as exc:
                self._throttled.warning(
                    "complete: writing %d outcome(s) failed, retrying: %s", len(batch), exc
                )
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
                continue
            self._on_persisted(counts)
            return

    async def _write(self, batch: list[Outcome]) -> dict[str, int]:
        done = [o for o in batch if o.verdict is Verdict.COMPLETE]
        failed = [o for o in batch if o.verdict is Verdict.FAIL]
        returned = [o for o in batch if o.verdict is Verdict.RETRY]
        counts = {"completed": 0, "error": 0, "failed": 0, "retried": 0, "stale": 0}
        wid = self._worker_id
        written: set[int] = set()
        if done:
            changed = await self._store.complete(
                wid, [o.job.id for o in done], [o.job.attempt for o in done]
            )
            counts["completed"] += len(changed)
            written |= changed
        if failed:
            states = await self._store.fail(
                wid,
                [o.job.id for o in failed],
                [o.job.attempt for o in failed],
                [o.delay_s for o in failed],
                [o.failure_info for o in failed],
                [o.final for o in failed],
            )
            for state in states.values():
                counts[state] += 1
            written |= states.keys()
        if returned:
            changed = await self._store.retry(
                wid, [o.job.id for o in returned], [o.job.attempt for o in returned]
            )
            counts["retried"] += len(changed)
            written |= changed
        counts["stale"] = len(batch) - sum(counts.values())
        if counts["stale"]:
            # The lease was lost (rescued by another worker): the row is no longer ours.
            log.warning(
                "complete: %d outcome(s) came after their lease was lost; the jobs "
                "belong to another attempt now and were left alone: %s",
                counts["stale"],
                sorted(o.job.id for o in batch if o.job.id not in written)[:20],
            )
        return counts

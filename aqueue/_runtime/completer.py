"""Completer: persists Outcomes in batches. Whatever finished while the previous batch was
being written goes out in the next statement, so batches grow with load.

Completions are first offered to the scheduler, whose next claim statement writes them in
the same round trip (it claims as soon as a slot frees, so that is almost always at once);
the completer writes those it has not taken after ``COMPLETE_FLUSH_S``. Failures and
hand-backs are written at once."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from .._store.store import Store, is_data_error
from ..errors import DatabaseError
from .executor import Outcome, Verdict
from .logs import Throttled

log = logging.getLogger("aqueue.worker")

BATCH_MAX = 1000
WRITE_BACKOFF_MAX_S = 2.0
COMPLETE_FLUSH_S = 0.005  # how long completions wait to ride along with a claim
MINIMAL_FAILURE_INFO_CHARS = 4096


class Completer:
    def __init__(
        self,
        store: Store,
        worker_id: str,
        on_persisted: Callable[[dict[str, int]], None],
        outage_log: Throttled,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._on_persisted = on_persisted
        self._throttled = outage_log
        self._others: list[Outcome] = []  # failures and hand-backs, written at once
        self._completions: list[Outcome] = []  # on offer to the scheduler's next claim
        self._arrived = anyio.Event()  # something was submitted or taken
        self._closed = False
        self._writing = 0  # batches being written now

    def submit(self, outcome: Outcome) -> None:
        """Queue ``outcome`` for writing (from the job's task; never blocks)."""
        if outcome.verdict is Verdict.COMPLETE:
            self._completions.append(outcome)
        else:
            self._others.append(outcome)
        self._arrived.set()

    def pending(self) -> bool:
        """Whether outcomes wait to be written, or are being written."""
        return bool(self._others or self._completions or self._writing)

    def close(self) -> None:
        """No more outcomes will come: :meth:`run` writes what it holds and returns."""
        self._closed = True
        self._arrived.set()

    # -- the scheduler's side -------------------------------------------------------------

    def take_completions(self) -> list[Outcome]:
        """Hand the completions not yet written to the caller, who writes them (with its
        claim) and reports back with :meth:`completions_written` or :meth:`give_back`."""
        taken, self._completions = self._completions[:BATCH_MAX], self._completions[BATCH_MAX:]
        if taken:
            self._arrived.set()
        return taken

    def completions_written(self, batch: list[Outcome], completed: set[int]) -> None:
        """``batch`` (taken earlier) was written; ``completed`` are the ids now completed."""
        if batch:
            self._on_persisted(self._counted(batch, {"completed": len(completed)}, completed))

    def give_back(self, batch: list[Outcome]) -> None:
        """``batch`` (taken earlier) may not have been written: write it here."""
        if batch:
            self._completions[:0] = batch
            self._arrived.set()

    def leftovers(self) -> list[Outcome]:
        """Outcomes not known to be written (after :meth:`run` was cancelled)."""
        return self._others + self._completions

    # -- its own loop ---------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Persist outcomes until :meth:`close` and everything submitted is written. If
        cancelled, what is not known to be written stays in :meth:`leftovers`."""
        task_status.started()
        while True:
            if self._others:
                await self._persist_some(self._others)
            elif self._completions:
                if not self._closed:
                    await self._offer_completions()
                if self._completions and not self._others:
                    await self._persist_some(self._completions)
            elif self._closed:
                return
            else:
                self._arrived = anyio.Event()
                await self._arrived.wait()

    async def _offer_completions(self) -> None:
        """Leave the completions to the scheduler for up to COMPLETE_FLUSH_S, unless a
        failure needs writing first."""
        with anyio.move_on_after(COMPLETE_FLUSH_S):
            while self._completions and not self._others and not self._closed:
                self._arrived = anyio.Event()
                await self._arrived.wait()

    async def _persist_some(self, pending: list[Outcome]) -> None:
        batch = pending[:BATCH_MAX]
        del pending[:BATCH_MAX]
        self._writing += 1
        try:
            await self._persist(batch)
        except BaseException:
            pending[:0] = batch  # cancelled: left for the worker's last try
            raise
        finally:
            self._writing -= 1

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

    async def _persist(self, batch: list[Outcome], *, minimal: bool = False) -> None:
        # A failed write is retried until it lands: the rows stay running under our lease
        # meanwhile, and if this process dies first the lease expires and they are rescued.
        backoff = 0.05
        while True:
            try:
                counts = await self._write(batch)
            except DatabaseError as exc:
                if is_data_error(exc):
                    await self._persist_apart(batch, exc, minimal=minimal)
                    return
                self._throttled.warning(
                    "complete: writing %d outcome(s) failed, trying again: %s", len(batch), exc
                )
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, WRITE_BACKOFF_MAX_S)
                continue
            self._on_persisted(counts)
            return

    async def _persist_apart(
        self, batch: list[Outcome], exc: DatabaseError, *, minimal: bool
    ) -> None:
        """The database refused ``batch`` for its data, and would refuse it again: write
        the halves apart until the outcome it refuses is alone; store that one with a
        minimal, ASCII-only failure_info. Nothing else waits behind it."""
        if len(batch) > 1:
            half = len(batch) // 2
            await self._persist(batch[:half], minimal=minimal)
            await self._persist(batch[half:], minimal=minimal)
            return
        (outcome,) = batch
        if outcome.verdict is Verdict.FAIL and not minimal:
            log.warning(
                "fail: the database refused the failure_info of job %d (%s); storing it in "
                "ASCII: %s",
                outcome.job.id,
                outcome.job.job_type,
                exc,
            )
            info = minimal_failure_info(outcome.failure_info, exc)
            await self._persist([dataclasses.replace(outcome, failure_info=info)], minimal=True)
            return
        log.error(
            "complete: the database refused the outcome of job %d (%s, %s) for its data; its "
            "lease will expire and it will be rescued: %s",
            outcome.job.id,
            outcome.job.job_type,
            outcome.verdict.value,
            exc,
        )
        self._on_persisted({"stale": 1})

    async def _write(self, batch: list[Outcome]) -> dict[str, int]:
        by_verdict: dict[Verdict, list[Outcome]] = {v: [] for v in Verdict}
        for outcome in batch:
            by_verdict[outcome.verdict].append(outcome)
        done = by_verdict[Verdict.COMPLETE]
        failed = by_verdict[Verdict.FAIL]
        released = by_verdict[Verdict.RELEASE]
        snoozed = by_verdict[Verdict.SNOOZE]
        counts = {
            "completed": 0,
            "error": 0,
            "failed": 0,
            "released": 0,
            "snoozed": 0,
            "stale": 0,
        }
        wid = self._worker_id
        written: set[int] = set()
        if done:
            changed = await self._store.complete(
                wid,
                [o.job.id for o in done],
                [o.job.attempt for o in done],
                [o.result for o in done],
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
        if released:
            changed = await self._store.release(
                wid, [o.job.id for o in released], [o.job.attempt for o in released]
            )
            counts["released"] += len(changed)
            written |= changed
        if snoozed:
            states = await self._store.snooze(
                wid,
                [o.job.id for o in snoozed],
                [o.job.attempt for o in snoozed],
                [o.delay_s for o in snoozed],
            )
            for state in states.values():
                # More than SNOOZE_MAX snoozes in a row end the job failed.
                counts["failed" if state == "failed" else "snoozed"] += 1
            written |= states.keys()
        return self._counted(batch, counts, written)

    @staticmethod
    def _counted(batch: list[Outcome], counts: dict[str, int], written: set[int]) -> dict[str, int]:
        """``counts`` with ``stale``: the outcomes of ``batch`` whose write changed nothing."""
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


def minimal_failure_info(info: str, exc: DatabaseError) -> str:
    """``info`` as plain ASCII (other characters spelled as escapes), bounded, with why."""
    text = info.encode("ascii", "backslashreplace").decode("ascii")
    if len(text) > MINIMAL_FAILURE_INFO_CHARS:
        text = (
            text[: MINIMAL_FAILURE_INFO_CHARS // 2]
            + " [...] "
            + text[-(MINIMAL_FAILURE_INFO_CHARS // 2) :]
        )
    reason = str(exc).encode("ascii", "backslashreplace").decode("ascii")[:500]
    return f"{text}\n[aqueue stored this failure_info in ASCII: the database refused it: {reason}]"

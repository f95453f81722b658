"""Heartbeat: extends the leases of this worker's running jobs. Beats run on the worker's
event loop over the LISTEN connection (the pool while that is down); a thread of its own
watches that loop, and while the loop is
blocked (a ``time.sleep`` in an ``async def``) beats from the thread, over a connection it
opens for that time only (so a healthy worker holds no extra connection). The thread also
names the handler that blocks the loop, and stops beating when it stays blocked past
``loop_block_limit_s``, so the jobs of a hung process get rescued. Attempts whose lease is
gone (cancelled, or rescued by another worker) are reported back to the loop.

Every beat is bounded (see ``beat_timeout_s``) and never waits on a row lock held elsewhere:
such a row is skipped, its attempt unknown for that beat rather than lost (the next beat
looks again), and a warning names it when that lasts half a lease. A beat that fails or
times out is logged (throttled) and the next one goes on; one that failed on the LISTEN
connection goes over the pool until the notifier's ping clears or replaces that connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
import types
from collections.abc import Callable

import anyio
import asyncpg

from .._store.store import Beat, Listening, Store
from ..errors import DatabaseError
from .logs import Throttled

log = logging.getLogger("aqueue.worker")

WATCH_TICK_S = 0.25  # how often the thread looks at the loop (and at a pending beat)
LOOP_BLOCKED_WARN_S = 1.0  # a loop blocked this long gets a warning naming the culprit
POKE_MIN_INTERVAL_S = 0.05  # a burst of cancel hints costs one extra beat, not many
CONNECT_TIMEOUT_S = 10.0
BEAT_TIMEOUT_MIN_S = 0.25  # a beat's statement may take this long, whatever the interval

Held = Callable[[], list[tuple[int, int]]]
Lost = Callable[[dict[tuple[int, int], str | None]], None]


class Heartbeat:
    def __init__(
        self,
        store: Store,
        worker_id: str,
        lease_s: float,
        interval_s: float,
        loop_block_limit_s: float,
        held: Held,
        on_lost: Lost,
        describe_loop: Callable[[types.FrameType | None], str],
        outage_log: Throttled,
        listening: Callable[[], Listening | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._interval_s = interval_s
        self._block_limit_s = loop_block_limit_s
        self._held = held
        self._on_lost = on_lost
        self._describe_loop = describe_loop
        self._outage_log = outage_log
        self._clock = clock
        self._listening = listening
        self._poked = anyio.Event()
        self._stop = threading.Event()
        self._acked = 0  # written by the worker's loop, read by the thread
        # Well under the lease: a beat on the LISTEN connection that times out still leaves
        # time for one over the pool, and for the next beat, before the lease runs out.
        self.beat_timeout_s = min(max(interval_s / 2, BEAT_TIMEOUT_MIN_S), lease_s / 4)
        self._unknown_since: dict[tuple[int, int], float] = {}  # rows locked elsewhere
        self._warned: set[tuple[int, int]] = set()
        self.beats = 0
        self.blocked_s = 0.0  # how long the worker's loop has been blocked now
        self.beating = True  # False while the loop is blocked past the limit

    def poke(self) -> None:
        """Check the table now (a cancel hint arrived). From the worker's loop."""
        self._poked.set()

    async def run(self) -> None:
        """Beat until cancelled, with the watching thread beside; the thread is joined
        before returning."""
        loop = asyncio.get_running_loop()
        thread = threading.Thread(
            target=self._thread_main,
            args=(loop, threading.get_ident()),
            name=f"aqueue-heartbeat-{self._worker_id}",
            daemon=True,  # never keeps a dying interpreter alive; joined below otherwise
        )
        thread.start()
        try:
            await self._beat_from_loop()
        finally:
            self._stop.set()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(thread.join, CONNECT_TIMEOUT_S + 5)

    async def _beat_from_loop(self) -> None:
        last_beat = -float("inf")
        while True:
            with anyio.move_on_after(max(0.0, last_beat + self._interval_s - self._clock())):
                await self._poked.wait()
            if self._poked.is_set():
                # A burst of cancel hints costs one extra beat, not one each; a hint that
                # arrives during a beat gets a beat of its own.
                self._poked = anyio.Event()
                await anyio.sleep(max(0.0, last_beat + POKE_MIN_INTERVAL_S - self._clock()))
            last_beat = self._clock()
            held = self._held()  # beats go on when idle: they renew the worker's lease
            ids, attempts = [h[0] for h in held], [h[1] for h in held]
            try:
                beat = await self._beat_once(ids, attempts)
            except DatabaseError as exc:
                self._outage_log.warning("%s; the next heartbeat tries again", exc)
                continue
            self.beats += 1
            self._after_beat(beat)

    async def _beat_once(self, ids: list[int], attempts: list[int]) -> Beat:
        # On the LISTEN connection while it is healthy (no pooled connection needed, and
        # none that a claim stuck on a lock could hold); else, or if that fails, on the pool.
        listening = self._listening()
        if listening is not None and not listening.failed:
            try:
                return await listening.heartbeat(
                    self._worker_id, ids, attempts, self._lease_s, self.beat_timeout_s
                )
            except DatabaseError as exc:
                self._outage_log.warning("%s; this heartbeat goes over the pool", exc)
        return await self._store.heartbeat(
            self._worker_id, ids, attempts, self._lease_s, timeout_s=self.beat_timeout_s
        )

    def _after_beat(self, beat: Beat) -> None:
        """On the worker's loop, after a beat from either side: report the lost attempts,
        and warn once about a row someone else keeps locked (its lease is not extended)."""
        now = self._clock()
        # Only attempts unknown at this beat are tracked: extended, lost or ended ones go.
        since = {a: self._unknown_since.get(a, now) for a in beat.unknown}
        self._unknown_since = since
        self._warned &= since.keys()
        for (job_id, attempt), started in since.items():
            if now - started >= self._lease_s / 2 and (job_id, attempt) not in self._warned:
                self._warned.add((job_id, attempt))
                log.warning(
                    "heartbeat: another transaction has held the row lock of job %d (attempt "
                    "%d) for %.1f s; its lease is not extended meanwhile, and once it has run "
                    "out a rescue may take the job when that lock is released",
                    job_id,
                    attempt,
                    now - started,
                )
        if beat.lost:
            self._on_lost(beat.lost)

    # -- the thread -----------------------------------------------------------------------

    def _thread_main(self, loop: asyncio.AbstractEventLoop, loop_thread: int) -> None:
        try:
            asyncio.run(self._beat_forever(loop, loop_thread))
        except BaseException:
            # A bug here must not pass silently: without heartbeats the jobs get rescued.
            log.exception("heartbeat: the heartbeat thread crashed; leases will expire")
            raise

    def _ack(self, seq: int) -> None:
        self._acked = seq

    async def _beat_forever(self, loop: asyncio.AbstractEventLoop, loop_thread: int) -> None:
        conn: asyncpg.Connection | None = None
        next_beat = 0.0
        probe_seq, probe_sent = 0, self._clock()
        warned = False
        try:
            while not self._stop.is_set():
                # Blocking here is fine: this loop runs nothing but this coroutine.
                if self._stop.wait(WATCH_TICK_S):
                    return
                now = self._clock()
                # Loop watch: a probe scheduled on the worker's loop that has not run yet
                # means the loop has been busy since it was sent.
                if self._acked >= probe_seq:
                    if warned:
                        log.warning("the event loop is running again after %.1f s", self.blocked_s)
                        warned = False
                    self.blocked_s = 0.0
                    self.beating = True
                    probe_seq += 1
                    probe_sent = now
                    try:
                        loop.call_soon_threadsafe(self._ack, probe_seq)
                    except RuntimeError:
                        return  # the worker's loop is closed
                else:
                    self.blocked_s = now - probe_sent
                if self.blocked_s >= LOOP_BLOCKED_WARN_S and not warned:
                    warned = True
                    frame = sys._current_frames().get(loop_thread)
                    log.warning(
                        "the event loop has been blocked for %.1f s by %s; heartbeats go on "
                        "from their own thread, but nothing else in this worker runs meanwhile "
                        "(run blocking calls with anyio.to_thread.run_sync)",
                        self.blocked_s,
                        self._describe_loop(frame),
                    )
                # Blocked for half an interval: the loop may be late for its next beat (it
                # beat at most an interval ago), so from here on the thread beats for it.
                if self.blocked_s < self._interval_s / 2:
                    # The loop beats for itself; a connection kept for a blocked spell goes.
                    if conn is not None and self.blocked_s == 0.0:
                        conn.terminate()
                        conn = None
                    next_beat = 0.0
                    continue
                if self.blocked_s > self._block_limit_s:
                    if self.beating:
                        self.beating = False
                        log.error(
                            "heartbeat: the event loop has been blocked for %.0f s, over "
                            "loop_block_limit_s (%.0f s); no more heartbeats, so this worker's "
                            "jobs will be rescued when their leases expire",
                            self.blocked_s,
                            self._block_limit_s,
                        )
                    continue
                if now < next_beat:
                    continue
                next_beat = now + self._interval_s
                conn = await self._beat(conn, self._held(), loop)
        finally:
            if conn is not None:
                conn.terminate()

    async def _beat(
        self,
        conn: asyncpg.Connection | None,
        held: list[tuple[int, int]],
        loop: asyncio.AbstractEventLoop,
    ) -> asyncpg.Connection | None:
        """One heartbeat; returns the connection to use next time (None: reconnect)."""
        try:
            if conn is None or conn.is_closed():
                conn = await self._store.connect_direct(CONNECT_TIMEOUT_S)
            beat = await self._store.heartbeat(
                self._worker_id,
                [h[0] for h in held],
                [h[1] for h in held],
                self._lease_s,
                timeout_s=self.beat_timeout_s,
                conn=conn,
            )
        except DatabaseError as exc:
            self._outage_log.warning("%s", exc)
            if conn is not None:
                conn.terminate()
            return None
        self.beats += 1
        # RuntimeError: the worker's loop is closed; nothing is left to cancel.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._after_beat, beat)
        return conn

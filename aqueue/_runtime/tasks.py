"""The worker's job tasks. Like ``asyncio.TaskGroup`` (one task per attempt, every one
awaited before the worker ends, an error escaping one is raised by :meth:`JobTasks.wait`), but
its final wait is bounded: a handler that ignores cancellation is left behind, named, instead
of holding the worker forever."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine
from typing import Any


class JobTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._errors: list[BaseException] = []
        self._all_done: asyncio.Event | None = None

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._errors.append(task.exception())  # type: ignore[arg-type]
        if not self._tasks and self._all_done is not None:
            self._all_done.set()

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self, timeout_s: float | None) -> list[asyncio.Task[None]]:
        """Wait until every task has ended, or ``timeout_s``; return the tasks still
        running (no longer tracked: the caller reports them). Raises the first error that
        escaped a task (a bug: job tasks catch everything their handler raises)."""
        if self._tasks:
            self._all_done = asyncio.Event()
            try:
                await asyncio.wait_for(self._all_done.wait(), timeout_s)
            except TimeoutError:
                pass
            finally:
                self._all_done = None
        left, self._tasks = list(self._tasks), set()
        if self._errors:
            raise self._errors[0]
        return left


def innermost_frames(task: asyncio.Task[Any]) -> list[types.FrameType]:
    """The frames of ``task``'s coroutine chain, outermost first (where it is suspended)."""
    frames: list[types.FrameType] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return frames

"""The worker's job tasks. Like ``asyncio.TaskGroup`` (one task per attempt, every one
awaited before the worker ends), but its final wait is bounded: a handler that ignores
cancellation is left behind, named, instead of holding the worker forever."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Coroutine
from typing import Any


class JobTasks:
    def __init__(self, *, on_error: Callable[[BaseException], None]) -> None:
        """``on_error`` is told at once of an error escaping a task (a bug: job tasks catch
        whatever their handler raises); :meth:`wait` raises the first one again at the end."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_error = on_error
        self._error: BaseException | None = None

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self._error = self._error or error
            self._on_error(error)

    async def wait(self, timeout_s: float) -> set[asyncio.Task[None]]:
        """Wait until every task has ended, or ``timeout_s``; return the tasks still
        running (no longer tracked: the caller reports them). Raises the first error that
        escaped a task."""
        left: set[asyncio.Task[None]] = set()
        if self._tasks:
            _, left = await asyncio.wait(self._tasks, timeout=timeout_s)
            self._tasks -= left
        if self._error is not None:
            raise self._error
        return left


def coroutine_frames(task: asyncio.Task[Any]) -> list[types.FrameType]:
    """The frames of ``task``'s coroutine chain where it is suspended, outermost first."""
    frames: list[types.FrameType] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return frames


def thread_frames(frame: types.FrameType | None) -> list[types.FrameType]:
    """The frames of a thread's stack from ``frame`` (its innermost) out, outermost first."""
    frames: list[types.FrameType] = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames[::-1]

"""Slots: how many handlers a worker may start, per slot group. Each queue with a size of its
own (``queues={"mail": 4}``) is a group; the queues without one (or every queue, when the
worker serves all) share the first group, of ``concurrency`` slots."""

from __future__ import annotations

from ..config import WorkerSettings


class Slots:
    def __init__(self, settings: WorkerSettings) -> None:
        queues = settings.queues
        sized = settings.queue_slots
        self._group_of: dict[str, int] = {}
        self.capacity: list[int] = []
        if queues is None or any(q not in sized for q in queues):
            self.capacity.append(settings.concurrency)  # group 0: shared
        for queue in queues or ():
            if queue in sized:
                self._group_of[queue] = len(self.capacity)
                self.capacity.append(sized[queue])
            else:
                self._group_of[queue] = 0
        self.total = sum(self.capacity)
        self.single = len(self.capacity) == 1  # one group: no lookups on the hot path
        self._used = [0] * len(self.capacity)
        # For the claim: each served queue's group, 1-based as SQL arrays are.
        self.queue_groups = None if queues is None else [self._group_of[q] + 1 for q in queues]

    def group(self, queue: str) -> int:
        # A queue not listed can only come from a worker serving every queue: group 0.
        return self._group_of.get(queue, 0)

    def take(self, queue: str) -> None:
        self._used[0 if self.single else self.group(queue)] += 1

    def give(self, queue: str) -> None:
        self._used[0 if self.single else self.group(queue)] -= 1

    def free(self) -> list[int]:
        """Free slots per group."""
        if self.single:
            return [max(self.capacity[0] - self._used[0], 0)]
        return [max(c - u, 0) for c, u in zip(self.capacity, self._used, strict=True)]

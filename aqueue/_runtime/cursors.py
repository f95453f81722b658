"""Lane cursors: how far this worker has read each lane of jobs_ready.

A claim reads each lane it serves from its cursor on, so rows claimed earlier (dead, and not
yet vacuumed while something holds the vacuum horizon) are never walked again. A row can
commit behind a cursor (its transaction took its seq before others that committed first);
every insert into jobs_ready sends, at commit, its lane and lowest seq through NOTIFY, and
:meth:`notified` moves the cursor back. Notifications that arrive while a claim is in flight
are applied after its reply, which may move the same cursors forward. When notifications may
have been lost (the LISTEN connection dropped), the cursors are dropped (:meth:`reset`) and
the next claim reads every lane from its start; and the worker's maintenance looks behind the
cursors every 10 s (off the claim path) and moves back any with rows still behind it. Rows a
claimer locked and then gave back (its claim rolled back) are never behind anyone's cursor:
a claim's cursor stops short of a row it picked and found locked (migration 0005).
"""

from __future__ import annotations

from collections.abc import Mapping


class Cursors:
    def __init__(self) -> None:
        self._at: dict[int, int] = {}
        self._behind: dict[int, int] | None = None  # notified during a claim: lane -> seq
        self._stale = False  # reset during a claim: its reply's cursors may skip rows
        self.resets = 0

    def positions(self) -> dict[int, int]:
        return dict(self._at)

    def notified(self, lane: int, seq: int) -> None:
        """Rows from ``seq`` on in ``lane`` committed (from a NOTIFY)."""
        if lane in self._at and self._at[lane] >= seq:
            self._at[lane] = seq - 1
        if self._behind is not None:
            self._behind[lane] = min(self._behind.get(lane, seq), seq)

    def claim_sent(self) -> dict[int, int]:
        """A claim starts: the cursors it reads from."""
        self._behind = {}
        self._stale = False
        return dict(self._at)

    def claim_done(self, moved: Mapping[int, int] | None) -> None:
        """The claim's reply (``moved``: the lanes' new cursors), or ``None`` when it
        failed; notifications that came meanwhile are applied on top."""
        if moved and not self._stale:
            self._at.update(moved)
        behind, self._behind = self._behind or {}, None
        for lane, seq in behind.items():
            self.notified(lane, seq)

    def reset(self) -> None:
        """Read every lane from its start at the next claim."""
        self._at.clear()
        if self._behind is not None:
            self._behind.clear()
            self._stale = True
        self.resets += 1

"""Lane cursors: moved forward by claims, back by notifications of rows committed behind
them, and dropped when notifications may have been lost."""

from __future__ import annotations

from aqueue._runtime.cursors import Cursors


def test_a_claim_moves_cursors_and_a_notification_behind_one_moves_it_back() -> None:
    cursors = Cursors()
    assert cursors.claim_sent() == {}
    cursors.claim_done({1: 10, 2: 7})
    assert cursors.positions() == {1: 10, 2: 7}
    cursors.notified(1, 11)  # ahead of the cursor: nothing to do
    cursors.notified(2, 5)  # committed behind it
    cursors.notified(3, 1)  # a lane never read: read from its start anyway
    assert cursors.positions() == {1: 10, 2: 4}


def test_a_notification_during_a_claim_is_applied_after_its_reply() -> None:
    cursors = Cursors()
    cursors.claim_done({1: 3})
    assert cursors.claim_sent() == {1: 3}
    cursors.notified(1, 2)  # a row at seq 2 committed while the claim read past it
    cursors.claim_done({1: 20})
    assert cursors.positions() == {1: 1}


def test_a_failed_claim_keeps_the_cursors_and_a_reset_drops_them() -> None:
    cursors = Cursors()
    cursors.claim_done({1: 3})
    cursors.claim_sent()
    cursors.claim_done(None)
    assert cursors.positions() == {1: 3}
    cursors.claim_sent()
    cursors.reset()  # notifications lost meanwhile: this claim's reply may skip rows
    cursors.claim_done({1: 9})
    assert cursors.positions() == {}
    assert cursors.resets == 1
    cursors.claim_sent()
    cursors.claim_done({1: 9})  # the next claim's reply counts again
    assert cursors.positions() == {1: 9}

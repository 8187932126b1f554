"""The outbox's background sender on its own (its use by the sweep's callback, outages and
checkpoints included, is in tests/faults/test_exactly_once.py): woken from idle it lets a burst
settle before writing, and neither a flush nor a close waits that out."""

from __future__ import annotations

import time
from collections import deque

from scaler.outbox import Outbox


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def sender(settle_s: float) -> tuple[Outbox, list[tuple[str, float]]]:
    sent: list[tuple[str, float]] = []
    box = Outbox(lambda kind, _: sent.append((kind, time.monotonic())), background=True)
    box.settle_s = settle_s
    box.submit("first", {})  # starts the thread, which sends at once: it was not idle
    assert box.flush(5) and [k for k, _ in sent] == ["first"]
    return box, sent


def test_woken_from_idle_the_sender_waits_for_the_burst_then_sends_it_in_order():
    box, sent = sender(settle_s=0.5)
    t0 = time.monotonic()
    for kind in ("start", "points", "end_trial"):  # what Tune's loop queues for one trial
        box.submit(kind, {})
    time.sleep(0.2)
    assert [k for k, _ in sent] == ["first"], "a write began while the burst was settling"
    wait_until(lambda: len(sent) == 4)
    assert [k for k, _ in sent] == ["first", "start", "points", "end_trial"]
    assert sent[1][1] - t0 >= 0.5
    assert not box.pending
    box.close()


def test_a_flush_does_not_wait_out_the_settling_and_a_close_leaves_the_rest_queued():
    box, sent = sender(settle_s=5.0)
    box.submit("points", {})
    t0 = time.monotonic()
    assert box.flush(10)
    assert time.monotonic() - t0 < 2.5, "the flush waited for the settling"
    assert [k for k, _ in sent] == ["first", "points"]

    box.submit("end_sweep", {})
    t0 = time.monotonic()
    box.close()  # while the sender settles: it stops without writing
    assert time.monotonic() - t0 < 2.5
    assert [k for k, _ in sent] == ["first", "points"]
    assert box.pending == deque([("end_sweep", {})])

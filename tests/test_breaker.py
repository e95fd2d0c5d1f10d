"""The circuit breaker: opens after N counted failures, one trial after the reset time,
and never serialises the calls it guards."""

from __future__ import annotations

import threading
import time

import pytest

from hefestus.analysis.breaker import Breaker, BreakerOpen
from tests.support.helpers import FakeClock


class Down(Exception):
    pass


def fail() -> None:
    raise Down()


def test_opens_after_fail_max_then_one_trial_closes_it() -> None:
    clock = FakeClock()
    b = Breaker(fail_max=2, reset_timeout=10, counts=lambda e: isinstance(e, Down), clock=clock)
    for _ in range(2):
        with pytest.raises(Down):
            b.call(fail)
    assert b.open
    with pytest.raises(BreakerOpen):
        b.call(lambda: "not called")
    clock.advance(11)
    with pytest.raises(Down):  # the half-open trial fails: open again for 10 s
        b.call(fail)
    with pytest.raises(BreakerOpen):
        b.call(lambda: "x")
    clock.advance(11)
    assert b.call(lambda: "up") == "up" and not b.open


def test_errors_that_are_not_the_dependencys_fault_do_not_count() -> None:
    b = Breaker(fail_max=1, reset_timeout=10, counts=lambda e: isinstance(e, Down), clock=FakeClock())
    for _ in range(3):
        with pytest.raises(ValueError):
            b.call(lambda: int("x"))
    assert not b.open


def test_concurrent_calls_run_concurrently() -> None:
    """pybreaker held its lock during the call: two 0.3 s calls took 0.6 s. Not here."""
    b = Breaker(fail_max=3, reset_timeout=10, counts=lambda e: True, clock=FakeClock())
    inside = threading.Barrier(2, timeout=5)
    threads = [threading.Thread(target=b.call, args=(inside.wait,)) for _ in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not inside.broken  # both were inside the guarded call at the same time
    assert time.monotonic() - started < 5

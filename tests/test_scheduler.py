"""The inference pool runs the cheapest waiting job first, and ages the others."""

from __future__ import annotations

import threading
import time

import pytest

from mlapi.scheduler import ShortestFirst, may_use_every_core, running_alone


def test_cheapest_waiting_job_runs_first_and_errors_reach_the_caller() -> None:
    pool = ShortestFirst(1)
    gate = threading.Event()
    order: list[str] = []
    pool.submit(gate.wait)  # holds the only worker while the others queue
    time.sleep(0.05)
    big = pool.submit(order.append, "photo", cost=5_000_000)
    small = pool.submit(order.append, "tile", cost=30_000)
    gate.set()
    big.result(5), small.result(5)
    assert order == ["tile", "photo"]
    failing = pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(5)
    pool.shutdown()


def test_a_big_job_that_waited_goes_before_a_fresh_small_one() -> None:
    pool = ShortestFirst(1)
    gate = threading.Event()
    order: list[str] = []
    pool.submit(gate.wait)
    big = pool.submit(order.append, "photo", cost=2_000_000)  # 10 points
    time.sleep(1.2)  # ageing: 24 points
    small = pool.submit(order.append, "tile", cost=30_000)
    gate.set()
    big.result(5), small.result(5)
    assert order == ["photo", "tile"]
    pool.shutdown()


def test_a_job_knows_whether_it_runs_alone() -> None:
    pool = ShortestFirst(2)
    assert pool.submit(running_alone).result(5) is True  # nothing else running or waiting
    started, gate = threading.Event(), threading.Event()

    def hold() -> bool:
        alone = running_alone()
        started.set()
        gate.wait(5)
        return alone

    first = pool.submit(hold)
    started.wait(5)
    second = pool.submit(running_alone)  # the other worker, while `hold` still runs
    assert second.result(5) is False
    gate.set()
    assert first.result(5) is True
    assert pool.submit(running_alone).result(5) is True  # alone again once both finished
    assert running_alone() is False  # a thread outside the pool never is
    assert may_use_every_core() is False
    pool.shutdown()


def test_a_small_job_has_an_express_worker_while_big_ones_hold_the_others() -> None:
    pool = ShortestFirst(1, express_cost=200_000)
    gate = threading.Event()
    big_running = pool.submit(gate.wait, cost=2_000_000)  # holds the only regular worker
    time.sleep(0.05)
    waiting_big = pool.submit(lambda: "photo", cost=2_000_000)  # the express worker skips it
    tile = pool.submit(lambda: ("tile", running_alone(), may_use_every_core()), cost=102_400)
    # Done while the regular worker is still held; not alone, yet it may use every core
    # (the regular workers yield to it).
    assert tile.result(5) == ("tile", False, True)
    assert not waiting_big.done()
    gate.set()
    assert big_running.result(5) is True and waiting_big.result(5) == "photo"
    pool.shutdown()

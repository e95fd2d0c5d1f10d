"""Where remediation work runs: a pool for runs, one worker for follow-ups, one timer.

Runs go to a pool of ``max_concurrent`` workers, so a ten-minute job never
holds up polling Zabbix. Follow-ups (retries, recovery checks, outcome writes
Zabbix refused for now) are timed by one timer thread and run on a single
worker of their own, so they never wait behind a long run.

Kept apart from :mod:`hefestus.remediation.engine` so the engine reads as the
life of one run, and so tests have one seam to synchronise on:
:meth:`Workers.wait_idle` instead of sleeping and hoping nothing else happens.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import structlog

from hefestus.errors import StateError
from hefestus.state.lease import LeaseLost

log = structlog.get_logger("hefestus.remediation")


class _Timer:
    """Calls small functions (they only hand work to an executor) at a monotonic time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._firing = False
        self._thread = threading.Thread(target=self._loop, name="remediation-timer", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._seq), fn))
            self._cond.notify()

    def busy(self) -> bool:
        """A callback is due now or running (one scheduled for later does not count)."""
        with self._cond:
            return self._firing or bool(self._heap and self._heap[0][0] <= time.monotonic())

    def stop(self, timeout: float | None = None) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._firing = False
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
                self._firing = True
            try:
                fn()
            except Exception:  # noqa: BLE001 - one bad callback must not stop every follow-up
                log.exception("remediation timer callback failed")


#: One piece of remediation work: a bound step with its arguments (``functools.partial``).
Task = Callable[[], None]


class Workers:
    def __init__(self, max_concurrent: int) -> None:
        self.stopping = threading.Event()
        self._runs = ThreadPoolExecutor(max_concurrent, thread_name_prefix="remediation-run")
        self._side = ThreadPoolExecutor(1, thread_name_prefix="remediation-check")
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._timer = _Timer()

    def run(self, task: Task) -> None:
        """On the run pool: a run and the following of its execution."""
        self._submit(self._runs, task)

    def side(self, task: Task) -> None:
        """On the follow-up worker: writes, retries, recovery checks."""
        self._submit(self._side, task)

    def later(self, delay: float, task: Task, *, run_pool: bool = False) -> None:
        pool = self._runs if run_pool else self._side
        self._timer.call_later(delay, lambda: self._submit(pool, task))

    def wait_idle(self, timeout: float) -> bool:
        """True once no task is queued or running and no follow-up is due; False on timeout.

        A follow-up scheduled for later (a retry in a minute, the end of a recovery window)
        does not count: it is not due. The seam tests synchronise on.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                idle = not self._futures
            if idle and not self._timer.busy():
                with self._lock:  # a due callback may have submitted meanwhile
                    if not self._futures:
                        return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self._timer.stop(timeout)
        with self._lock:
            pending = set(self._futures)
        self._runs.shutdown(wait=False, cancel_futures=True)
        self._side.shutdown(wait=False, cancel_futures=True)
        wait_futures(pending, timeout=timeout)

    def _submit(self, pool: ThreadPoolExecutor, task: Task) -> None:
        if self.stopping.is_set():
            return  # the row stays as it is: resume() picks it up at the next start
        try:
            future = pool.submit(self._guard, task)
        except RuntimeError:  # shut down meanwhile
            return
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    @staticmethod
    def _guard(task: Task) -> None:
        try:
            task()
        except LeaseLost as exc:  # a leader that lost its lease: the new leader resumes the row
            log.warning("remediation: not the leader any more; left to the new leader", error=str(exc))
        except StateError as exc:
            log.error("remediation: state store unusable", error=str(exc))
        except Exception:  # noqa: BLE001 - a worker must not die silently; the row tells resume() what is safe
            log.exception("remediation task failed", task=repr(task))

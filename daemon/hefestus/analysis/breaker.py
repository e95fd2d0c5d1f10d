"""A circuit breaker that lets concurrent calls run concurrently.

Why not pybreaker (which this project used first): its ``call`` holds the
breaker's lock for the whole wrapped call, so every model call ran one at a
time whatever ``[ollama] max_concurrency`` said — a test that expected a slow
answer not to delay a fast one caught it. Here the lock only guards the state
transitions; the call itself runs outside it.

States: *closed* (calls pass; ``fail_max`` consecutive failures open it),
*open* (calls are refused with :class:`BreakerOpen` until ``reset_timeout``
seconds passed), *half-open* (one trial call passes, others are refused;
success closes the breaker, failure opens it again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class BreakerOpen(Exception):
    """The call was not made: the breaker is open (or a half-open trial is in flight)."""


class Breaker:
    def __init__(self, *, fail_max: int, reset_timeout: float, counts: Callable[[BaseException], bool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fail_max = fail_max
        self.reset_timeout = reset_timeout
        self._counts = counts  # which exceptions are the dependency's fault
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def open(self) -> bool:
        with self._lock:
            return self._opened_at is not None and (self._trial or
                                                   self._clock() - self._opened_at < self.reset_timeout)

    def _admit(self) -> bool:
        """True when this call is the half-open trial."""
        with self._lock:
            if self._opened_at is None:
                return False
            if self._trial or self._clock() - self._opened_at < self.reset_timeout:
                raise BreakerOpen()
            self._trial = True
            return True

    def call(self, func: Callable[..., T], *args: object) -> T:
        trial = self._admit()
        try:
            result = func(*args)
        except BaseException as exc:
            with self._lock:
                self._trial = False if trial else self._trial
                if self._counts(exc):
                    self._failures += 1
                    if trial or self._failures >= self.fail_max:
                        self._opened_at = self._clock()
                elif trial:
                    self._opened_at = None  # the server answered: it is up
                    self._failures = 0
            raise
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial = False
        return result

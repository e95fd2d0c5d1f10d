"""structlog set-up: JSON lines for journald/files, readable output on a terminal.

Secrets never reach a log line: settings hold them as ``SecretStr`` (printed
as ``**********``), pyzabbix's payload logging is muted in the adapter, the
:func:`_scrub` processor masks any value whose key looks like a secret, and
the redaction processor masks secrets *inside* values (a password in a log
line quoted by an error message) with the same redactor as everything else.

The libraries' own standard-library loggers (:data:`BRIDGED`: APScheduler, uvicorn,
asyncio) are routed through structlog too, warnings and up only, so every line on
stderr is the same JSON (and redacted); and rate-limited per message, because some
repeat without end: with its file descriptors exhausted, asyncio logged an
``accept()`` EMFILE traceback 122,683 times in 20 s (50 MB of log).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

from hefestus.redact import Redactor, processor

_SECRET_KEYS = ("password", "token", "secret", "auth", "authorization", "api_key")

#: Standard-library loggers routed through structlog by :func:`setup`.
BRIDGED = ("apscheduler", "uvicorn", "asyncio")
#: Seconds during which a repeat of the same message (same logger, same first line) is
#: counted instead of logged; the next line that gets through says how many were dropped.
REPEAT_WINDOW = 10.0


class Bridge(logging.Handler):
    """A standard-library handler that logs each record through structlog, rate-limited."""

    def __init__(self, *, window: float = REPEAT_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logging.WARNING)
        self._window, self._clock = window, clock
        self._seen: dict[tuple[str, str], float] = {}
        self._dropped: Counter[tuple[str, str]] = Counter()
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string must not break logging
            message = str(record.msg)
        key = (record.name, (message.splitlines() or [""])[0][:200])
        now = self._clock()
        with self._guard:
            last = self._seen.get(key)
            if last is not None and now - last < self._window:
                self._dropped[key] += 1
                return
            if len(self._seen) > 1000:  # messages with ever-changing first lines: stay bounded
                self._seen.clear()
            self._seen[key] = now
            dropped = self._dropped.pop(key, 0)
        fields: dict[str, Any] = {"logger": record.name}
        if dropped:
            fields["repeats_not_logged"] = dropped
        if record.exc_info and record.exc_info[1] is not None:
            fields["exc_info"] = record.exc_info
        structlog.get_logger(record.name).log(record.levelno, message, **fields)


def _bridge() -> None:
    handler = Bridge()
    for name in BRIDGED:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, Bridge)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def _scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(s in key.lower() for s in _SECRET_KEYS) and key != "auth_mode":
            event[key] = "**********"
    return event


def setup(level: str = "info", fmt: str = "auto", *, redact: Redactor | None = None) -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _scrub,
            structlog.processors.format_exc_info if use_json else structlog.processors.StackInfoRenderer(),
            *([processor(redact)] if redact is not None else []),  # after exc_info: tracebacks too
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # sys.stderr looked up per logger, not frozen at set-up (tests swap it; so may a reload).
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    _bridge()

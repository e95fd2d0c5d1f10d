"""structlog set-up: JSON lines for journald/files, readable output on a terminal.

Secrets never reach a log line: settings hold them as ``SecretStr`` (printed
as ``**********``), pyzabbix's payload logging is muted in the adapter, the
:func:`_scrub` processor masks any value whose key looks like a secret, and
the redaction processor masks secrets *inside* values (a password in a log
line quoted by an error message) with the same redactor as everything else.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from hefestus.redact import Redactor, processor

_SECRET_KEYS = ("password", "token", "secret", "auth", "authorization", "api_key")


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

"""The one retry policy of the HTTP adapters: exponential backoff, transient errors only.

Shared so that Zabbix and Rundeck back off the same way (0.5 s, 1 s, 2 s ... 8 s) and
log each retry the same way; which errors count as transient is each adapter's call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential


def retrying(transient: type[BaseException], *, attempts: int, log: Any, what: str,
             sleep: Callable[[float], None] | None = None) -> Retrying:
    kwargs: dict[str, Any] = {}
    if sleep is not None:
        kwargs["sleep"] = sleep
    return Retrying(
        retry=retry_if_exception_type(transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.5, max=8),
        reraise=True,
        before_sleep=lambda rs: log.warning(
            f"{what} call failed, retrying", attempt=rs.attempt_number,
            error=str(rs.outcome.exception()) if rs.outcome else ""),
        **kwargs,
    )

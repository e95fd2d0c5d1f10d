"""Hefestus's exception tree.

Every failure that crosses a module boundary is one of these, so callers can
decide on the *kind* of failure (retry later, report and move on, refuse to
start) without knowing which library raised it. Third-party exceptions are
translated at the adapter boundary and chained with ``raise ... from exc``::

    HefestusError
    ├── ConfigError            bad hefestus.toml, rule or pattern file (file:line)
    ├── StateError             the state store is unusable (corrupt, read-only, foreign, newer)
    │   └── StateUnavailable   transient: PostgreSQL down, restarting, unreachable, busy
    ├── ZabbixError            anything the Zabbix adapter could not do
    │   ├── ZabbixUnavailable  transient: down, slow, 5xx, connection refused
    │   ├── ZabbixAuthError    credentials rejected, or a token that expired
    │   └── ZabbixRejected     the API said no to this request (permissions, bad id)
    ├── ModelError             anything the language-model adapter could not do
    │   ├── ModelUnavailable   transient: server down, hung, 5xx, broken stream
    │   ├── ModelNotFound      the server is up but the model is not pulled (404)
    │   └── ModelBadAnswer     an answer that is not valid JSON for the schema, or cut off
    ├── RundeckError           .transient .status .code .maybe_started
    │   ├── RundeckUnavailable   transient: down, slow, 5xx, 409 too many running
    │   ├── RundeckAuthError     403/401: token invalid, or lacks the ACL
    │   ├── RundeckRejected      Rundeck said no to this request (bad id, options,
    │   │                        job disabled, API version unsupported, redirect)
    │   └── RundeckProtocolError a 2xx that breaks the contract (HTML login page,
    │                            missing fields): a proxy in the way or an API change
    └── NotifyError            a chat notification was not delivered: .transient .reason
"""

from __future__ import annotations

from typing import ClassVar, Literal


class HefestusError(Exception):
    """Base of every error Hefestus raises on purpose."""


class ConfigError(HefestusError):
    """A configuration, rule or pattern file is invalid.

    ``str()`` gives ``file:line: problem`` so ops can jump straight to it.
    """

    def __init__(self, problem: str, *, path: str | None = None, line: int | None = None) -> None:
        self.problem = problem
        self.path = path
        self.line = line
        where = path or "<config>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {problem}")


class StateError(HefestusError):
    """The state store cannot be opened or written: never silently reset it."""


class StateUnavailable(StateError):
    """Transient: the PostgreSQL state database cannot be reached right now (down, restarting,
    connection cut, no free connection, statement timeout); the transaction was rolled back
    and trying again later may work. Never carries the database password."""


class ZabbixError(HefestusError):
    """Base for Zabbix adapter failures."""


class ZabbixUnavailable(ZabbixError):
    """Transient: the next poll will try again and nothing is lost."""


class ZabbixAuthError(ZabbixError):
    """Login failed or the session/token is no longer accepted."""


class ZabbixRejected(ZabbixError):
    """The API refused this particular request; retrying it unchanged won't help."""

    def __init__(self, message: str, *, code: int | None = None, data: str = "") -> None:
        self.code = code
        self.data = data
        super().__init__(message)


class ModelError(HefestusError):
    """Base for language-model failures; the pipeline falls back to patterns on any of them."""


class ModelUnavailable(ModelError):
    """Transient: counts towards opening the circuit breaker; the model is tried again later."""


class ModelNotFound(ModelError):
    """The model server answered but does not have the model: ``ollama pull`` it."""


class ModelBadAnswer(ModelError):
    """The model answered, but not with a valid, complete answer for the schema."""


class RundeckError(HefestusError):
    """Base for Rundeck adapter failures.

    ``status`` is the HTTP status (None: no answer), ``code`` Rundeck's
    ``errorCode``. ``maybe_started`` is only ever True for ``run_job``: the
    request may have reached Rundeck and the job may be running even though we
    got an error (read timeout, dropped connection, a 5xx without Rundeck's
    envelope, an unreadable 2xx). Never re-run blindly when it is set.
    """

    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 maybe_started: bool = False) -> None:
        self.status = status
        self.code = code
        self.maybe_started = maybe_started
        super().__init__(message)


class RundeckUnavailable(RundeckError):
    """Transient: trying again later may work (and for GETs the adapter already did)."""

    transient = True


class RundeckAuthError(RundeckError):
    """The token is invalid or expired (``unauthorized``), or it lacks the ACL for
    this action (``api.error.item.unauthorized``): a person must fix it."""


class RundeckRejected(RundeckError):
    """Rundeck refused this request; sending it unchanged again won't help."""


class RundeckProtocolError(RundeckError):
    """A success status with a body that breaks the contract (not JSON, fields missing)."""


#: Why a notification failed, in words a metric label can carry.
NotifyReason = Literal["rate-limited", "server-error", "client-error", "timeout", "connection",
                       "invalid-answer"]


class NotifyError(HefestusError):
    """A notifier could not deliver. Never carries the webhook URL.

    ``transient``: the same message may get through later (rate limit, 5xx,
    timeout); the dispatcher retries those only. ``reason`` is one of
    :data:`NotifyReason`, for metrics. ``code`` is the service's own error word
    (Slack's ``channel_is_archived``), ``retry_after`` the seconds the service
    asked us to wait.
    """

    def __init__(self, message: str, *, transient: bool, reason: NotifyReason, status: int | None = None,
                 code: str | None = None, retry_after: float | None = None) -> None:
        self.transient = transient
        self.reason = reason
        self.status = status
        self.code = code
        self.retry_after = retry_after
        super().__init__(message)

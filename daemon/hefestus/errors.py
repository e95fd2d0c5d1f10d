"""Hefestus's exception tree.

Every failure that crosses a module boundary is one of these, so callers can
decide on the *kind* of failure (retry later, report and move on, refuse to
start) without knowing which library raised it. Third-party exceptions are
translated at the adapter boundary and chained with ``raise ... from exc``::

    HefestusError
    ├── ConfigError            bad hefestus.toml, rule or pattern file (file:line)
    ├── StateError             the SQLite state store is unusable (corrupt, read-only)
    └── ZabbixError            anything the Zabbix adapter could not do
        ├── ZabbixUnavailable  transient: down, slow, 5xx, connection refused
        ├── ZabbixAuthError    credentials rejected, or a token that expired
        └── ZabbixRejected     the API said no to this request (permissions, bad id)
"""

from __future__ import annotations


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

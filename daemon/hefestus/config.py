"""hefestus.toml -> validated, frozen settings.

This is the one module that reads the environment. Everything is validated
once, at start-up; each component then receives only its own section.

Precedence: built-in defaults < the TOML file < ``HEFESTUS_*`` environment
variables (so systemd can keep secrets in an ``EnvironmentFile``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from . import tomlfile
from .errors import ConfigError
from .model import Severity

DEFAULT_CONFIG_PATHS = (Path("hefestus.toml"), Path("/etc/hefestus/hefestus.toml"))

#: environment variable -> (section, key)
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "HEFESTUS_ZABBIX_URL": ("zabbix", "url"),
    "HEFESTUS_ZABBIX_TOKEN": ("zabbix", "token"),
    "HEFESTUS_ZABBIX_USER": ("zabbix", "user"),
    "HEFESTUS_ZABBIX_PASSWORD": ("zabbix", "password"),
    "HEFESTUS_STATE_PATH": ("state", "path"),
    "HEFESTUS_LOG_LEVEL": ("logging", "level"),
    "HEFESTUS_LOG_FORMAT": ("logging", "format"),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


class ZabbixSettings(_Section):
    """How to reach the Zabbix API. Token auth is preferred: it never expires mid-run."""

    url: str = "http://127.0.0.1/zabbix"
    token: SecretStr | None = None
    user: str | None = None
    password: SecretStr | None = None
    timeout: PositiveSeconds = 15.0
    verify_tls: bool = True
    #: Attempts per API call on transient failures (connection refused, 5xx, timeout).
    retries: Annotated[int, Field(ge=1, le=10)] = 3

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.removesuffix("/api_jsonrpc.php").rstrip("/")

    @field_validator("token", "password", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v == "" else v

    @model_validator(mode="after")
    def _auth(self) -> ZabbixSettings:
        if self.token is None and not (self.user and self.password):
            raise ValueError(
                "no credentials: set token (HEFESTUS_ZABBIX_TOKEN) or user and password "
                "(HEFESTUS_ZABBIX_USER / HEFESTUS_ZABBIX_PASSWORD)"
            )
        return self


class IntakeSettings(_Section):
    """Which events are fetched and how the poll cursor behaves."""

    poll_interval: Annotated[float, Field(ge=1, le=3600)] = 30.0
    #: "now": only problems created after the first start; "backlog": also
    #: unacknowledged problems of the last ``backlog_hours``.
    first_start: Literal["now", "backlog"] = "now"
    backlog_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 24.0
    include_resolved: bool = True
    include_suppressed: bool = False
    min_severity: Severity = Severity.NOT_CLASSIFIED
    #: Only events of hosts in one of these host groups; empty means all.
    host_groups: tuple[str, ...] = ()
    #: Event ids re-read behind the cursor each poll: ids can become visible out of order.
    overlap_ids: Annotated[int, Field(ge=0, le=1_000_000)] = 2000
    page_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    #: Permanent failures (Zabbix refusing the write) tolerated before an event is given up.
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5

    @field_validator("min_severity", mode="before")
    @classmethod
    def _severity(cls, v: Any) -> Severity:
        try:
            return Severity.parse(v)
        except (KeyError, ValueError) as exc:
            names = ", ".join(s.label.replace(" ", "_") for s in Severity)
            raise ValueError(f"unknown severity {v!r}; use one of {names}") from exc


class AcknowledgeSettings(_Section):
    """How the suggestion is written back."""

    #: "message": add a comment only (action 4, needs "Add problem comments");
    #: "acknowledge": also mark the problem acknowledged (2|4, needs "Acknowledge problems").
    action: Literal["message", "acknowledge"] = "message"
    max_length: Annotated[int, Field(ge=200, le=2048)] = 2048
    #: Write messages for events no pattern matched (with the domain's triage steps).
    unclassified: bool = True

    @property
    def action_bits(self) -> int:
        return 4 | (2 if self.action == "acknowledge" else 0)


class ClassificationSettings(_Section):
    rules_dir: Path = Path("rules")
    patterns_dir: Path = Path("patterns")


class StateSettings(_Section):
    path: Path = Path("/var/lib/hefestus/state.db")
    #: Days a handled event is remembered in the ledger (the Zabbix-side marker check covers older ones).
    ledger_days: Annotated[int, Field(ge=1, le=3650)] = 90


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class Settings(_Section):
    zabbix: ZabbixSettings
    intake: IntakeSettings = IntakeSettings()
    acknowledge: AcknowledgeSettings = AcknowledgeSettings()
    classification: ClassificationSettings = ClassificationSettings()
    state: StateSettings = StateSettings()
    logging: LoggingSettings = LoggingSettings()
    #: Where the file was read from; relative paths in it resolve against its folder.
    source: Path = Field(default=Path("hefestus.toml"), exclude=True)

    @property
    def base_dir(self) -> Path:
        return self.source.parent

    def resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def rules_dir(self) -> Path:
        return self.resolve(self.classification.rules_dir)

    @property
    def patterns_dir(self) -> Path:
        return self.resolve(self.classification.patterns_dir)

    @property
    def state_path(self) -> Path:
        return self.resolve(self.state.path)


def find_config(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """``--config`` wins, then ``HEFESTUS_CONFIG``, then ./hefestus.toml, then /etc/hefestus/."""
    if explicit:
        return Path(explicit)
    if env.get("HEFESTUS_CONFIG"):
        return Path(env["HEFESTUS_CONFIG"])
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.exists():
            return candidate
    raise ConfigError(
        "no configuration file found (tried ./hefestus.toml and /etc/hefestus/hefestus.toml); "
        "pass --config PATH or set HEFESTUS_CONFIG"
    )


def load_settings(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge with the environment, validate. Raises :class:`ConfigError`."""
    env = os.environ if env is None else env
    data, text = tomlfile.load(path)
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"[{section}] must be a table", path=str(path))
            table[key] = env[var]
    data.setdefault("zabbix", {})
    try:
        return Settings.model_validate({**data, "source": path.resolve()})
    except pydantic.ValidationError as exc:
        raise tomlfile.validation_error(exc, path=path, text=text) from None

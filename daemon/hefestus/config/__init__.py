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

import pydantic
from pydantic import Field, model_validator

from hefestus import tomlfile
from hefestus.config.api import ApiSettings, parse_listen
from hefestus.config.sections import (
    PROMPT_PLACEHOLDERS,
    AcknowledgeSettings,
    AnalysisSettings,
    ClassificationSettings,
    ContextSize,
    DomainSettings,
    IntakeSettings,
    LoggingSettings,
    MaxTokens,
    ModelTimeout,
    NotifySettings,
    OllamaSettings,
    PositiveSeconds,
    RedactionSettings,
    RemediationSettings,
    RundeckSettings,
    Section,
    SlackSettings,
    StateSettings,
    TeamsSettings,
    Temperature,
    WebhookSettings,
    ZabbixSettings,
)
from hefestus.errors import ConfigError
from hefestus.tomlfile import Slug

__all__ = ["AcknowledgeSettings", "AnalysisSettings", "ApiSettings", "ClassificationSettings", "ContextSize", "DEFAULT_CONFIG_PATHS", "DomainSettings", "ENV_OVERRIDES", "IntakeSettings", "LoggingSettings", "MaxTokens", "ModelTimeout", "NotifySettings", "OllamaSettings", "PROMPT_PLACEHOLDERS", "PositiveSeconds", "RedactionSettings", "RemediationSettings", "RundeckSettings", "Settings", "SlackSettings", "StateSettings", "TeamsSettings", "Temperature", "WebhookSettings", "ZabbixSettings", "find_config", "load_settings", "parse_listen"]

DEFAULT_CONFIG_PATHS = (Path("hefestus.toml"), Path("/etc/hefestus/hefestus.toml"))

#: environment variable -> (section, key)
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "HEFESTUS_ZABBIX_URL": ("zabbix", "url"),
    "HEFESTUS_ZABBIX_TOKEN": ("zabbix", "token"),
    "HEFESTUS_ZABBIX_USER": ("zabbix", "user"),
    "HEFESTUS_ZABBIX_PASSWORD": ("zabbix", "password"),
    "HEFESTUS_STATE_PATH": ("state", "path"),
    "HEFESTUS_STATE_URL": ("state", "url"),
    "HEFESTUS_LOG_LEVEL": ("logging", "level"),
    "HEFESTUS_LOG_FORMAT": ("logging", "format"),
    "HEFESTUS_OLLAMA_URL": ("ollama", "url"),
    "HEFESTUS_OLLAMA_MODEL": ("ollama", "model"),
    "HEFESTUS_RUNDECK_URL": ("rundeck", "url"),
    "HEFESTUS_RUNDECK_TOKEN": ("rundeck", "token"),
    "HEFESTUS_REMEDIATION_MODE": ("remediation", "mode"),
    "HEFESTUS_API_TOKEN": ("api", "token"),
    "HEFESTUS_API_LISTEN": ("api", "listen"),
    "HEFESTUS_SLACK_WEBHOOK_URL": ("slack", "webhook_url"),
    "HEFESTUS_TEAMS_WEBHOOK_URL": ("teams", "webhook_url"),
}


class Settings(Section):
    zabbix: ZabbixSettings
    intake: IntakeSettings = IntakeSettings()
    acknowledge: AcknowledgeSettings = AcknowledgeSettings()
    classification: ClassificationSettings = ClassificationSettings()
    state: StateSettings = StateSettings()
    logging: LoggingSettings = LoggingSettings()
    ollama: OllamaSettings = OllamaSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    domains: dict[Slug, DomainSettings] = {}
    redaction: RedactionSettings = RedactionSettings()
    rundeck: RundeckSettings | None = None
    remediation: RemediationSettings = RemediationSettings()
    api: ApiSettings = ApiSettings()
    slack: SlackSettings = SlackSettings()
    teams: TeamsSettings = TeamsSettings()
    notify: NotifySettings = NotifySettings()
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

    @model_validator(mode="after")
    def _remediation_needs_rundeck(self) -> Settings:
        if self.remediation.mode == "on" and self.rundeck is None:
            raise ValueError("remediation.mode is \"on\" but there is no [rundeck] section "
                             "(url, token; or HEFESTUS_RUNDECK_URL / HEFESTUS_RUNDECK_TOKEN)")
        return self

    @property
    def extra_dictionaries(self) -> dict[str, Path]:
        """Domains whose dictionary lives outside patterns_dir ([domains.X] dictionary = ...)."""
        return {name: self.resolve(d.dictionary) for name, d in self.domains.items() if d.dictionary}


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


def load_settings(path: Path, env: Mapping[str, str] | None = None, *,
                  need_zabbix: bool = True) -> Settings:
    """Read, merge with the environment, validate. Raises :class:`ConfigError`.

    ``need_zabbix=False`` accepts a file without Zabbix credentials (offline commands).
    """
    env = os.environ if env is None else env
    data, text = tomlfile.load(path)
    overridden: dict[tuple[str, str], str] = {}  # so that an error names the variable, not a line
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"[{section}] must be a table", path=str(path))
            table[key] = env[var]
            overridden[(section, key)] = var
    data.setdefault("zabbix", {})
    try:
        return Settings.model_validate({**data, "source": path.resolve()},
                                       context={"need_zabbix": need_zabbix})
    except pydantic.ValidationError as exc:
        raise tomlfile.validation_error(exc, path=path, text=text, environment=overridden) from None

"""hefestus.toml -> validated, frozen settings.

This is the one module that reads the environment. Everything is validated
once, at start-up; each component then receives only its own section.

Precedence: built-in defaults < the TOML file < ``HEFESTUS_*`` environment
variables (so systemd can keep secrets in an ``EnvironmentFile``).
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hefestus import tomlfile
from hefestus.api.models import ApiSettings
from hefestus.classify.regex import RegexError, compile_regex
from hefestus.errors import ConfigError
from hefestus.values import Severity

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
    def _auth(self, info: ValidationInfo) -> ZabbixSettings:
        if info.context and not info.context.get("need_zabbix", True):
            return self  # `hefestus analyze` works offline, without Zabbix credentials
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


def _http_url(v: str) -> str:
    v = v.strip().rstrip("/")
    if not v.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return v


Temperature = Annotated[float, Field(ge=0, le=2)]
MaxTokens = Annotated[int, Field(ge=16, le=32768)]
ContextSize = Annotated[int, Field(ge=512, le=262144)]
ModelTimeout = Annotated[float, Field(gt=0, le=1800)]


class OllamaSettings(_Section):
    """The local model server. An empty ``model`` turns the model off: patterns only."""

    url: str = "http://127.0.0.1:11434"
    model: str = ""
    #: Seconds to wait for one answer (the ollama client has no timeout of its own).
    timeout: ModelTimeout = 120.0
    connect_timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    #: How long Ollama keeps the model loaded after a call ("5m", "1h", "-1" = forever).
    keep_alive: str = "30m"
    #: Model calls in flight at once: a small local GPU/CPU serves one or two well.
    max_concurrency: Annotated[int, Field(ge=1, le=16)] = 2
    #: Consecutive failures (down, hung, 5xx, model missing) that open the circuit breaker.
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    #: Seconds the breaker stays open before one call tries the model again.
    retry_after: Annotated[float, Field(ge=1, le=86400)] = 60.0
    temperature: Temperature = 0.2
    max_tokens: MaxTokens = 600
    num_ctx: ContextSize = 4096

    _url = field_validator("url")(classmethod(lambda cls, v: _http_url(v)))


class AnalysisSettings(_Section):
    """How pattern suggestions and model answers combine."""

    #: "pattern": never ask the model; "model-when-unclassified": ask only when no pattern
    #: matched; "model-always": always ask, giving the pattern match as a hint.
    mode: Literal["pattern", "model-when-unclassified", "model-always"] = "model-when-unclassified"
    #: Seconds a model answer is reused for events with the same fingerprint (0: no cache).
    cache_ttl: Annotated[float, Field(ge=0, le=30 * 86400)] = 6 * 3600
    #: Characters of the event's error text sent to the model (the tail is kept).
    max_error_chars: Annotated[int, Field(ge=200, le=100_000)] = 4000


PROMPT_PLACEHOLDERS = frozenset({"domain", "description"})


class DomainSettings(_Section):
    """Per-domain model parameters; unset values fall back to [ollama].

    The seed's ``domains.json`` fields map one to one: ``prompt_template``,
    ``parameters.temperature`` -> ``temperature``, ``parameters.max_tokens`` ->
    ``max_tokens``, ``dictionary_path`` -> ``dictionary``.
    """

    #: The domain instructions of the system prompt ("You are a PostgreSQL DBA ...").
    #: Placeholders: {domain}, {description}. The event itself is never templated in:
    #: Hefestus always passes it as fenced data after these instructions.
    prompt_template: str | None = None
    model: str | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    num_ctx: ContextSize | None = None
    timeout: ModelTimeout | None = None
    #: A pattern dictionary outside patterns_dir for this domain.
    dictionary: Path | None = None

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(v) if name is not None}
        except ValueError as exc:
            raise ValueError(f"invalid template: {exc} (write {{{{ and }}}} for literal braces)") from exc
        unknown = names - PROMPT_PLACEHOLDERS
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join(sorted('{' + n + '}' for n in unknown))}; "
                             f"allowed: {{domain}}, {{description}} (the event is added as data)")
        return v


class RedactionSettings(_Section):
    """Extra secret patterns (RE2) masked before anything leaves the process."""

    patterns: tuple[str, ...] = ()

    @field_validator("patterns")
    @classmethod
    def _compile(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for source in v:
            try:
                compile_regex(source)
            except RegexError as exc:
                raise ValueError(str(exc)) from None
        return v


class RundeckSettings(_Section):
    """How to reach Rundeck.

    ``api_version`` defaults to 41: the current version of Rundeck 4.0-4.8 and
    therefore accepted by every 4.x, 5.x and 6.x server (they accept 14 up to
    their own current version). Everything Hefestus calls exists since v18
    (``options`` in the run body, ``/job/{id}/info``), so 18 is the floor.
    """

    url: str
    token: SecretStr
    api_version: Annotated[int, Field(ge=18, le=99)] = 41
    timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    verify_tls: bool = True
    #: Attempts for idempotent calls (GET, abort) on transient failures; run_job: always 1.
    retries: Annotated[int, Field(ge=1, le=10)] = 3

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if re.search(r"/api(/\d+)?$", v):
            raise ValueError("give Rundeck's base URL, without /api/<version> "
                             "(the version is rundeck.api_version)")
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("is empty: set it (HEFESTUS_RUNDECK_TOKEN)")
        return v


class RemediationSettings(_Section):
    """The safety layer around Rundeck jobs. Per-rule limits in rules/ override the defaults."""

    #: "off": never decide; "dry-run": decide and report, run nothing; "on": run jobs.
    #: Env: HEFESTUS_REMEDIATION_MODE.
    mode: Literal["off", "dry-run", "on"] = "dry-run"
    #: Jobs running at once, all rules together.
    max_concurrent: Annotated[int, Field(ge=1, le=50)] = 2
    #: Seconds before the same job runs again for the same host.
    cooldown: Annotated[float, Field(ge=0, le=30 * 86400)] = 1800.0
    #: Runs of one job in any rolling hour.
    max_runs_per_hour: Annotated[int, Field(ge=1, le=1000)] = 4
    #: Consecutive failed runs of a job that open its circuit breaker...
    breaker_failures: Annotated[int, Field(ge=1, le=100)] = 3
    #: ...and the seconds it stays open (no runs of that job) before it closes.
    breaker_reset: Annotated[float, Field(ge=1, le=30 * 86400)] = 3600.0
    #: Seconds a job may run before it is aborted (a rule's timeout overrides it).
    timeout: Annotated[float, Field(ge=5, le=86400)] = 900.0
    #: First and longest wait between execution polls (backoff doubles in between).
    poll_min: Annotated[float, Field(gt=0, le=60)] = 2.0
    poll_max: Annotated[float, Field(gt=0, le=600)] = 30.0
    #: Seconds after a successful run within which the problem must resolve (closed loop).
    recovery_window: Annotated[float, Field(ge=0, le=86400)] = 600.0
    #: Lines of the job's output shown in the outcome message.
    output_lines: Annotated[int, Field(ge=0, le=100)] = 15


class WebhookSettings(_Section):
    """An incoming webhook; no URL means this notifier is off."""

    webhook_url: SecretStr | None = None
    timeout: Annotated[float, Field(gt=0, le=60)] = 10.0
    connect_timeout: Annotated[float, Field(gt=0, le=30)] = 5.0
    verify_tls: bool = True

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _url(cls, v: Any) -> Any:
        if v == "" or v is None:
            return None
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        if isinstance(raw, str) and not raw.strip().startswith("https://"):
            host = raw.strip().removeprefix("http://").split("/", 1)[0].rsplit(":", 1)[0]
            if not (raw.strip().startswith("http://") and host in ("127.0.0.1", "localhost", "[::1]")):
                raise ValueError("must be an https:// webhook URL (plain http only to a local relay)")
        return v


class SlackSettings(WebhookSettings):
    """Slack incoming webhook (https://hooks.slack.com/services/...). Env: HEFESTUS_SLACK_WEBHOOK_URL."""

    link_as_button: bool = False


class TeamsSettings(WebhookSettings):
    """Teams Workflows (or legacy connector) webhook. Env: HEFESTUS_TEAMS_WEBHOOK_URL."""


class NotifySettings(_Section):
    """Delivery of notifications: a failing webhook never blocks an acknowledgement."""

    queue_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    attempts: Annotated[int, Field(ge=1, le=10)] = 4
    backoff: Annotated[float, Field(ge=0, le=60)] = 1.0
    max_backoff: Annotated[float, Field(ge=0, le=600)] = 30.0
    max_elapsed: Annotated[float, Field(gt=0, le=3600)] = 120.0
    shutdown_timeout: Annotated[float, Field(ge=0, le=60)] = 5.0
    #: Zabbix frontend address for links in notifications (default: zabbix.url).
    frontend_url: str | None = None


class Settings(_Section):
    zabbix: ZabbixSettings
    intake: IntakeSettings = IntakeSettings()
    acknowledge: AcknowledgeSettings = AcknowledgeSettings()
    classification: ClassificationSettings = ClassificationSettings()
    state: StateSettings = StateSettings()
    logging: LoggingSettings = LoggingSettings()
    ollama: OllamaSettings = OllamaSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    domains: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")], DomainSettings] = {}
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
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"[{section}] must be a table", path=str(path))
            table[key] = env[var]
    data.setdefault("zabbix", {})
    try:
        return Settings.model_validate({**data, "source": path.resolve()},
                                       context={"need_zabbix": need_zabbix})
    except pydantic.ValidationError as exc:
        raise tomlfile.validation_error(exc, path=path, text=text) from None

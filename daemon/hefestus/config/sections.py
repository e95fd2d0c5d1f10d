"""One validated, frozen settings object per hefestus.toml section.

Each component receives only its own section; :class:`hefestus.config.Settings`
holds them all.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hefestus.classify.regex import RegexError, compile_regex
from hefestus.values import Severity


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


class ZabbixSettings(Section):
    """How to reach the Zabbix API. Token auth is preferred: it never expires mid-run."""

    url: str = "http://127.0.0.1/zabbix"
    token: SecretStr | None = None
    user: str | None = None
    password: SecretStr | None = None
    timeout: PositiveSeconds = 15.0
    verify_tls: bool = True
    #: Attempts per API call on transient failures (connection refused, 5xx, timeout).
    retries: Annotated[int, Field(ge=1, le=10)] = 3
    #: Zabbix user ids of other Hefestus instances on this Zabbix: their [Hefestus] messages
    #: count as Hefestus's (no second message), anyone else's never silence Hefestus.
    hefestus_users: tuple[Annotated[str, Field(pattern=r"^[1-9][0-9]{0,19}$")], ...] = ()

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v.strip().removesuffix("/api_jsonrpc.php"))

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


class IntakeSettings(Section):
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
    #: A problem an operator ranked as a symptom of another (Zabbix 6.4+): "point" writes one
    #: line naming its cause, "skip" writes nothing, "analyse" treats it like a cause. A
    #: symptom never starts a remediation.
    symptoms: Literal["point", "skip", "analyse"] = "point"

    @field_validator("min_severity", mode="before")
    @classmethod
    def _severity(cls, v: Any) -> Severity:
        return Severity.parse(v)


class AcknowledgeSettings(Section):
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


class ClassificationSettings(Section):
    rules_dir: Path = Path("rules")
    patterns_dir: Path = Path("patterns")


#: URL schemes of a PostgreSQL state (libpq accepts both).
POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


class StateSettings(Section):
    """Where the state lives: a SQLite file (``path``, the default) or, for several instances
    sharing it, a PostgreSQL database (``url``, which wins when set)."""

    path: Path = Path("/var/lib/hefestus/state.db")
    #: postgresql://user@host:port/dbname; the password in it, or from PGPASSWORD / ~/.pgpass.
    url: SecretStr | None = None
    #: Days a handled event is remembered in the ledger (the Zabbix-side marker check covers older ones).
    ledger_days: Annotated[int, Field(ge=1, le=3650)] = 90
    #: This instance's name in the leader lease (default: host name and pid).
    instance: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")] | None = None
    #: Seconds a leader's lease lasts without a renewal: a standby takes over after it.
    lease_ttl: Annotated[float, Field(ge=2, le=300)] = 10.0
    #: Seconds between the leader's lease renewals (less than half of lease_ttl).
    lease_heartbeat: Annotated[float, Field(gt=0, le=150)] = 2.0

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, v: Any) -> Any:
        if v is None or v == "":
            return None
        text = v.get_secret_value() if isinstance(v, SecretStr) else v
        if not isinstance(text, str) or not text.strip().startswith(POSTGRESQL_SCHEMES):
            raise ValueError("must be a PostgreSQL URL: postgresql://user@host:port/dbname "
                             "(or postgres://...); leave it out to keep the SQLite file of [state] path")
        return text.strip()

    @model_validator(mode="after")
    def _heartbeat(self) -> StateSettings:
        if self.lease_heartbeat >= self.lease_ttl / 2:
            raise ValueError(f"lease_heartbeat ({self.lease_heartbeat:g} s) must be less than half "
                             f"of lease_ttl ({self.lease_ttl:g} s), so a renewal can fail once "
                             "and still arrive in time")
        return self


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


def http_url(v: str) -> str:
    """Stripped, without a trailing slash; ValueError unless it is http:// or https://."""
    v = v.strip().rstrip("/")
    if not v.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return v


Temperature = Annotated[float, Field(ge=0, le=2)]
MaxTokens = Annotated[int, Field(ge=16, le=32768)]
ContextSize = Annotated[int, Field(ge=512, le=262144)]
ModelTimeout = Annotated[float, Field(gt=0, le=1800)]


class OllamaSettings(Section):
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

    _url = field_validator("url")(classmethod(lambda cls, v: http_url(v)))


class AnalysisSettings(Section):
    """How pattern suggestions and model answers combine."""

    #: "pattern": never ask the model; "model-when-unclassified": ask only when no pattern
    #: matched; "model-always": always ask, giving the pattern match as a hint.
    mode: Literal["pattern", "model-when-unclassified", "model-always"] = "model-when-unclassified"
    #: Seconds a model answer is reused for events with the same fingerprint (0: no cache).
    cache_ttl: Annotated[float, Field(ge=0, le=30 * 86400)] = 6 * 3600
    #: Characters of the event's error text sent to the model (the tail is kept).
    max_error_chars: Annotated[int, Field(ge=200, le=100_000)] = 4000


PROMPT_PLACEHOLDERS = frozenset({"domain", "description"})


class DomainSettings(Section):
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


class RedactionSettings(Section):
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


class RundeckSettings(Section):
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
        v = http_url(v)
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


class RemediationSettings(Section):
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


class WebhookSettings(Section):
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


class NotifySettings(Section):
    """Delivery of notifications: a failing webhook never blocks an acknowledgement."""

    queue_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    attempts: Annotated[int, Field(ge=1, le=10)] = 4
    backoff: Annotated[float, Field(ge=0, le=60)] = 1.0
    max_backoff: Annotated[float, Field(ge=0, le=600)] = 30.0
    max_elapsed: Annotated[float, Field(gt=0, le=3600)] = 120.0
    shutdown_timeout: Annotated[float, Field(ge=0, le=60)] = 5.0
    #: Zabbix frontend address for links in notifications (default: zabbix.url).
    frontend_url: str | None = None

"""The HTTP API's settings and its request/response bodies (pydantic only, no FastAPI).

Kept apart from :mod:`hefestus.api.app` so that the OpenAPI document is generated
from one place: every model here carries the descriptions and examples shown in
Swagger UI. The ``[api]`` settings are :class:`hefestus.config.api.ApiSettings`.

The analysis answer keeps the seed's shape first (``error.causa`` and
``error.solucao``, in Portuguese, plus ``message``): CI pipelines written
against the seed read those keys, so they stay, and the richer fields follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hefestus.values import Suggestion

#: The seed's success message; CI scripts may compare it verbatim.
SEED_MESSAGE = "Resolution retrieved successfully"
#: The largest event id accepted: 2**53 - 1, a positive 64-bit integer that every JSON reader
#: holds exactly (the webhook is JavaScript; JSON Schema tools compare as doubles, and near
#: 2**63 every integer within 1,024 rounds to the same double, so a bound there is fuzzy).
#: Zabbix allocates event ids from 1 upwards: real ones are many orders of magnitude below.
MAX_EVENTID = 2**53 - 1


# -- request ------------------------------------------------------------------------------


class ErrorReport(BaseModel):
    """The seed's request body. Unknown keys are ignored: old scripts may send more."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"error_details": "FATAL:  sorry, too many clients already", "context": "nightly ETL job"}]})

    error_details: str = Field(
        min_length=1, pattern=r"\S", strict=True,
        description="The error text: a log line, command output or exception message.")
    context: str = Field(
        default="", strict=True,
        description="Anything that helps: job name, what was being done. Given to the model only.")


class ZabbixPush(BaseModel):
    """What the Zabbix webhook media type (deploy/zabbix/) posts for a new problem."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"eventid": "4521", "event_value": "1", "trigger_id": "23110", "host": "web-1",
         "severity": "High", "name": "nginx is down"}]})

    eventid: int = Field(gt=0, le=MAX_EVENTID,
                         description="{EVENT.ID} of the problem: a positive 64-bit integer, "
                                     "as a JSON number or a string of digits.")
    event_value: str = Field(default="1", description="{EVENT.VALUE}: 1 problem, 0 recovery.")

    @field_validator("eventid", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        """An integer (``4521.0`` is one, for JSON Schema) or a string of digits, and nothing
        else: pydantic alone would read ``true`` as 1, so a broken webhook would wake the
        poller with a made-up id."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError("must be a positive integer (a JSON number or a string of digits)")


class Queued(BaseModel):
    status: str = Field(description='"queued": the event is handled by an immediate poll cycle; '
                                    '"ignored": not a problem event (recoveries are not handled).')
    eventid: int


# -- responses ----------------------------------------------------------------------------


class SeedError(BaseModel):
    causa: str = Field(description="Likely cause (seed key, Portuguese for 'cause').")
    solucao: str = Field(description="The steps as one numbered text (seed key: 'solution').")


class Resolution(BaseModel):
    """Cause and fix for one error text."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "error": {"causa": "PostgreSQL reached max_connections.",
                  "solucao": "1. SELECT count(*) FROM pg_stat_activity;"},
        "message": SEED_MESSAGE, "domain": "database", "category": "too-many-connections",
        "source": "pattern database:pg-too-many-clients", "confidence": 0.95,
        "cause": "PostgreSQL reached max_connections.",
        "solution": ["SELECT count(*) FROM pg_stat_activity;"], "note": ""}]})

    error: SeedError
    message: str = Field(description=f"Always {SEED_MESSAGE!r} (seed compatibility).")
    domain: str
    category: str | None = Field(description="Matched category; null when no pattern matched.")
    source: str = Field(description='"pattern <domain>:<id>", "model <name>" or "no pattern".')
    confidence: float = Field(ge=0, le=1)
    cause: str
    solution: list[str] = Field(description="The steps, in order.")
    note: str = Field(description="Why the model was not used or not trusted; empty when all went well.")

    @classmethod
    def of(cls, s: Suggestion) -> Resolution:
        numbered = "\n".join(f"{i}. {step}" for i, step in enumerate(s.steps, 1))
        return cls(error=SeedError(causa=s.cause, solucao=numbered), message=SEED_MESSAGE,
                   domain=s.classification.domain, category=s.classification.category,
                   source=s.source, confidence=min(max(s.confidence, 0.0), 1.0), cause=s.cause,
                   solution=list(s.steps), note=s.note)


class DomainInfo(BaseModel):
    name: str
    description: str


class Domains(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"domains": [{"name": "database", "description": "PostgreSQL, MySQL"}]}]})

    domains: list[DomainInfo]


class Component(BaseModel):
    ok: bool
    required: bool = Field(description="Whether /readyz fails when this component is down.")
    detail: str


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "degraded", "components": {
        "zabbix": {"ok": True, "required": True, "detail": "API 6.0.30"},
        "model": {"ok": False, "required": False, "detail": "Ollama unreachable"}}}]})

    status: str = Field(description='"ok", "degraded" (an optional component is down) or "down".',
                        pattern="^(ok|degraded|down)$")
    components: dict[str, Component]


class Ready(BaseModel):
    status: str = Field(pattern="^(ready|not ready)$")
    failing: dict[str, str] = Field(description="Required components that are down, and why.")
    role: Literal["leader", "standby"] = Field(
        "leader", description="Among instances sharing one PostgreSQL state, only the leader polls "
        "Zabbix and acts; a standby serves the API and takes over when the leader's lease runs out. "
        "A single instance is always the leader.")


class Live(BaseModel):
    status: str = Field(pattern="^alive$")


# -- errors -------------------------------------------------------------------------------


class ApiError(BaseModel):
    """Every error answer: a sentence for humans, plus what else helps (fields, domains)."""

    error: str


class UnknownDomain(ApiError):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"error": "unknown domain 'nosql'", "domains": ["database", "linux"]}]})

    domains: list[str]


class FieldProblem(BaseModel):
    field: str = Field(description='Where: "error_details", "context", "body", ...')
    problem: str
    type: str = Field(description="Machine-readable kind (pydantic's error type).")


class InvalidRequest(ApiError):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"error": "invalid request body",
         "details": [{"field": "error_details", "problem": "Field required", "type": "missing"}]}]})

    details: list[FieldProblem]



_FRIENDLY = {
    "missing": "required",
    "string_type": "must be a string",
    "string_too_short": "must not be empty or blank",
    "string_pattern_mismatch": "must not be empty or blank",
    "model_attributes_type": "must be a JSON object",
}


def invalid_request(errors: Sequence[Any]) -> tuple[int, InvalidRequest]:
    """FastAPI's validation errors -> (400 or 422, a body that names each field).

    400: the body is not JSON at all (malformed, or sent as another content type);
    422: JSON of the wrong shape. The input is never echoed: it can hold secrets.
    """
    details, status = [], 422
    for e in errors:
        loc = [str(part) for part in e.get("loc", ()) if part not in ("body", "path", "query")]
        kind = str(e.get("type", "invalid"))
        problem = _FRIENDLY.get(kind, str(e.get("msg", "invalid")))
        if kind == "json_invalid":
            status, loc = 400, []
            problem = f"malformed JSON: {e.get('ctx', {}).get('error', 'decode error')}"
            problem += f" at character {e['loc'][1]}" if len(e.get("loc", ())) > 1 else ""
        elif not loc and isinstance(e.get("input"), (bytes, bytearray)):
            status, problem = 400, "the body must be JSON, sent with Content-Type: application/json"
        elif not loc and kind == "missing":
            problem = "a JSON object with error_details is required"
        details.append(FieldProblem(field=".".join(loc) or "body", problem=problem, type=kind))
    what = "request body is not JSON" if status == 400 else "invalid request"
    return status, InvalidRequest(error=what, details=details)

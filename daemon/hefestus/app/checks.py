"""What `hefestus check`, readiness and the start-up log say about each dependency.

Pure functions over clients the composition root built: a check never builds an
adapter itself, and the CLI only prints the lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import structlog

from hefestus.classify.knowledge import Knowledge
from hefestus.config import Settings
from hefestus.errors import HefestusError, ModelError
from hefestus.remediation.checks import CheckLine, JobCatalog, check_jobs
from hefestus.remediation.rules import RemediationRules

log = structlog.get_logger("hefestus")


class ModelServer(Protocol):
    @property
    def url(self) -> str: ...

    def models(self) -> list[str]: ...


class ZabbixAccess(Protocol):
    def connect(self) -> str: ...

    def permissions(self) -> dict[str, Any]: ...

    def group_ids(self, names: Sequence[str]) -> tuple[str, ...]: ...


def model_status(model: ModelServer | None, names: list[str]) -> tuple[bool, str]:
    """(ok, what to tell ops) for the configured models: tells "model not pulled" apart
    from "server down", using /api/tags."""
    if model is None:
        return True, "no model configured ([ollama] model): pattern suggestions only"
    try:
        have = model.models()
    except ModelError as exc:
        return False, f"{exc}; events get pattern suggestions until it is back"
    missing = [n for n in names if _tag(n) not in {_tag(h) for h in have}]
    if missing:
        return False, (f"Ollama at {model.url} is up but does not have {', '.join(missing)} "
                       f"(run `ollama pull {missing[0]}`; it has: {', '.join(have) or 'no models'})")
    return True, f"Ollama at {model.url} has {', '.join(names)}"


def _tag(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def model_names(settings: Settings) -> list[str]:
    names = [settings.ollama.model] + [d.model for d in settings.domains.values() if d.model]
    return list(dict.fromkeys(n for n in names if n))


def rundeck_status(rundeck: JobCatalog | None, rules: RemediationRules, settings: Settings
                   ) -> tuple[bool, str]:
    """(ok, detail) for readiness and the start-up log: token, API version, mapped jobs."""
    lines = check_jobs(rundeck, rules, mode=settings.remediation.mode,
                       api_version=settings.rundeck.api_version if settings.rundeck else 0)
    for status, what, detail in lines:
        (log.warning if status != "ok" else log.info)("rundeck check", status=status, what=what,
                                                      detail=detail)
    failed = [f"{what}: {detail}" for status, what, detail in lines if status == "FAIL"]
    return (not failed, "; ".join(failed) if failed
            else f"mode {settings.remediation.mode}, {len(lines)} check(s) passed")


def run_checks(settings: Settings, knowledge: Knowledge, remediation: RemediationRules, *, model: ModelServer | None,
               rundeck: JobCatalog | None, zabbix: ZabbixAccess, state: str) -> Iterator[CheckLine]:
    """Every line of `hefestus check`, in order: configuration, dictionaries, rules, model,
    self-healing, state, Zabbix and the Zabbix user's permissions."""
    yield "ok", "configuration", str(settings.source)
    for domain in knowledge.catalog.domains:
        d = knowledge.catalog[domain]
        engine = "Hyperscan prefilter, RE2 confirms" if d.engine == "hyperscan" else "RE2"
        yield "ok", f"patterns {domain}", f"{len(d)} patterns ({d.path}); engine: {engine}"
    yield "ok", "rules", f"{len(knowledge.router.rules)} rules, default {knowledge.router.default!r}"
    if settings.analysis.mode == "pattern":
        yield "ok", "model", "analysis.mode = \"pattern\": the model is never asked"
    else:
        model_ok, detail = model_status(model, model_names(settings))
        yield "ok" if model_ok else "FAIL", "model", detail
    yield from check_jobs(rundeck, remediation, mode=settings.remediation.mode,
                          api_version=settings.rundeck.api_version if settings.rundeck else 0)
    yield "ok", "state", state
    try:
        version = zabbix.connect()
        yield "ok", "zabbix", f"{settings.zabbix.url} (API {version})"
        perms = zabbix.permissions()
        yield "ok", "zabbix user", f"{perms['user']} (role {perms.get('role', '?')})"
        need = ["comment"] + (["acknowledge"] if settings.acknowledge.action == "acknowledge" else [])
        labels = {"comment": "Add problem comments", "acknowledge": "Acknowledge problems"}
        for right in need:
            if perms[right] is None:
                yield "warn", f"permission '{labels[right]}'", "cannot read the role's rules; check it in the UI"
            elif perms[right]:
                yield "ok", f"permission '{labels[right]}'", ""
            else:
                yield "FAIL", f"permission '{labels[right]}'", "the role forbids it: Hefestus cannot write"
        if settings.intake.host_groups:
            zabbix.group_ids(settings.intake.host_groups)
            yield "ok", "host groups", ", ".join(settings.intake.host_groups)
    except HefestusError as exc:
        yield "FAIL", "zabbix", str(exc)

"""The HTTP API: the seed's ``POST /api/errors/{domain}``, probes, metrics and docs.

======================  ====  =====================================================
route                   auth  what
======================  ====  =====================================================
POST /api/errors/{d}    yes   cause and fix for one error text (seed-compatible)
GET  /api/domains       yes   the pattern dictionaries, with descriptions
GET  /api/health        yes   every component, for humans and dashboards (always 200)
GET  /readyz            yes   503 while a component of ``ready_requires`` is down
GET  /healthz           no    liveness: 200 while the process serves
GET  /metrics           yes   Prometheus text (or OpenMetrics, by Accept)
GET  /openapi.json      docs  this API's OpenAPI document
GET  /swagger/...       docs  Swagger UI, every asset served from the installed package
======================  ====  =====================================================

The app only talks to an :class:`ApiService`; :mod:`hefestus.app.build` gives it the
live dictionaries and the analyzer. The token and body-size checks run before
FastAPI parses anything (:mod:`hefestus.api.middleware`); request bodies and
headers are never logged: error texts can hold secrets. Request and response
bodies are in :mod:`hefestus.api.models`; :func:`serve` is in :mod:`hefestus.api.server`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal, Protocol

import structlog
from fastapi import Body, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.exceptions import HTTPException

from hefestus import __version__
from hefestus.api.middleware import BODY_DEADLINE, Guard, Observe, http_metrics
from hefestus.api.middleware import json_response as _json
from hefestus.api.models import (
    ApiError,
    Component,
    DomainInfo,
    Domains,
    ErrorReport,
    Health,
    InvalidRequest,
    Live,
    Queued,
    Ready,
    Resolution,
    UnknownDomain,
    ZabbixPush,
    invalid_request,
)
from hefestus.api.server import Server, serve
from hefestus.config.api import ApiSettings
from hefestus.errors import HefestusError
from hefestus.values import Suggestion

log = structlog.get_logger("hefestus.api.app")

#: The default registry for /metrics; other modules may register their collectors here.
registry = CollectorRegistry()

#: Swagger UI 5 (renders OpenAPI 3.1) as shipped by the fastapi-offline wheel: no CDN at run time.
SWAGGER_ASSETS = FsPath(str(resources.files("fastapi_offline") / "static"))


class ApiService(Protocol):
    """What the API needs from the daemon. Methods are called on worker threads."""

    def domains(self) -> dict[str, str]:
        """Domain name -> its dictionary's description (the live set: it changes on reload)."""
        ...

    def analyze(self, domain: str, error_details: str, context: str) -> Suggestion:
        """Cause and steps for one error text; may block for seconds while the model thinks."""
        ...

    def push(self, eventid: int) -> bool:
        """A webhook announced a new problem: poll now. False when nothing polls (``hefestus serve``)."""
        ...

    def readiness(self) -> dict[str, tuple[bool, str]]:
        """Component ("zabbix", "model", "rundeck") -> (ok, detail). Should answer fast:
        from the last known state, or with short timeouts (probes call it every few seconds)."""
        ...


class _Refusal(Exception):
    """An answer decided in an endpoint: status and a JSON body from :mod:`api_models`."""

    def __init__(self, status: int, body: ApiError) -> None:
        self.status, self.body = status, body


_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ApiError, "description": "Bearer token missing or wrong (when [api] token is set)."}}


def create_app(service: ApiService, settings: ApiSettings, *,
               metrics: CollectorRegistry | None = None,
               body_deadline: float = BODY_DEADLINE) -> FastAPI:
    """The ASGI app; ``metrics`` defaults to the module's :data:`registry`."""
    reg = registry if metrics is None else metrics
    if settings.token is None and not settings.loopback:
        log.warning("the API has no token but listens beyond this machine: anyone who reaches "
                    "it can use it; set [api] token (HEFESTUS_API_TOKEN)", listen=settings.listen)
    app = _App(title="Hefestus API", version=__version__, description=_DESCRIPTION,
               docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None,
               generate_unique_id_function=lambda route: route.name,  # operationId "analyze", ...
               bearer=settings.token is not None)

    @app.post("/api/errors/{domain}", tags=["analysis"], summary="Cause and fix for one error text",
              response_model=Resolution, response_description="The likely cause and the steps to fix it.",
              responses={
                  **_AUTH,
                  400: {"model": InvalidRequest, "description": "The body is not valid JSON."},
                  404: {"model": UnknownDomain, "description": "No dictionary for this domain."},
                  413: {"model": ApiError, "description": "Body larger than [api] max_body_bytes."},
                  422: {"model": InvalidRequest, "description": "A field is missing, empty or of the wrong type."},
                  503: {"model": ApiError, "description": "Hefestus could not analyse now (see its log)."}})
    def analyze(domain: Annotated[str, Path(description="A pattern dictionary (see /api/domains).",
                                            examples=["database", "linux"])],
                report: Annotated[ErrorReport, Body()]) -> Resolution:
        """Classifies the text with the domain's patterns and, depending on `[analysis] mode`,
        asks the local model. The first two keys keep the seed's shape for existing CI scripts."""
        known = service.domains()
        if domain not in known:
            shown = domain if len(domain) <= 80 else domain[:80] + "..."
            raise _Refusal(404, UnknownDomain(error=f"unknown domain {shown!r}", domains=sorted(known)))
        return Resolution.of(service.analyze(domain, report.error_details, report.context))

    @app.post("/api/zabbix/events", tags=["intake"], status_code=202, response_model=Queued,
              summary="Push intake from the Zabbix webhook media type",
              responses={**_AUTH,
                         400: {"model": InvalidRequest, "description": "The body is not valid JSON."},
                         413: {"model": ApiError, "description": "Body larger than [api] max_body_bytes."},
                         422: {"model": InvalidRequest, "description": "eventid is missing or not a positive 64-bit integer."},
                         503: {"model": ApiError, "description": "This Hefestus does not poll "
                                                                 "Zabbix (`hefestus serve`)."}})
    def push(event: Annotated[ZabbixPush, Body()]) -> JSONResponse:
        """Wakes the poller at once instead of at the next interval. The event is handled by
        the normal poll cycle, so a lost webhook is still caught by polling and a webhook
        that arrives twice, or races a poll, never yields a second message."""
        if event.event_value != "1":
            return _json(202, Queued(status="ignored", eventid=event.eventid).model_dump())
        if not service.push(event.eventid):
            raise _Refusal(503, ApiError(error="this Hefestus does not poll Zabbix (hefestus serve)"))
        return _json(202, Queued(status="queued", eventid=event.eventid).model_dump())

    @app.get("/api/domains", tags=["analysis"], summary="The pattern dictionaries", responses={**_AUTH})
    def domains() -> Domains:
        return Domains(domains=[DomainInfo(name=n, description=d) for n, d in sorted(service.domains().items())])

    @app.get("/api/health", tags=["operations"], summary="Every component's state", responses={**_AUTH})
    def health() -> Health:
        """Always 200 when Hefestus answers: the state is in the body. Probes use /readyz."""
        components = _components(service, settings)
        down = {n for n, c in components.items() if not c.ok}
        status = "ok" if not down else "down" if any(components[n].required for n in down) else "degraded"
        return Health(status=status, components=components)

    @app.get("/readyz", tags=["operations"], summary="Readiness probe", response_model=Ready,
             responses={**_AUTH, 503: {"model": Ready, "description": "A required component is down."}})
    def readyz() -> JSONResponse:
        components = _components(service, settings)
        failing = {n: c.detail for n, c in components.items() if c.required and not c.ok}
        # The leadership component's detail opens with the role (hefestus.app.leader.describe).
        lead = components.get("leadership")
        role: Literal["leader", "standby"] = "standby" if lead is not None and lead.detail.startswith("standby") else "leader"
        body = Ready(status="not ready" if failing else "ready", failing=failing, role=role)
        return _json(503 if failing else 200, body.model_dump())

    @app.get("/healthz", tags=["operations"], summary="Liveness probe (no token needed)",
             openapi_extra={"security": []})
    async def healthz() -> Live:
        return Live(status="alive")

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response,
             responses={**_AUTH, 200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                       "description": "Prometheus text format."}})
    def prometheus(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(reg), media_type=content_type)

    _add_docs(app)
    _add_error_handlers(app)
    app.add_middleware(Guard, token=settings.token.get_secret_value() if settings.token else None,
                       public=_public_paths(settings), max_body=settings.max_body_bytes,
                       body_deadline=body_deadline)
    app.add_middleware(Observe, metrics=http_metrics(reg))
    return app


def _components(service: ApiService, settings: ApiSettings) -> dict[str, Component]:
    report = service.readiness()
    out = {name: Component(ok=ok, required=name in settings.ready_requires, detail=detail)
           for name, (ok, detail) in sorted(report.items())}
    for name in settings.ready_requires:
        out.setdefault(name, Component(ok=False, required=True, detail="not reported by Hefestus"))
    return out


class _App(FastAPI):
    """FastAPI whose OpenAPI document declares the bearer scheme when a token is set."""

    def __init__(self, *, bearer: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bearer = bearer

    def openapi(self) -> dict[str, Any]:
        fresh = self.openapi_schema is None
        schema = super().openapi()
        if fresh and self._bearer:
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "The [api] token of hefestus.toml (HEFESTUS_API_TOKEN)."}}
            schema["security"] = [{"bearer": []}]
        return schema


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at the seed's /swagger/index.html. Every URL in the page is relative, so it
    works behind a reverse proxy under any prefix and never leaves this server."""

    @app.get("/swagger/index.html", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="../openapi.json", title="Hefestus API", swagger_js_url="swagger-ui-bundle.js",
            swagger_css_url="swagger-ui.css", swagger_favicon_url="favicon.png",
            swagger_ui_parameters={"validatorUrl": None, "tryItOutEnabled": True})

    for path, target in (("/swagger", "swagger/index.html"), ("/swagger/", "index.html"),
                         ("/docs", "swagger/index.html")):  # relative: right behind any proxy prefix
        app.add_api_route(path, _redirect(target), methods=["GET"], include_in_schema=False)

    app.mount("/swagger", StaticFiles(directory=SWAGGER_ASSETS), name="swagger-assets")


def _redirect(target: str) -> Callable[[], RedirectResponse]:
    def redirect() -> RedirectResponse:
        return RedirectResponse(target, status_code=308)

    return redirect


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"error": ...}``; FastAPI's default 422 echoes the input (secrets)."""

    async def refusal(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refusal)
        return _json(exc.status, exc.body.model_dump())

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        status, body = invalid_request(exc.errors())
        return _json(status, body.model_dump())

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _json(exc.status_code, {"error": str(exc.detail)}, exc.headers)

    async def failed(_: Request, exc: Exception) -> Response:
        log.error("api request failed", error=str(exc), kind=type(exc).__name__)
        return _json(503, {"error": f"Hefestus could not answer ({type(exc).__name__}); see its log"})

    app.add_exception_handler(_Refusal, refusal)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(HefestusError, failed)

    async def crashed(_: Request, exc: Exception) -> Response:  # a bug: uvicorn logs the traceback
        return _json(500, {"error": "internal error; see the Hefestus log"})

    app.add_exception_handler(Exception, crashed)


def _public_paths(settings: ApiSettings) -> Callable[[str], bool]:
    docs = ("/openapi.json", "/docs", "/swagger") if settings.docs_public else ()

    def public(path: str) -> bool:
        return path == "/healthz" or any(path == d or path.startswith(d + "/") for d in docs)

    return public


_DESCRIPTION = """\
Hefestus classifies error texts with ops-edited pattern dictionaries and, when configured,
asks a local language model for the cause and the fix.

**Authentication**: when `[api] token` is set, send `Authorization: Bearer <token>` on every
route except `/healthz` (and the documentation, unless `docs_public = false`).

**Errors** are JSON objects with an `error` sentence; validation errors add `details`, one entry
per field, and never echo what was sent.
"""

__all__ = ["ApiService", "ApiSettings", "Server", "create_app", "registry", "serve"]

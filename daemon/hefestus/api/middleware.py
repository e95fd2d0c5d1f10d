"""The API's two ASGI middlewares, in front of FastAPI.

:class:`Guard` checks the bearer token and the body size *before* FastAPI parses
anything: an anonymous client learns nothing (not even how its JSON is wrong),
an oversized body is refused whether it announces its length or not, and a body
that does not arrive within ``body_deadline`` seconds is answered 408 (a client
that sends headers and then holds the body would otherwise keep its connection,
and a file descriptor, for ever). :class:`Observe` counts and times requests for
``/metrics`` and logs one line per request. Neither ever logs a body, a header or
the query string: error texts and tokens are secrets.

Every metric label comes from a fixed set, whatever a client sends: the method is
one of :data:`METHODS` or ``other``, the route is a matched route *template* or
``unmatched``, and a request refused for its token creates no series at all (an
anonymous client could otherwise grow ``/metrics``, and memory, without bound).

They are pure ASGI callables rather than Starlette's ``BaseHTTPMiddleware``, which
buffers responses and runs the app in another task.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import weakref
from collections.abc import Callable, Mapping

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("hefestus.api.app")

#: Seconds a client has to send its whole body once its headers are in.
BODY_DEADLINE = 10.0
#: The methods counted under their own name; any other is counted (and logged) as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
#: Scope key Guard sets on a request it refused for its token: Observe then counts nothing.
ANONYMOUS = "hefestus.anonymous"
#: Longest path written to the log (the path is the client's: it can be 8 KB).
MAX_LOGGED_PATH = 200


def json_response(status: int, body: object, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


class Guard:
    """Token, then body size, then body deadline.

    The body is read here in full (it is small: ``max_body``) and replayed to the app,
    so a chunked upload without Content-Length is cut off at the limit as well.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, public: Callable[[str], bool],
                 max_body: int, body_deadline: float = BODY_DEADLINE) -> None:
        self.app, self.public, self.max_body = app, public, max_body
        self.body_deadline = body_deadline
        self.token = hashlib.sha256(token.encode()).digest() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.token is not None and not self.public(scope["path"]):
            refusal = self._check(headers.get(b"authorization"))
            if refusal is not None:
                scope[ANONYMOUS] = True
                await refusal(scope, receive, send)
                return
        too_large = json_response(413, {"error": f"request body larger than {self.max_body} bytes"})
        length = headers.get(b"content-length", b"0")
        if not length.isdigit():
            await json_response(400, {"error": "invalid Content-Length header"})(scope, receive, send)
            return
        if int(length) > self.max_body:
            await too_large(scope, receive, send)
            return
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_deadline):
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client went away: nobody to answer
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    if len(body) > self.max_body:
                        await too_large(scope, receive, send)
                        return
        except TimeoutError:
            await json_response(408, {"error": f"request body not received within "
                                               f"{self.body_deadline:g} s"},
                                {"Connection": "close"})(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # waits for http.disconnect, as Starlette expects
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    def _check(self, header: bytes | None) -> JSONResponse | None:
        """None when the header carries the token; compared as SHA-256 digests in constant
        time, so neither the token's characters nor its length leak through timing."""
        assert self.token is not None
        scheme, _, given = (header or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not given.strip():
            return json_response(401, {"error": "bearer token required"},
                                 {"WWW-Authenticate": 'Bearer realm="hefestus"'})
        if hmac.compare_digest(hashlib.sha256(given.strip()).digest(), self.token):
            return None
        return json_response(401, {"error": "invalid bearer token"},
                             {"WWW-Authenticate": 'Bearer realm="hefestus", error="invalid_token"'})


class HttpMetrics:
    def __init__(self, reg: CollectorRegistry) -> None:
        self.requests = Counter("hefestus_api_requests", "HTTP requests answered by the API",
                                ["method", "route", "status"], registry=reg)
        self.seconds = Histogram("hefestus_api_request_seconds", "Time to answer an API request",
                                 ["method", "route"], registry=reg,
                                 buckets=(0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120))


_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, HttpMetrics] = weakref.WeakKeyDictionary()


def http_metrics(reg: CollectorRegistry) -> HttpMetrics:
    """One set of collectors per registry: a second app on the same registry shares them."""
    if reg not in _METRICS:
        _METRICS[reg] = HttpMetrics(reg)
    return _METRICS[reg]


_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})


class Observe:
    """Counts and times every request by method and route *template* (bounded label values,
    see the module docstring), and logs method, path, status and time: never the body, the
    query string or a header."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - start
            method = scope["method"] if scope["method"] in METHODS else "other"
            if not scope.get(ANONYMOUS):
                route = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.requests.labels(method, route, str(status)).inc()
                self.metrics.seconds.labels(method, route).observe(seconds)
            path = scope["path"]
            shown = path if len(path) <= MAX_LOGGED_PATH else path[:MAX_LOGGED_PATH] + "..."
            (log.debug if path in _QUIET else log.info)(
                "api request", method=method, path=shown, status=status, seconds=round(seconds, 3))

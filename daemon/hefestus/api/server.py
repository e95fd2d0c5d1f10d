"""Run the API with uvicorn: in a background thread beside the daemon, or in the foreground.

The listening socket is bound here, in the caller's thread, before uvicorn starts:
"address already in use" or a bad host is then a :class:`~hefestus.errors.ConfigError`
raised by :meth:`Server.__init__`, not a ``sys.exit`` lost inside a thread, and
port 0 gives a free port that :attr:`Server.port` reports (tests use that).

uvicorn's own logging is left unconfigured (``log_config=None``) and its access log
is off: :mod:`hefestus.api.app` logs each request through structlog, without bodies
or headers. uvicorn's and asyncio's warnings and errors reach structlog through
:func:`hefestus.logs.setup`, rate-limited (an ``accept()`` failing with EMFILE would
otherwise log a traceback per attempt).

Anyone who reaches the port can open connections, so every connection is bounded:

* at most :data:`LIMIT_CONCURRENCY` connections and requests at once, and never more
  than the process's file-descriptor limit less :data:`FD_RESERVE` (see
  :func:`concurrency_limit`); beyond it uvicorn answers 503 at once and closes, so a
  flood costs a file descriptor only briefly, and the daemon's own connections (Zabbix,
  the state file) always find one (the systemd unit's ``LimitNOFILE=`` is far above);
* :data:`HEADER_DEADLINE` seconds to send the request headers (uvicorn has no such
  timer: a client that connects and says nothing would stay for ever);
* the body deadline of :class:`hefestus.api.middleware.Guard`, then
  :data:`KEEP_ALIVE` seconds of idle keep-alive.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from hefestus.config.api import parse_listen
from hefestus.errors import ConfigError

#: Connections and requests served at once (uvicorn's ``limit_concurrency``).
LIMIT_CONCURRENCY = 1000
#: File descriptors kept for everything but API connections: the state file and its WAL,
#: Zabbix, the model, Rundeck, chat webhooks, the log, the listening socket.
FD_RESERVE = 128
#: Seconds a new connection has to send its first request's headers.
HEADER_DEADLINE = 10.0
#: Seconds an idle keep-alive connection is kept (uvicorn's ``timeout_keep_alive``).
KEEP_ALIVE = 5
#: Connections waiting to be accepted (listen()), and accepted in one go by asyncio.
BACKLOG = 128


def concurrency_limit(wanted: int = LIMIT_CONCURRENCY) -> int:
    """``wanted``, lowered to half of what the file-descriptor limit (``ulimit -n``) leaves
    after :data:`FD_RESERVE`: past the limit, accept() fails with EMFILE and nobody, not
    even a probe of /healthz, gets an answer. Half, because asyncio accepts up to
    :data:`BACKLOG` connections in one go, before uvicorn has read their requests and can
    refuse those over the limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, (soft - FD_RESERVE) // 2))


class _HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for the first request's headers."""

    header_deadline = HEADER_DEADLINE

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.header_deadline, self._headers_late)

    def _headers_late(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        super().connection_lost(exc)


class Server:
    """One uvicorn server on one socket: :meth:`start`/:meth:`stop` (thread) or :meth:`run`."""

    def __init__(self, app: ASGIApp, listen: str, *, stop_timeout: float = 10.0,
                 limit_concurrency: int | None = None,
                 header_deadline: float = HEADER_DEADLINE) -> None:
        host, port = parse_listen(listen)
        self._sock = _bind(host, port, listen)
        self._stop_timeout = stop_timeout
        protocol = type("HeaderDeadline", (_HeaderDeadline,), {"header_deadline": header_deadline})
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False,
                                lifespan="off", server_header=False, proxy_headers=False,
                                timeout_graceful_shutdown=max(1, round(stop_timeout)),
                                http=protocol,
                                limit_concurrency=limit_concurrency or concurrency_limit(),
                                timeout_keep_alive=KEEP_ALIVE, backlog=BACKLOG)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._host = host

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, *, timeout: float = 10.0) -> Server:
        """Serve from a daemon thread; returns once the socket accepts requests."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="hefestus-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"[api] listen = {self.url}: the HTTP server did not start "
                                  f"within {timeout:g} s (see the log above)")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Graceful: stop accepting, let requests in flight finish for up to ``stop_timeout``
        seconds, then cancel them. Returns within about ``stop_timeout + 2`` seconds."""
        if self._thread is None:
            self._sock.close()
            return
        self._server.should_exit = True
        self._thread.join(self._stop_timeout + 1)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(1)

    def run(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (``hefestus serve``).

        uvicorn catches the signal, shuts down gracefully, then raises it again: SIGINT
        ends as KeyboardInterrupt, SIGTERM with the default action (a clean stop for systemd).
        """
        self._server.run(sockets=[self._sock])

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve(app: ASGIApp, listen: str, *, stop_timeout: float = 10.0) -> Server:
    """Bind ``listen`` and serve ``app`` from a background thread; call ``.stop()`` to end."""
    return Server(app, listen, stop_timeout=stop_timeout).start()


def _bind(host: str, port: int, listen: str) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"[api] listen = {listen!r}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"[api] listen = {listen!r}: cannot listen: {exc.strerror or exc}") from exc
    return sock

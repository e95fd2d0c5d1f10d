"""Ollama adapter: the only module that imports ``ollama`` (and its httpx).

What it owns, so the analysis stage never has to know:

* a **timeout on every call** — the ollama client has none by default, so a
  hung server would hang the daemon. A call streams its answer and is cut
  off at ``request.timeout`` seconds *in total*, so a server that drips one
  token a minute cannot hold a worker either;
* **error translation** at the boundary (see the table in
  ``shared/reference/ollama.md``): connection refused, read timeouts, 5xx
  and errors inside a stream become :class:`ModelUnavailable`; a 404 becomes
  :class:`ModelNotFound` (matched on the status, not on Ollama's wording);
  an answer that is not Ollama's JSON becomes :class:`ModelUnavailable` too —
  a server answering garbage is as good as down;
* the request body: ``format`` carries the answer's JSON schema, ``options``
  temperature / ``num_predict`` / ``num_ctx``, and ``keep_alive``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import ollama

from hefestus.config import OllamaSettings
from hefestus.errors import ModelError, ModelNotFound, ModelUnavailable
from hefestus.pipeline.render import cut
from hefestus.values import ModelReply, ModelRequest


class OllamaModel:
    """:class:`~hefestus.pipeline.ports.LanguageModel` over an Ollama server."""

    def __init__(self, settings: OllamaSettings, *, transport: httpx.BaseTransport | None = None,
                 clock: Any = time.monotonic) -> None:
        self._settings = settings
        self._transport = transport
        self._clock = clock
        self._clients: dict[float, ollama.Client] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self._settings.url

    def _client(self, timeout: float) -> ollama.Client:
        """One client per timeout value (per-domain timeouts differ); httpx clients are thread-safe."""
        with self._lock:
            client = self._clients.get(timeout)
            if client is None:
                kwargs: dict[str, Any] = {
                    "timeout": httpx.Timeout(timeout, connect=min(self._settings.connect_timeout, timeout)),
                }
                if self._transport is not None:
                    kwargs["transport"] = self._transport
                client = ollama.Client(host=self._settings.url, **kwargs)
                self._clients[timeout] = client
            return client

    def models(self) -> list[str]:
        try:
            listing = self._client(self._settings.connect_timeout * 2).list()
        except Exception as exc:  # noqa: BLE001 - translated below, never swallowed
            raise self._translate(exc, "listing models") from exc
        return sorted(m.model for m in listing.models if m.model)

    def chat(self, request: ModelRequest) -> ModelReply:
        started = self._clock()
        deadline = started + request.timeout
        parts: list[str] = []
        done_reason = ""
        eval_count = 0
        try:
            stream = self._client(request.timeout).chat(
                model=request.model,
                messages=[{"role": "system", "content": request.system},
                          {"role": "user", "content": request.user}],
                format=request.schema,
                options={"temperature": request.temperature, "num_predict": request.max_tokens,
                         "num_ctx": request.num_ctx},
                keep_alive=request.keep_alive,
                stream=True,
            )
            try:
                for chunk in stream:
                    if chunk.message is not None and chunk.message.content:
                        parts.append(chunk.message.content)
                    if chunk.done:
                        done_reason = chunk.done_reason or "stop"
                        eval_count = chunk.eval_count or 0
                        break
                    if self._clock() > deadline:
                        raise ModelUnavailable(
                            f"{request.model} at {self.url} did not finish within {request.timeout:g} s")
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()  # ends the HTTP stream: the server stops generating for us
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated below, never swallowed
            raise self._translate(exc, f"asking {request.model}", request.timeout) from exc
        if not done_reason:
            raise ModelUnavailable(f"{request.model} at {self.url}: the answer stream ended early")
        return ModelReply("".join(parts), done_reason, eval_count, self._clock() - started)

    def _translate(self, exc: Exception, doing: str, timeout: float | None = None) -> ModelError:
        where = f"Ollama at {self.url}"
        if isinstance(exc, ollama.ResponseError):
            status = exc.status_code
            reason = _short(str(exc.error))
            if status == 404:
                return ModelNotFound(f"{where}: {reason} (run `ollama pull <model>` on the model server)")
            if status == -1:
                return ModelUnavailable(f"{where}: error inside the answer stream while {doing}: {reason}")
            if status >= 500 or status in (408, 429):
                return ModelUnavailable(f"{where}: HTTP {status} while {doing}: {reason}")
            return ModelError(f"{where}: HTTP {status} while {doing}: {reason}")
        if isinstance(exc, (ConnectionError, httpx.ConnectError)):
            return ModelUnavailable(f"{where}: cannot connect (is it running?) while {doing}")
        if isinstance(exc, httpx.TimeoutException):
            waited = f" within {timeout:g} s" if timeout else ""
            return ModelUnavailable(f"{where}: no answer{waited} while {doing}")
        if isinstance(exc, httpx.HTTPError):
            return ModelUnavailable(f"{where}: {type(exc).__name__} while {doing}: {_short(str(exc))}")
        if isinstance(exc, ValueError):  # JSON or pydantic: not Ollama's API on the other end
            return ModelUnavailable(f"{where}: answered something that is not Ollama's API while {doing}")
        return ModelError(f"{where}: {type(exc).__name__} while {doing}: {_short(str(exc))}")


def _short(text: str, limit: int = 200) -> str:
    return cut(" ".join(text.split()), limit)

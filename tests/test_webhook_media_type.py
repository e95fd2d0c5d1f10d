"""The Zabbix webhook media type: its export, and its script run in real Duktape."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import ROOT

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "hefestus.service"
DOCKERFILE = DEPLOY / "Dockerfile"
MEDIA_TYPE = DEPLOY / "zabbix" / "hefestus-media-type.yaml"
WEBHOOK_JS = DEPLOY / "zabbix" / "hefestus-webhook.js"
HEFESTUS = Path(sys.executable).parent / "hefestus"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


# -- the Zabbix webhook media type -----------------------------------------------------


def test_media_type_export_is_a_zabbix_60_webhook() -> None:
    import yaml

    export = yaml.safe_load(MEDIA_TYPE.read_text())["zabbix_export"]
    assert export["version"] == "6.0"
    (media,) = export["media_types"]
    assert media["name"] == "Hefestus" and media["type"] == "WEBHOOK"
    params = {p["name"]: p["value"] for p in media["parameters"]}
    assert params == {"hefestus_url": "{$HEFESTUS.URL}", "hefestus_token": "{$HEFESTUS.TOKEN}",
                      "eventid": "{EVENT.ID}", "event_value": "{EVENT.VALUE}",
                      "event_source": "{EVENT.SOURCE}", "event_update_status": "{EVENT.UPDATE.STATUS}",
                      "trigger_id": "{TRIGGER.ID}", "host": "{HOST.NAME}", "severity": "{EVENT.SEVERITY}",
                      "name": "{EVENT.NAME}", "http_proxy": ""}
    assert [p["name"] for p in media["parameters"]] == sorted(params)  # Zabbix's export order
    assert int(media["attempts"]) >= 2  # a failed push is retried by Zabbix
    # The readable copy and the importable export carry the same script.
    assert media["script"] == WEBHOOK_JS.read_text()
    modes = {(t["event_source"], t["operation_mode"]) for t in media["message_templates"]}
    assert ("TRIGGERS", "PROBLEM") in modes


#: Built-in macros Zabbix 8.0 dropped ("Deprecated macros dropped", upgrade notes for 8.0,
#: https://www.zabbix.com/documentation/8.0/en/manual/installation/upgrade_notes): an export
#: using one still imports, but from 8.0 on the macro reaches the script unresolved.
REMOVED_IN_80 = re.compile(r"\{(ACK\.(DATE|MESSAGE|TIME)|EVENT\.ACK\.HISTORY|HOSTNAME\d?|IPADDRESS\d?|PROFILE\.[A-Z0-9_.]+"
                           r"|TRIGGER\.(COMMENT|KEY)|STATUS|USER\.ALIAS)\}")
#: The built-in macros the media type uses (deploy/zabbix/README.md lists them): each one
#: resolves in a trigger action's messages from 6.0 to 8.0.
MACROS = {"{EVENT.ID}", "{EVENT.NAME}", "{EVENT.SEVERITY}", "{EVENT.SOURCE}", "{EVENT.UPDATE.STATUS}",
          "{EVENT.VALUE}", "{HOST.NAME}", "{TRIGGER.ID}"}


def test_media_type_uses_no_macro_that_zabbix_80_removed() -> None:
    for removed in ("{ACK.MESSAGE}", "{EVENT.ACK.HISTORY}", "{TRIGGER.COMMENT}", "{HOSTNAME1}", "{STATUS}"):
        assert REMOVED_IN_80.search(removed), removed  # the check itself sees them
    text = MEDIA_TYPE.read_text() + WEBHOOK_JS.read_text()
    assert REMOVED_IN_80.findall(text) == []
    assert set(re.findall(r"\{[A-Z][A-Z0-9_.]*\}", text)) == MACROS  # user macros ({$...}) aside
    readme = (DEPLOY / "zabbix" / "README.md").read_text()
    assert all(m in readme for m in MACROS), "deploy/zabbix/README.md lists the macros the media type uses"


# The script as Zabbix runs it: a function body over `value`, in Duktape (dukpy embeds the
# same engine), with Zabbix's HttpRequest and Zabbix.log replaced by recording fakes.
_HARNESS = """
var calls = [], logged = [];
function HttpRequest() { this.headers = []; this.proxy = null; this.status = 0; }
HttpRequest.prototype.addHeader = function (h) { this.headers.push(h); };
HttpRequest.prototype.setProxy = function (p) { this.proxy = p; };
HttpRequest.prototype.getStatus = function () { return this.status; };
HttpRequest.prototype.post = function (url, body) {
    calls.push({url: url, body: body, headers: this.headers, proxy: this.proxy});
    if (dukpy.answer === null) { throw 'Couldn\\'t connect to server'; }
    this.status = dukpy.answer[0];
    return dukpy.answer[1];
};
var Zabbix = { log: function (level, message) { logged.push(message); } };
function webhook(value) {
%s
}
var out = { calls: calls, logged: logged };
try { out.returned = webhook(JSON.stringify(dukpy.params)); } catch (e) { out.thrown = String(e); }
out;
"""
PUSH_TOKEN = "webhook-unit-token-0123456789abcdef"


def run_webhook(answer: tuple[int, str] | None = (202, '{"status": "queued", "eventid": 4521}'), /,
                **overrides: str) -> dict[str, Any]:
    try:
        import dukpy
    except ImportError as exc:
        pytest.fail(f"dukpy (Duktape for Python) is missing ({exc}): pyproject test extra, `make venv`",
                    pytrace=False)
    params = {"event_source": "0", "event_update_status": "0", "event_value": "1", "eventid": "4521",
              "hefestus_token": PUSH_TOKEN, "hefestus_url": "http://hefestus.example:8080",
              "host": "web-1", "http_proxy": "", "name": "nginx is down", "severity": "High",
              "trigger_id": "23110", **overrides}
    result: dict[str, Any] = dukpy.evaljs(_HARNESS % WEBHOOK_JS.read_text(), params=params,
                                          answer=list(answer) if answer else None)
    assert PUSH_TOKEN not in json.dumps({k: v for k, v in result.items() if k != "calls"}), result
    return result


def test_webhook_posts_a_new_problem_with_the_bearer_token() -> None:
    result = run_webhook()
    assert result.get("returned") == "OK", result
    (call,) = result["calls"]
    assert call["url"] == "http://hefestus.example:8080/api/zabbix/events"
    assert set(call["headers"]) == {"Content-Type: application/json", f"Authorization: Bearer {PUSH_TOKEN}"}
    assert json.loads(call["body"]) == {"eventid": "4521", "event_value": "1", "trigger_id": "23110",
                                        "host": "web-1", "severity": "High", "name": "nginx is down"}
    assert call["proxy"] is None
    assert result["logged"] == ["[Hefestus webhook] event 4521: HTTP 202"]


@pytest.mark.parametrize(("url", "posted"), [
    ("https://h.example/hefestus/", "https://h.example/hefestus/api/zabbix/events"),
    ("http://127.0.0.1:8080/api/zabbix/events", "http://127.0.0.1:8080/api/zabbix/events"),
    (" http://[::1]:8080 ", "http://[::1]:8080/api/zabbix/events"),
])
def test_webhook_builds_the_endpoint_from_the_base_url(url: str, posted: str) -> None:
    assert run_webhook(hefestus_url=url)["calls"][0]["url"] == posted


@pytest.mark.parametrize("overrides", [
    {"event_value": "0"},                                  # recovery
    {"event_update_status": "1"},                          # an update (e.g. Hefestus's own message)
    {"event_source": "3", "event_value": "1"},             # internal event
])
def test_webhook_pushes_nothing_but_new_trigger_problems(overrides: dict[str, str]) -> None:
    result = run_webhook(**overrides)
    assert result["calls"] == [] and result["returned"].startswith("skipped"), result


def test_webhook_without_a_token_sends_no_authorization_header() -> None:
    (call,) = run_webhook(hefestus_token="")["calls"]
    assert call["headers"] == ["Content-Type: application/json"]


def test_webhook_uses_the_proxy_when_given() -> None:
    assert run_webhook(http_proxy="http://proxy.example:3128")["calls"][0]["proxy"] == "http://proxy.example:3128"


@pytest.mark.parametrize(("overrides", "answer", "says"), [
    ({"hefestus_token": "{$HEFESTUS.TOKEN}"}, None, "define the global macro {$HEFESTUS.TOKEN}"),
    ({"hefestus_url": "{$HEFESTUS.URL}"}, None, "define the global macro {$HEFESTUS.URL}"),
    ({"hefestus_url": "ftp://h.example"}, None, "must start with http:// or https://"),
    ({"eventid": "{EVENT.ID}"}, None, "eventid must be {EVENT.ID}"),
    ({}, (401, '{"error": "invalid bearer token"}'),
     "HTTP 401 from http://hefestus.example:8080/api/zabbix/events for event 4521 (the token does not "
     "match Hefestus's [api] token): invalid bearer token"),
    ({}, (503, '{"error": "this Hefestus does not poll Zabbix (hefestus serve)"}'),
     "HTTP 503 from http://hefestus.example:8080/api/zabbix/events for event 4521: this Hefestus does not poll"),
    ({}, (502, "<html>" + "x" * 500 + "</html>"), "HTTP 502 from"),
    ({}, None, "cannot reach http://hefestus.example:8080/api/zabbix/events: Couldn't connect"),
])
def test_webhook_failures_throw_a_reason_for_the_action_log(overrides: dict[str, str],
                                                            answer: tuple[int, str] | None, says: str) -> None:
    """Thrown means failed: Zabbix retries and shows the text in Reports > Action log."""
    result = run_webhook(answer, **overrides)
    assert "returned" not in result, result
    assert result["thrown"].startswith("Hefestus: ") and says in result["thrown"], result["thrown"]
    assert len(result["thrown"]) < 400
    needs_request = answer is not None or not any(k in overrides for k in ("hefestus_token", "hefestus_url", "eventid"))
    assert bool(result["calls"]) == needs_request

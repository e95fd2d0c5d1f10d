"""Slack and Teams notifications: adapters against local receivers, and the Dispatcher.

No patching: the adapters post over a real socket to small HTTP servers on
127.0.0.1 that stand in for Slack and Teams, record the JSON they get and
answer what the test scripts (Slack's one-word errors, Teams' 202 or its
connector's "200 but failed", 429 with Retry-After, 5xx, a hang). What they
receive is validated against JSON Schemas written from each service's
documentation (tests/data/notify/), so a payload cannot drift into a shape
the real service rejects.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import traceback
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import structlog
from structlog.testing import capture_logs

from hefestus.adapters.slack import SlackNotifier, mrkdwn_escape, slack_payload
from hefestus.adapters.teams import TeamsNotifier, teams_payload
from hefestus.errors import NotifyError
from hefestus.notify.dispatcher import Dispatcher
from hefestus.notify.message import (
    Notification,
    fit,
    retry_after_seconds,
    text_length,
    zabbix_event_url,
)
from hefestus.redact import REDACTED, Redactor
from tests.support.helpers import eventually
from tests.support.webhooks import Receiver, Reply

SCHEMAS = Path(__file__).parent / "data" / "notify"
SLACK_TOKEN = "xXs3cr3tSlackT0kenXx"
SLACK_PATH = f"/services/T0HEFESTUS/B0HEFESTUS/{SLACK_TOKEN}"
TEAMS_SIG = "Zk9TeamsS1gnatureS3cr3tZk9"
TEAMS_PATH = ("/workflows/5a1f0c7e2b9d4c1e/triggers/manual/paths/invoke"
              f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={TEAMS_SIG}")
EVENT_URL = "https://zbx.example.com/zabbix/tr_events.php?triggerid=13&eventid=42"


def schema(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))


SLACK_SCHEMA = schema("slack-webhook-message")
TEAMS_SCHEMA = schema("teams-webhook-message")


def notification(**kw: Any) -> Notification:
    base: dict[str, Any] = dict(
        eventid=42, host="web1", problem="Nginx is down", severity="high", domain="linux",
        category="service-down", cause="nginx was killed by the OOM killer at 03:12.",
        steps=("Check `dmesg` for oom-kill lines", "Restart nginx: systemctl restart nginx"),
        source="model llama3.1:8b", confidence=0.82, note="Similar event 3 times this week.",
        remediation="Rundeck job 'restart nginx' succeeded in 12 s", event_url=EVENT_URL,
        clock=1_700_000_000)
    return Notification(**{**base, **kw})


# -- local receivers ----------------------------------------------------------------

@pytest.fixture
def slack_rx() -> Iterator[Receiver]:
    rx = Receiver(SLACK_PATH, Reply(200, "ok"))
    yield rx
    rx.close()


@pytest.fixture
def teams_rx() -> Iterator[Receiver]:
    rx = Receiver(TEAMS_PATH, Reply(202, ""))
    yield rx
    rx.close()


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every log event at every level, from any thread, for the duration of the test."""
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(wrapper_class=old["wrapper_class"])


def assert_no_webhook_secret(text: str) -> None:
    assert SLACK_TOKEN not in text and TEAMS_SIG not in text
    assert "/services/T0HEFESTUS" not in text and "/workflows/5a1f0c7e" not in text


def assert_exception_hides_url(exc: BaseException) -> None:
    assert_no_webhook_secret(str(exc))
    assert_no_webhook_secret(repr(exc))
    assert_no_webhook_secret("".join(traceback.format_exception(exc)))


def slack(rx: Receiver, **kw: Any) -> SlackNotifier:
    return SlackNotifier(rx.url, **{"timeout": 1.0, "connect_timeout": 1.0, **kw})


def teams(rx: Receiver, **kw: Any) -> TeamsNotifier:
    return TeamsNotifier(rx.url, **{"timeout": 1.0, "connect_timeout": 1.0, **kw})


def mrkdwn_texts(payload: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for b in payload["blocks"]:
        objs = [b.get("text")] + b.get("fields", []) + b.get("elements", [])
        out += [o["text"] for o in objs if isinstance(o, dict) and o.get("type") == "mrkdwn"]
    return out


# -- Slack payload ------------------------------------------------------------------

def test_slack_message_is_block_kit_with_a_text_fallback(slack_rx: Receiver) -> None:
    """What Slack receives validates against its documented shape and carries every part."""
    slack(slack_rx).send(notification())
    (req,) = slack_rx.received
    assert req.path == SLACK_PATH and req.headers["Content-Type"] == "application/json"
    body = req.json
    SLACK_SCHEMA.validate(body)
    assert body["text"].startswith("High on web1: Nginx is down: nginx was killed")
    header, facts, cause, steps, remediation, note, link = body["blocks"]
    assert header["type"] == "header" and "High on web1: Nginx is down" in header["text"]["text"]
    fields = [f["text"] for f in facts["fields"]]
    assert fields[:4] == ["*Host*\nweb1", "*Domain*\nlinux", "*Category*\nservice-down",
                          "*Source*\nmodel llama3.1:8b · 82%"]
    assert fields[4].startswith("*Started*\n<!date^1700000000^")
    assert cause["text"]["text"] == "*Cause*\nnginx was killed by the OOM killer at 03:12."
    assert steps["text"]["text"] == ("*Next steps*\n1. Check `dmesg` for oom-kill lines\n"
                                     "2. Restart nginx: systemctl restart nginx")
    assert remediation["type"] == "context" and "restart nginx' succeeded" in str(remediation)
    assert note["type"] == "context" and "3 times this week" in str(note)
    assert link["text"]["text"] == (
        "<https://zbx.example.com/zabbix/tr_events.php?triggerid=13&amp;eventid=42"
        "|Open event 42 in Zabbix>")
    assert body["unfurl_links"] is False


def test_slack_button_variant_and_optional_parts() -> None:
    """Without category, steps, remediation, note or clock the message is still valid;
    ``link_as_button`` turns the link into a URL button."""
    n = notification(category=None, steps=(), remediation=None, note="", clock=0)
    body = slack_payload(n, link_as_button=True)
    SLACK_SCHEMA.validate(body)
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "actions"]
    (button,) = body["blocks"][-1]["elements"]
    assert button["url"] == EVENT_URL and button["text"]["text"] == "Open in Zabbix"
    no_link = slack_payload(notification(event_url=None))
    assert "Zabbix>" not in json.dumps(no_link)


def test_slack_escapes_control_characters() -> None:
    """A log line cannot ping the channel or plant a link: & < > become entities."""
    n = notification(host="a<b>", cause="<!channel> disk & memory <https://evil.example|click>",
                     steps=("run `grep x <file>`",), note="a > b")
    body = slack_payload(n)
    SLACK_SCHEMA.validate(body)
    texts = mrkdwn_texts(body) + [body["text"]]
    joined = "\n".join(texts)
    assert "&lt;!channel&gt; disk &amp; memory &lt;https://evil.example|click&gt;" in joined
    assert "<!channel>" not in joined and "<https://evil" not in joined
    assert "`grep x &lt;file&gt;`" in joined and "a &gt; b" in joined
    assert "*Host*\na&lt;b&gt;" in joined


def test_slack_long_texts_are_cut_to_the_limits() -> None:
    """Header 150, section text 3000, field 2000, counted as Slack counts (an emoji is 2)."""
    n = notification(problem="🔥" * 400, host="h" * 5000, category="c&" * 3000,
                     cause="<cause> " * 2000, steps=tuple(f"step {i} " + "x" * 900 for i in range(60)),
                     remediation="r" * 9000, note="n&" * 9000)
    body = slack_payload(n)
    SLACK_SCHEMA.validate(body)
    header = body["blocks"][0]["text"]["text"]
    assert text_length(header) <= 150 and header.endswith("…")
    for block in body["blocks"]:
        for f in block.get("fields", []):
            assert text_length(f["text"]) <= 2000
        for obj in [block.get("text"), *block.get("elements", [])]:
            if isinstance(obj, dict) and "text" in obj:
                assert text_length(obj["text"]) <= 3000
    cut = mrkdwn_texts(body)
    assert all(t.endswith("…") for t in cut if t.startswith(("*Cause*", "*Next steps*")))
    assert not any(t.rstrip("…").endswith(("&", "&a", "&am", "&amp", "&l", "&lt")) for t in cut)
    assert text_length(body["text"]) <= 500


def test_fit_never_splits_an_entity() -> None:
    assert fit("abc", 3) == "abc"
    assert fit("abcdef", 4) == "abc…"
    out = fit("&" * 100, 20, escape=mrkdwn_escape)
    assert out == "&amp;" * 3 + "…"
    assert fit("🙂🙂🙂", 4) == "🙂…"  # each emoji counts 2


# -- Teams payload ------------------------------------------------------------------

def test_teams_message_is_an_adaptive_card_envelope(teams_rx: Receiver) -> None:
    """The documented envelope (type message, one attachment, contentUrl null) and card 1.4."""
    teams(teams_rx).send(notification())
    (req,) = teams_rx.received
    assert req.path == TEAMS_PATH and req.headers["Content-Type"] == "application/json"
    body = req.json
    TEAMS_SCHEMA.validate(body)
    (attachment,) = body["attachments"]
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    title, facts, *rest = card["body"]
    assert title["text"] == "High on web1: Nginx is down" and title["color"] == "Attention"
    assert {f["title"]: f["value"] for f in facts["facts"]} == {
        "Host": "web1", "Severity": "high", "Domain": "linux", "Category": "service-down",
        "Source": "model llama3.1:8b · 82%", "Started": "2023-11-14 22:13 UTC", "Event": "42"}
    texts = [b["text"] for b in rest]
    assert texts[:2] == ["Cause", "nginx was killed by the OOM killer at 03:12."]
    assert "1. Check `dmesg` for oom-kill lines" in texts
    assert "2. Restart nginx: systemctl restart nginx" in texts
    assert any("Rundeck job 'restart nginx' succeeded" in t for t in texts)
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in Zabbix", "url": EVENT_URL}]


@pytest.mark.parametrize(("severity", "colour"), [
    ("disaster", "Attention"), ("average", "Warning"), ("warning", "Warning"),
    ("information", "Accent"), ("not classified", "Default"), ("odd", "Default")])
def test_teams_title_colour_follows_severity(severity: str, colour: str) -> None:
    card = teams_payload(notification(severity=severity))["attachments"][0]["content"]
    assert card["body"][0]["color"] == colour


def test_a_model_answer_shows_no_number_in_chat() -> None:
    """A model's confidence is its own guess: chat says "unverified", like the Zabbix header."""
    n = notification(confidence=None)
    assert "model llama3.1:8b · unverified" in json.dumps(slack_payload(n), ensure_ascii=False)
    assert "model llama3.1:8b · unverified" in json.dumps(teams_payload(n), ensure_ascii=False)


def test_teams_message_is_shrunk_under_28_kb() -> None:
    """Teams refuses messages over 28 KB: huge texts are cut until the JSON fits."""
    n = notification(cause="é" * 60_000, steps=tuple("s" * 5000 for _ in range(40)),
                     note="n" * 20_000, remediation="r" * 20_000, problem="p" * 5000)
    body = teams_payload(n)
    TEAMS_SCHEMA.validate(body)
    assert len(json.dumps(body).encode()) <= 28 * 1024
    card = body["attachments"][0]["content"]
    steps = [b["text"] for b in card["body"] if b.get("text", "")[:3] in {f"{i}. " for i in range(1, 10)}]
    assert len(steps) == 9 and all(s.endswith("…") for s in steps)
    minimal = teams_payload(notification(category=None, steps=(), remediation=None, note="",
                                         event_url=None, clock=0))
    TEAMS_SCHEMA.validate(minimal)
    assert "actions" not in minimal["attachments"][0]["content"]


# -- answers: what is transient, what is not ----------------------------------------

@pytest.mark.parametrize(("reply", "transient", "reason", "code", "words"), [
    (Reply(400, "invalid_blocks"), False, "client-error", "invalid_blocks", "Hefestus bug"),
    (Reply(400, "invalid_payload"), False, "client-error", "invalid_payload", "Hefestus bug"),
    (Reply(403, "action_prohibited"), False, "client-error", "action_prohibited", "admin"),
    (Reply(403, "invalid_token"), False, "client-error", "invalid_token", "new incoming webhook"),
    (Reply(404, "no_service"), False, "client-error", "no_service", "new incoming webhook"),
    (Reply(404, "channel_not_found"), False, "client-error", "channel_not_found", "deleted"),
    (Reply(410, "channel_is_archived"), False, "client-error", "channel_is_archived", "archived"),
    (Reply(429, "rate_limited", (("Retry-After", "7"),)), True, "rate-limited", "rate_limited",
     "retry after 7s"),
    (Reply(500, "rollup_error"), True, "server-error", "rollup_error", "internal error"),
    (Reply(503, "<html><body>Service Unavailable</body></html>", content_type="text/html"),
     True, "server-error", None, "Service Unavailable"),
    (Reply(200, "<html>Sign in</html>", content_type="text/html"), False, "invalid-answer", None,
     "proxy"),
    (Reply(302, "", (("Location", "https://sso.example.com/login"),)), False, "client-error", None,
     "redirected"),
])
def test_slack_answers_are_classified(slack_rx: Receiver, reply: Reply, transient: bool, reason: str,
                                      code: str | None, words: str) -> None:
    slack_rx.script(reply)
    with pytest.raises(NotifyError) as info:
        slack(slack_rx).send(notification())
    exc = info.value
    assert (exc.transient, exc.reason, exc.code, exc.status) == (
        transient, reason, code, 302 if reply.status == 302 else reply.status)
    assert words in str(exc) and "Slack webhook 'slack'" in str(exc)
    assert exc.retry_after == (7.0 if reply.status == 429 else None)
    assert_exception_hides_url(exc)
    assert len(slack_rx.received) == 1  # the adapter never retries by itself


FAILED = ("Webhook message delivery failed with error: Microsoft Teams endpoint returned "
          "HTTP error {} with ContextId tcid=0,server=msgapi-production,cv=abc.0..")


@pytest.mark.parametrize(("reply", "transient", "reason", "words"), [
    (Reply(200, FAILED.format(429)), True, "rate-limited", "could not deliver it (HTTP 429)"),
    (Reply(200, FAILED.format(413)), False, "client-error", "28 KB"),
    (Reply(200, FAILED.format(400)), False, "client-error", "HTTP 400"),
    (Reply(200, FAILED.format(502)), True, "server-error", "HTTP 502"),
    (Reply(400, json.dumps({"error": {"code": "InvalidRequestContent",
                                      "message": "The input body for trigger 'manual' ..."}}),
           content_type="application/json"), False, "client-error", "InvalidRequestContent"),
    (Reply(401, json.dumps({"error": {"code": "DirectApiAuthorizationRequired",
                                      "message": f"bad sig {TEAMS_SIG}"}}),
           content_type="application/json"), False, "client-error", "copy the webhook URL"),
    (Reply(404, ""), False, "client-error", "deleted or turned off"),
    (Reply(429, "", (("Retry-After", "3"),)), True, "rate-limited", "retry after 3s"),
    (Reply(500, "oops"), True, "server-error", "HTTP 500"),
    (Reply(504, "<html>Gateway Timeout</html>", content_type="text/html"), True, "server-error",
     "Gateway Timeout"),
])
def test_teams_answers_are_classified(teams_rx: Receiver, reply: Reply, transient: bool,
                                      reason: str, words: str) -> None:
    """Including the legacy connector's failures wrapped in a 200."""
    teams_rx.script(reply)
    with pytest.raises(NotifyError) as info:
        teams(teams_rx).send(notification())
    exc = info.value
    assert (exc.transient, exc.reason) == (transient, reason)
    assert words in str(exc) and "Teams webhook 'teams'" in str(exc)
    assert_exception_hides_url(exc)


@pytest.mark.parametrize("reply", [Reply(202, ""), Reply(200, "1"), Reply(200, '{"ok": true}')])
def test_teams_success_answers(teams_rx: Receiver, reply: Reply) -> None:
    """Workflows answer 202 Accepted, the connector 200 "1", a flow with a response step anything."""
    teams_rx.script(reply)
    teams(teams_rx).send(notification())


def test_a_hanging_webhook_is_a_transient_timeout(slack_rx: Receiver, teams_rx: Receiver) -> None:
    slack_rx.script(Reply(hang=3))
    teams_rx.script(Reply(hang=3))
    for notifier in (slack(slack_rx, timeout=0.2), teams(teams_rx, timeout=0.2)):
        with pytest.raises(NotifyError) as info:
            notifier.send(notification())
        assert (info.value.transient, info.value.reason) == (True, "timeout")
        assert "no answer within 0.2s" in str(info.value)
        assert_exception_hides_url(info.value)


def test_connection_refused_is_transient_and_hides_the_url() -> None:
    """urllib3 quotes the URL's path in its message; it must not survive in the chain."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for notifier in (SlackNotifier(f"http://127.0.0.1:{port}{SLACK_PATH}", timeout=0.5),
                     TeamsNotifier(f"http://127.0.0.1:{port}{TEAMS_PATH}", timeout=0.5)):
        with pytest.raises(NotifyError) as info:
            notifier.send(notification())
        assert (info.value.transient, info.value.reason) == (True, "connection")
        assert info.value.__cause__ is not None  # chained, but scrubbed
        assert_exception_hides_url(info.value)
        assert_no_webhook_secret(repr(notifier))


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412500.0) == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


# -- the dispatcher -----------------------------------------------------------------

class Gate:
    """A notifier that blocks in ``send`` until the test opens the gate."""

    def __init__(self, name: str = "gate") -> None:
        self.name = name
        self.open = threading.Event()
        self.entered = threading.Event()
        self.got: list[int] = []

    def send(self, n: Notification) -> None:
        self.entered.set()
        self.open.wait(10)
        self.got.append(n.eventid)


class Raises:
    """A notifier that fails every time with ``exc``."""

    def __init__(self, exc: BaseException, name: str = "raises") -> None:
        self.name = name
        self.exc = exc
        self.calls = 0

    def send(self, n: Notification) -> None:
        self.calls += 1
        raise self.exc


def dispatcher(*notifiers: Any, sleeps: list[float] | None = None, **kw: Any) -> Dispatcher:
    kw = {"backoff": 0.01, "max_backoff": 1.0, "attempts": 4, "max_elapsed": 60.0, **kw}
    if sleeps is not None:
        kw["sleep"] = sleeps.append
    return Dispatcher(list(notifiers), redact=Redactor(), **kw)


def test_send_returns_at_once_while_the_webhook_hangs(slack_rx: Receiver) -> None:
    """The acknowledgement path never waits for, nor sees, a stuck webhook."""
    slack_rx.default = Reply(hang=5)
    d = dispatcher(slack(slack_rx, timeout=1.0))
    took = []
    for i in range(20):
        start = time.monotonic()
        d.send(notification(eventid=i))
        took.append(time.monotonic() - start)
    assert max(took) < 0.1
    eventually(lambda: slack_rx.received, 5, "a request at the Slack receiver", 0.01)
    start = time.monotonic()
    assert d.close(timeout=0.2) is False  # could not drain: that is reported, not raised
    assert time.monotonic() - start < 2.0
    stats = d.stats()["slack"]
    assert stats.sent == 0 and stats.dropped >= 18


def test_send_never_raises_whatever_the_notifier_does() -> None:
    """An unexpected exception in a notifier is counted as a bug, and its worker lives on."""
    boom = Raises(RuntimeError(f"boom {SLACK_PATH}"))
    gate = Gate()
    gate.open.set()
    d = dispatcher(boom, gate)
    d.send(notification(eventid=1))
    d.send(notification(eventid=2))
    assert d.flush(5)
    stats = d.stats()
    assert (stats["raises"].failed, dict(stats["raises"].failed_by_reason)) == (2, {"bug": 2})
    assert boom.calls == 2 and gate.got == [1, 2]
    d.close()


def test_transient_failures_are_retried_with_backoff_and_retry_after(slack_rx: Receiver) -> None:
    slack_rx.script(Reply(500, "rollup_error"), Reply(429, "", (("Retry-After", "3"),)))
    sleeps: list[float] = []
    d = dispatcher(slack(slack_rx), sleeps=sleeps, backoff=0.01)
    d.send(notification())
    assert d.flush(5)
    assert sleeps == [0.01, 3.0]  # doubling backoff, stretched to what Retry-After asked
    assert len(slack_rx.received) == 3
    stats = d.stats()["slack"]
    assert (stats.sent, stats.failed, stats.retries) == (1, 0, 2)
    d.close()


def test_permanent_failures_are_not_retried(slack_rx: Receiver, teams_rx: Receiver) -> None:
    slack_rx.script(Reply(404, "no_service"))
    teams_rx.script(Reply(200, FAILED.format(413)))
    sleeps: list[float] = []
    d = dispatcher(slack(slack_rx), teams(teams_rx), sleeps=sleeps)
    d.send(notification())
    assert d.flush(5)
    assert sleeps == [] and len(slack_rx.received) == 1 and len(teams_rx.received) == 1
    for name in ("slack", "teams"):
        stats = d.stats()[name]
        assert (stats.sent, stats.failed, stats.retries) == (0, 1, 0)
        assert dict(stats.failed_by_reason) == {"client-error": 1}
    d.close()


def test_retries_are_bounded_by_attempts(slack_rx: Receiver) -> None:
    slack_rx.default = Reply(503, "")
    sleeps: list[float] = []
    d = dispatcher(slack(slack_rx), sleeps=sleeps, attempts=3, backoff=0.5)
    d.send(notification())
    assert d.flush(5)
    assert sleeps == [0.5, 1.0] and len(slack_rx.received) == 3
    assert dict(d.stats()["slack"].failed_by_reason) == {"server-error": 1}
    d.close()


def test_retries_are_bounded_by_time(teams_rx: Receiver) -> None:
    """A Retry-After beyond the time budget: give up now rather than sleep past it."""
    teams_rx.script(Reply(429, "", (("Retry-After", "600"),)))
    sleeps: list[float] = []
    d = dispatcher(teams(teams_rx), sleeps=sleeps, max_elapsed=60.0)
    d.send(notification())
    assert d.flush(5)
    assert sleeps == [] and len(teams_rx.received) == 1
    assert dict(d.stats()["teams"].failed_by_reason) == {"rate-limited": 1}
    d.close()


def test_no_secret_from_the_event_reaches_the_receivers(slack_rx: Receiver,
                                                        teams_rx: Receiver) -> None:
    """Cause, steps, note, remediation and link pass the redactor before they leave."""
    secrets = ["hunter2hunter2", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl",
               "xoxb-123456789012-abcdefghijklmnop", "Zbx-Pa55w0rd!", "sk-proj-abcdefghijklmnopqrstuvwx"]
    n = notification(
        problem="Login failed for postgres://app:hunter2hunter2@db1:5432/app",
        cause=f"curl -H 'Authorization: Bearer {secrets[1]}' returned 401",
        steps=(f"Rotate the Slack token {secrets[2]}", "Check DB_PASSWORD=hunter2hunter2 in .env"),
        note=f"OPENAI_API_KEY={secrets[4]}", remediation="ran with password: hunter2hunter2",
        event_url=f"https://admin:{secrets[3]}@zbx.example.com/zabbix/tr_events.php?triggerid=1&eventid=2")
    d = dispatcher(slack(slack_rx), teams(teams_rx))
    d.send(n)
    assert d.flush(5)
    for rx in (slack_rx, teams_rx):
        raw = rx.bodies()
        assert rx.received and all(s not in raw for s in secrets), raw
        assert REDACTED in json.dumps(rx.received[0].json, ensure_ascii=False) or \
            mrkdwn_escape(REDACTED) in raw
    SLACK_SCHEMA.validate(slack_rx.received[0].json)
    TEAMS_SCHEMA.validate(teams_rx.received[0].json)
    d.close()


def test_the_webhook_url_never_reaches_the_log(slack_rx: Receiver, teams_rx: Receiver,
                                               logs: list[MutableMapping[str, Any]]) -> None:
    """Retries, failures and successes are logged at every level without the URL."""
    slack_rx.script(Reply(500, "rollup_error"), Reply(404, "no_service"))
    teams_rx.script(Reply(hang=2), Reply(401, json.dumps({"error": {"message": TEAMS_PATH}})))
    d = dispatcher(slack(slack_rx), teams(teams_rx, timeout=0.2), sleeps=[])
    d.send(notification(eventid=1))
    d.send(notification(eventid=2))
    assert d.flush(10)
    d.close()
    events = {e["event"] for e in logs}
    assert {"notification failed, retrying", "notification not delivered"} <= events
    assert any(e.get("reason") == "timeout" for e in logs if "retrying" in e["event"]) or \
        any("no answer" in str(e.get("error")) for e in logs)
    assert_no_webhook_secret(repr(logs))
    assert_no_webhook_secret(repr(d.stats()))


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    gate = Gate()
    d = dispatcher(gate, queue_size=2)
    d.send(notification(eventid=1))
    assert gate.entered.wait(5)  # 1 is being sent; the queue is empty
    for eventid in (2, 3, 4, 5, 6):
        d.send(notification(eventid=eventid))
    stats = d.stats()["gate"]
    assert (stats.queued, stats.dropped) == (2, 3)
    gate.open.set()
    assert d.flush(5)
    assert gate.got == [1, 5, 6]  # during a storm the newest problems are the ones to read
    stats = d.stats()["gate"]
    assert (stats.sent, stats.dropped, stats.queued) == (3, 3, 0)
    d.close()


def test_a_slow_notifier_does_not_delay_the_others(teams_rx: Receiver) -> None:
    gate = Gate("slow")
    d = dispatcher(gate, teams(teams_rx))
    d.send(notification())
    eventually(lambda: teams_rx.received, 2, "a request at the Teams receiver", 0.01)
    assert gate.got == []
    gate.open.set()
    assert d.flush(5)
    d.close()


def test_send_to_named_notifiers_only(slack_rx: Receiver, teams_rx: Receiver,
                                      logs: list[MutableMapping[str, Any]]) -> None:
    d = dispatcher(slack(slack_rx), teams(teams_rx))
    d.send(notification(), to=["teams", "pager"])
    assert d.flush(5)
    assert (len(slack_rx.received), len(teams_rx.received)) == (0, 1)
    assert any(e["event"] == "no such notifier" and e["notifiers"] == ["pager"] for e in logs)
    d.close()


def test_close_abandons_a_backoff_and_refuses_new_notifications() -> None:
    """Shutdown does not wait out a 30 s backoff; what is left is counted, not lost silently."""
    flaky = Raises(NotifyError("down", transient=True, reason="server-error"), name="flaky")
    d = Dispatcher([flaky], redact=Redactor(), backoff=30.0, max_backoff=30.0)  # real sleep
    d.send(notification(eventid=1))
    eventually(lambda: flaky.calls, 5, "the first attempt", 0.01)
    start = time.monotonic()
    assert d.close(timeout=0.1) is False
    assert time.monotonic() - start < 2.0
    d.send(notification(eventid=2))
    eventually(lambda: d.stats()["flaky"].failed, 5, "the refused notification counted", 0.01)
    stats = d.stats()["flaky"]
    assert flaky.calls == 1
    assert (stats.failed, dict(stats.failed_by_reason), stats.dropped) == (1, {"shutdown": 1}, 1)


def test_dispatcher_rejects_duplicate_names(slack_rx: Receiver) -> None:
    with pytest.raises(ValueError, match="unique"):
        Dispatcher([slack(slack_rx), slack(slack_rx)], redact=Redactor())


# -- the Zabbix link ----------------------------------------------------------------

@pytest.mark.parametrize(("frontend", "expected"), [
    ("https://zbx.example.com/zabbix", "https://zbx.example.com/zabbix/tr_events.php?triggerid=13&eventid=42"),
    ("https://zbx.example.com/zabbix/", "https://zbx.example.com/zabbix/tr_events.php?triggerid=13&eventid=42"),
    ("https://zbx.example.com/zabbix.php", "https://zbx.example.com/tr_events.php?triggerid=13&eventid=42"),
    (" http://10.0.0.5:8080/ ", "http://10.0.0.5:8080/tr_events.php?triggerid=13&eventid=42"),
])
def test_zabbix_event_url(frontend: str, expected: str) -> None:
    """The page Zabbix's own media types link to: tr_events.php with the trigger and the event."""
    assert zabbix_event_url(frontend, 42, 13) == expected


@pytest.mark.parametrize(("frontend", "eventid", "triggerid"), [
    ("zbx.example.com", 42, 13), ("ftp://zbx.example.com", 42, 13),
    ("https://zbx.example.com/?x=1", 42, 13), ("https://zbx.example.com", 0, 13),
    ("https://zbx.example.com", 42, 0)])
def test_zabbix_event_url_rejects(frontend: str, eventid: int, triggerid: int) -> None:
    with pytest.raises(ValueError):
        zabbix_event_url(frontend, eventid, triggerid)

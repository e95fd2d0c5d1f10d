"""Slack incoming-webhook adapter (requests): one Block Kit message per notification.

What it owns, so nothing else has to know:

* the payload: a ``text`` fallback (what phone notifications and screen
  readers show) plus blocks, within Slack's documented limits: at most 50
  blocks, header text 150 characters, section text 3000, at most 10 section
  fields of 2000 each, button text 75 and URL 3000. Texts are cut, never
  rejected; ``&``, ``<`` and ``>`` are escaped in mrkdwn, so a log line cannot
  ping ``<!channel>`` or smuggle in a ``<link|label>``;
* the link to Zabbix is a mrkdwn link by default: a URL button works too
  (``link_as_button=True``), but Slack then expects the app to acknowledge the
  click and shows a warning icon when nothing does, which an incoming webhook
  never will;
* the answers: 200 ``ok`` is success; 429 (with ``Retry-After``) and 5xx are
  transient; 400 ``invalid_payload``/``invalid_blocks``, 403
  ``action_prohibited``/``invalid_token``, 404 ``no_service``/
  ``channel_not_found``, 410 ``channel_is_archived`` are permanent, each with
  what ops should do about it;
* the webhook URL is a secret: it never appears in a message, a log line or
  the text of a chained exception.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import requests
import structlog
from pydantic import SecretStr

from hefestus.adapters.webhook import WebhookNotifier
from hefestus.notify.message import (
    Notification,
    fit,
    http_failure,
    retry_after_seconds,
    source_line,
)

log = structlog.get_logger("hefestus.slack")

MAX_BLOCKS = 50
HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
MAX_FIELDS = 10
BUTTON_TEXT_MAX = 75
BUTTON_URL_MAX = 3000
#: The top-level ``text`` may be 40,000 long, but as a notification preview a short line is better.
FALLBACK_MAX = 500
#: Each step before they are joined, so one endless step does not push out the others.
STEP_MAX = 800

_SEVERITY_EMOJI = {"disaster": ":rotating_light:", "high": ":red_circle:",
                   "average": ":large_orange_circle:", "warning": ":large_yellow_circle:",
                   "information": ":large_blue_circle:", "not classified": ":white_circle:"}
_CODE = re.compile(r"[a-z][a-z0-9_]{1,63}")
_HINTS = {
    "invalid_payload": "Slack could not read the message; a Hefestus bug, please report it",
    "invalid_blocks": "Slack rejected the message's blocks; a Hefestus bug, please report it",
    "invalid_blocks_format": "Slack rejected the message's blocks; a Hefestus bug, "
                             "please report it",
    "missing_text_or_fallback_or_attachments": "the message had no text; this is a Hefestus bug",
    "no_text": "the message had no text; this is a Hefestus bug",
    "too_many_attachments": "too many attachments; this is a Hefestus bug",
    "action_prohibited": "a workspace admin restricts posting through this webhook",
    "posting_to_general_channel_denied": "only admins may post to this channel",
    "invalid_token": "the webhook's token is no longer valid: create a new incoming webhook",
    "no_service": "the webhook was removed or its app uninstalled: create a new incoming webhook",
    "no_service_id": "the webhook URL is incomplete: copy it again from Slack",
    "no_team": "the webhook URL names no existing workspace: copy it again from Slack",
    "team_disabled": "the Slack workspace was disabled",
    "channel_not_found": "the webhook's channel was deleted: create a webhook for another channel",
    "channel_is_archived": "the webhook's channel is archived: unarchive it or create a webhook "
                           "for another channel",
    "user_not_found": "the webhook's user no longer exists",
    "rollup_error": "Slack had an internal error",
}


# -- the payload --------------------------------------------------------------------

def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters as entities; nothing else is escaped (Slack
    shows other entities literally)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link_url(url: str) -> str:
    """A URL for ``<url|label>``: entities for the control characters, and a ``|``
    (which would end the URL) percent-encoded."""
    return mrkdwn_escape(url).replace("|", "%7C")


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": fit(text, limit) or " ", "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _labelled(label: str, value: str, limit: int) -> dict[str, Any]:
    """``*Label*`` over an escaped value, the whole within ``limit``."""
    head = f"*{label}*\n"
    return _mrkdwn(head + fit(value, limit - len(head), escape=mrkdwn_escape))


def _severity_key(n: Notification) -> str:
    return n.severity.strip().lower().replace("_", " ")


def slack_payload(n: Notification, *, link_as_button: bool = False) -> dict[str, Any]:
    """The webhook body for ``n`` (already redacted): text fallback plus Block Kit blocks."""
    emoji = _SEVERITY_EMOJI.get(_severity_key(n), ":warning:")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(f"{emoji} {n.title}", HEADER_MAX)}]

    source = source_line(n)
    fields = [_labelled("Host", n.host or "-", FIELD_MAX),
              _labelled("Domain", n.domain or "-", FIELD_MAX)]
    if n.category:
        fields.append(_labelled("Category", n.category, FIELD_MAX))
    fields.append(_labelled("Source", source, FIELD_MAX))
    if n.clock > 0:
        iso = datetime.fromtimestamp(n.clock, UTC).strftime("%Y-%m-%d %H:%M UTC")
        # Slack shows the time in each reader's own time zone; ``iso`` is the fallback.
        fields.append(_mrkdwn(f"*Started*\n<!date^{n.clock}^{{date_short_pretty}} {{time}}|{iso}>"))
    blocks.append({"type": "section", "fields": fields[:MAX_FIELDS]})

    if n.cause.strip():
        blocks.append({"type": "section", "text": _labelled("Cause", n.cause, SECTION_MAX)})
    steps = [fit(s.strip(), STEP_MAX) for s in n.steps if s.strip()]
    if steps:
        numbered = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
        blocks.append({"type": "section", "text": _labelled("Next steps", numbered, SECTION_MAX)})
    if n.remediation and n.remediation.strip():
        head = ":wrench: *Remediation:* "
        blocks.append({"type": "context", "elements": [_mrkdwn(
            head + fit(n.remediation, SECTION_MAX - len(head), escape=mrkdwn_escape))]})
    if n.note.strip():
        head = ":information_source: "
        blocks.append({"type": "context", "elements": [_mrkdwn(
            head + fit(n.note, SECTION_MAX - len(head), escape=mrkdwn_escape))]})
    if n.event_url:
        label = f"Open event {n.eventid} in Zabbix"
        if link_as_button and len(n.event_url) <= BUTTON_URL_MAX:
            blocks.append({"type": "actions", "elements": [{
                "type": "button", "text": _plain("Open in Zabbix", BUTTON_TEXT_MAX),
                "url": n.event_url, "action_id": "hefestus-open-event"}]})
        else:
            link = f"<{_link_url(n.event_url)}|{mrkdwn_escape(label)}>"
            if len(link) <= SECTION_MAX:  # a longer URL is not a link we can show
                blocks.append({"type": "section", "text": _mrkdwn(link)})

    first_line = n.cause.strip().splitlines()[0] if n.cause.strip() else ""
    fallback = f"{n.title}: {first_line}" if first_line else n.title
    return {"text": fit(fallback, FALLBACK_MAX, escape=mrkdwn_escape) or "Hefestus",
            "blocks": blocks[:MAX_BLOCKS],
            # The Zabbix link is usually internal: Slack could not preview it anyway.
            "unfurl_links": False, "unfurl_media": False}


# -- the notifier -------------------------------------------------------------------

class SlackNotifier(WebhookNotifier):
    """Posts to one Slack incoming webhook (``https://hooks.slack.com/services/...``).

    ``send`` posts once and raises :class:`~hefestus.notify.dispatcher.NotifyError`; the
    :class:`~hefestus.notify.dispatcher.Dispatcher` retries. It expects a notification
    that is already redacted (the dispatcher does that).
    """

    service = "Slack"

    def __init__(self, url: str | SecretStr, *, name: str = "slack", timeout: float = 10.0,
                 connect_timeout: float = 5.0, verify_tls: bool = True,
                 link_as_button: bool = False, session: requests.Session | None = None) -> None:
        super().__init__(url, name=name, timeout=timeout, connect_timeout=connect_timeout,
                         verify_tls=verify_tls, session=session)
        self._link_as_button = link_as_button

    def payload(self, n: Notification) -> dict[str, Any]:
        return slack_payload(n, link_as_button=self._link_as_button)

    def _check(self, resp: requests.Response) -> None:
        status = resp.status_code
        body = (resp.text or "")[:300].strip()
        code = _code(body)
        if 200 <= status < 300:
            if code == "ok" or body == '{"ok":true}':
                log.debug("slack message posted", notifier=self.name)
                return
            raise self._error(f"HTTP {status} with {_excerpt(body)} instead of 'ok' "
                              "(a proxy in the way, or not a Slack incoming webhook URL?)",
                              transient=False, reason="invalid-answer", status=status)
        if 300 <= status < 400:
            raise self._redirected(status)
        transient, reason = http_failure(status)
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
        what = code or _excerpt(body)
        if status == 429:
            wait = f", retry after {retry_after:g}s" if retry_after is not None else ""
            message = f"rate limited (HTTP 429{wait})"
        else:
            hint = _HINTS.get(code or "", "")
            message = f"HTTP {status} {what}" + (f": {hint}" if hint else "")
        raise self._error(message, transient=transient, reason=reason, status=status, code=code,
                          retry_after=retry_after)


def _code(body: str) -> str | None:
    """Slack's one-word answer (``ok``, ``no_service``), or the ``error`` of a JSON answer."""
    if _CODE.fullmatch(body):
        return body
    if body.startswith("{"):
        try:
            data = json.loads(body)
        except ValueError:
            return None
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, str) and _CODE.fullmatch(err):
            return err
    return None


def _excerpt(body: str) -> str:
    text = re.sub(r"<[^>]*>", " ", body)  # HTML from a proxy: its words, not its markup
    text = " ".join(text.split())
    return repr(fit(text, 120)) if text else "an empty body"

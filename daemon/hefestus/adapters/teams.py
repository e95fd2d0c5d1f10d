"""Microsoft Teams webhook adapter (requests): one Adaptive Card per notification.

Two kinds of URL take the same body, a ``message`` activity with one Adaptive
Card attachment (``contentType: application/vnd.microsoft.card.adaptive``,
``contentUrl: null``):

* a Workflows (Power Automate) webhook, "When a Teams webhook request is
  received" (``...logic.azure.com/workflows/...`` or
  ``...api.powerplatform.com/powerautomate/...``), which answers 202 Accepted;
* a legacy Office 365 connector (``...webhook.office.com/webhookb2/...``),
  being retired by Microsoft, which answers 200 with the body ``1``, and which
  reports delivery failures (429, 413, 400) as **200** with a body "Webhook
  message delivery failed with error: Microsoft Teams endpoint returned HTTP
  error 429 ...": those are classified by the status in that text.

Limits: Teams refuses messages over 28 KB, and the connector allows 4
requests per second. The card is shrunk until its JSON fits; the dispatcher's
backoff handles throttling (429 with ``Retry-After`` from Workflows).
The card is version 1.4, which Teams and Workflows both render. The webhook
URL is a secret (``sig=`` signs Workflows URLs): it never appears in a
message, a log line or a chained exception's text.
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

log = structlog.get_logger("hefestus.teams")

CARD_VERSION = "1.4"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
#: Teams' limit is 28 KB for the whole message; leave room for what Teams wraps around it.
MAX_BYTES = 27 * 1024
MAX_STEPS = 20

# Severity -> TextBlock colour (Adaptive Cards' own names; Teams picks the shade per theme).
_COLOUR = {"disaster": "Attention", "high": "Attention", "average": "Warning",
           "warning": "Warning", "information": "Accent", "not classified": "Default"}
_DELIVERY_FAILED = re.compile(r"delivery failed.*?returned HTTP error (\d{3})", re.I | re.S)
_HINTS = {
    400: "Teams rejected the message (if this is a Workflows URL: does its flow expect an "
         "Adaptive Card, i.e. the template 'Post to a channel when a webhook request is "
         "received'?)",
    401: "the URL's signature is not accepted: copy the webhook URL again",
    403: "the URL's signature is not accepted or the flow may not run: copy the URL again",
    404: "the workflow or connector was deleted or turned off: create a new one",
    410: "the connector was removed: create a Workflows webhook instead",
    413: "the message is over Teams' 28 KB limit; this is a Hefestus bug, please report it",
}


# -- the payload --------------------------------------------------------------------

def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _card(n: Notification, cap: int) -> dict[str, Any]:
    """The message with every free text cut to a size derived from ``cap``."""
    colour = _COLOUR.get(n.severity.strip().lower().replace("_", " "), "Default")
    facts = [("Host", n.host or "-"), ("Severity", n.severity or "-"), ("Domain", n.domain or "-")]
    if n.category:
        facts.append(("Category", n.category))
    facts.append(("Source", source_line(n)))
    if n.clock > 0:
        started = datetime.fromtimestamp(n.clock, UTC).strftime("%Y-%m-%d %H:%M UTC")
        facts.append(("Started", started))
    facts.append(("Event", str(n.eventid)))

    body: list[dict[str, Any]] = [
        _text(fit(n.title, max(cap // 8, 80)), size="Medium", weight="Bolder", color=colour),
        {"type": "FactSet",
         "facts": [{"title": t, "value": fit(v, max(cap // 8, 40))} for t, v in facts]},
    ]
    if n.cause.strip():
        body += [_text("Cause", weight="Bolder", spacing="Medium"), _text(fit(n.cause, cap))]
    steps = [s.strip() for s in n.steps if s.strip()][:MAX_STEPS]
    if steps:
        body.append(_text("Next steps", weight="Bolder", spacing="Medium"))
        body += [_text(f"{i}. {fit(s, max(cap // 4, 80))}", spacing="Small")
                 for i, s in enumerate(steps, 1)]
    if n.remediation and n.remediation.strip():
        body.append(_text(f"**Remediation:** {fit(n.remediation, max(cap // 4, 80))}",
                          separator=True, spacing="Medium"))
    if n.note.strip():
        body.append(_text(fit(n.note, max(cap // 4, 80)), isSubtle=True, size="Small"))

    card: dict[str, Any] = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": CARD_VERSION,
                            "fallbackText": fit(n.title, 300), "body": body,
                            "msteams": {"width": "Full"}}
    if n.event_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in Zabbix",
                            "url": n.event_url}]
    return {"type": "message",
            "attachments": [{"contentType": CONTENT_TYPE, "contentUrl": None, "content": card}]}


def teams_payload(n: Notification) -> dict[str, Any]:
    """The webhook body for ``n`` (already redacted), shrunk until it fits Teams' size limit."""
    cap = 8000
    while True:
        payload = _card(n, cap)
        if len(json.dumps(payload).encode("utf-8")) <= MAX_BYTES or cap <= 200:
            return payload
        cap //= 2


# -- the notifier -------------------------------------------------------------------

class TeamsNotifier(WebhookNotifier):
    """Posts to one Teams Workflows webhook or legacy incoming-webhook connector.

    ``send`` posts once and raises :class:`~hefestus.notify.dispatcher.NotifyError`; the
    :class:`~hefestus.notify.dispatcher.Dispatcher` retries. It expects a notification
    that is already redacted (the dispatcher does that).
    """

    service = "Teams"

    def __init__(self, url: str | SecretStr, *, name: str = "teams", timeout: float = 10.0,
                 connect_timeout: float = 5.0, verify_tls: bool = True,
                 session: requests.Session | None = None) -> None:
        super().__init__(url, name=name, timeout=timeout, connect_timeout=connect_timeout,
                         verify_tls=verify_tls, session=session)

    def payload(self, n: Notification) -> dict[str, Any]:
        return teams_payload(n)

    def _check(self, resp: requests.Response) -> None:
        status = resp.status_code
        body = (resp.text or "")[:2000].strip()
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
        if 200 <= status < 300:
            failed = _DELIVERY_FAILED.search(body)
            if failed is None:  # 202 from Workflows, 200 "1" from a connector
                log.debug("teams message posted", notifier=self.name, status=status)
                return
            inner = int(failed.group(1))  # the connector's real answer, wrapped in a 200
            transient, reason = http_failure(inner) if inner >= 300 else (True, "server-error")
            hint = _HINTS.get(inner, "")
            raise self._error(f"accepted, but Teams could not deliver it (HTTP {inner})"
                              + (f": {hint}" if hint else ""),
                              transient=transient, reason=reason, status=inner,
                              retry_after=retry_after)
        if 300 <= status < 400:
            raise self._redirected(status)
        transient, reason = http_failure(status)
        code, detail = _error_detail(body)
        if status == 429:
            wait = f", retry after {retry_after:g}s" if retry_after is not None else ""
            message = f"rate limited (HTTP 429{wait})"
        else:
            hint = _HINTS.get(status, "")
            message = (f"HTTP {status}" + (f" {code}" if code else "")
                       + (f" ({detail})" if detail else "") + (f": {hint}" if hint else ""))
        raise self._error(message, transient=transient, reason=reason, status=status, code=code,
                          retry_after=retry_after)


def _error_detail(body: str) -> tuple[str | None, str]:
    """(code, message) from Power Automate's ``{"error": {"code", "message"}}``, or an excerpt."""
    if body.startswith("{"):
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            code = err.get("code")
            message = err.get("message")
            return (code if isinstance(code, str) else None,
                    fit(" ".join(message.split()), 200) if isinstance(message, str) else "")
    text = " ".join(re.sub(r"<[^>]*>", " ", body).split())
    return None, fit(text, 120)

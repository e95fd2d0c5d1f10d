"""What a chat notification carries, and the helpers every chat adapter shares.

Slack and Teams adapters (``adapters/slack.py``, ``adapters/teams.py``) own the
wire; they import this module, never the dispatcher, so both cut texts, classify
HTTP failures and hide the webhook URL the same way. No HTTP client here.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from hefestus.errors import NotifyReason

#: What a cut text ends with, so a reader knows there was more.
ELLIPSIS = "…"
#: Stands in for the webhook URL (or any part of it) in messages and logs.
HIDDEN_URL = "<webhook-url>"


# -- what is sent -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Notification:
    """One analysed problem, as a chat message shows it.

    Built by the pipeline from the Problem and the Suggestion; adapters turn it
    into their service's payload and add nothing that is not in here.
    """

    eventid: int
    host: str
    problem: str
    #: Zabbix severity label: "disaster", "high", "average", "warning", "information",
    #: "not classified".
    severity: str
    domain: str
    category: str | None
    cause: str
    steps: tuple[str, ...]
    #: Where the answer came from: "pattern linux:disk-full", "model llama3.1:8b", ...
    source: str
    #: 0.0 to 1.0; None when nobody can vouch for a number (a model's answer: its own guess).
    confidence: float | None
    note: str = ""
    #: One line on what was done about it: "Rundeck job 'restart nginx' succeeded in 12 s".
    remediation: str | None = None
    #: Link to the event in the Zabbix UI (:func:`zabbix_event_url`).
    event_url: str | None = None
    #: Unix time of the problem event; 0 when unknown.
    clock: int = 0

    @property
    def title(self) -> str:
        """``High on web1: Nginx is down``: the one line a phone notification shows."""
        severity = (self.severity or "problem").strip().capitalize()
        if not self.host:
            return f"{severity}: {self.problem}"
        return f"{severity} on {self.host}: {self.problem}"

    def redacted(self, redact: Callable[[str], str]) -> Notification:
        """A copy with every text field passed through ``redact`` (the URL too:
        a frontend URL may carry ``user:password@``)."""
        return replace(
            self, host=redact(self.host), problem=redact(self.problem),
            severity=redact(self.severity), domain=redact(self.domain),
            category=None if self.category is None else redact(self.category),
            cause=redact(self.cause), steps=tuple(redact(s) for s in self.steps),
            source=redact(self.source), note=redact(self.note),
            remediation=None if self.remediation is None else redact(self.remediation),
            event_url=None if self.event_url is None else redact(self.event_url))


def zabbix_event_url(frontend_url: str, eventid: int, triggerid: int) -> str:
    """The event's page in the Zabbix frontend (6.0 through 7.x): ``tr_events.php``.

    It is the page Zabbix's own Slack/Teams media types link to
    (``{$ZABBIX.URL}/tr_events.php?triggerid={TRIGGER.ID}&eventid={EVENT.ID}``);
    it needs both ids, since it shows the event within its trigger's history.
    ``frontend_url`` is what users type to reach the UI (``https://zbx.example.com/zabbix``);
    a trailing ``/`` or ``/zabbix.php`` / ``/index.php`` is dropped.
    """
    base = frontend_url.strip()
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {base!r}")
    if parts.query or parts.fragment:
        raise ValueError("give the frontend's base URL, without ?query or #fragment")
    path = parts.path.rstrip("/")
    if path.endswith(".php"):
        path = path.rsplit("/", 1)[0]
    if int(eventid) <= 0 or int(triggerid) <= 0:
        raise ValueError("eventid and triggerid must be positive")
    query = urlencode({"triggerid": int(triggerid), "eventid": int(eventid)})
    return f"{parts.scheme}://{parts.netloc}{path}/tr_events.php?{query}"


class Notifier(Protocol):
    """One chat destination. ``send`` posts one (already redacted) notification,
    once, and raises :class:`NotifyError` on any failure; retrying is not its job."""

    name: str

    def send(self, n: Notification) -> None: ...


# -- helpers shared by the adapters -------------------------------------------------

def source_line(n: Notification) -> str:
    """"pattern linux:disk-full · 95%", or "model llama3.1:8b · unverified": the same words as
    the Zabbix message's header, so chat never shows a number the message does not."""
    if n.confidence is None:
        return f"{n.source} · unverified"
    return f"{n.source} · {max(0.0, min(1.0, n.confidence)):.0%}"


def text_length(text: str) -> int:
    """Length in UTF-16 code units, the way JavaScript (and so the services'
    limits, as far as we can tell) counts: an emoji counts two. Never under-counts."""
    return len(text.encode("utf-16-le")) // 2


def fit(text: str, limit: int, *, escape: Callable[[str], str] | None = None) -> str:
    """``escape(text)``, cut so it is at most ``limit`` long and ends with ``…`` when cut.

    The cut is made on the raw text before escaping, so an entity (``&amp;``)
    is never split in half.
    """
    esc = escape or (lambda s: s)
    out = esc(text)
    if text_length(out) <= limit:
        return out
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:max(limit, 0)]
    raw = text[:limit]  # escaping never shortens, so no more of the raw text can fit
    lo, hi = 0, len(raw)  # the longest prefix raw[:n] whose escaped form still fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_length(esc(raw[:mid].rstrip()) + ELLIPSIS) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return esc(raw[:lo].rstrip()) + ELLIPSIS


def url_secrets(url: str) -> tuple[str, ...]:
    """The parts of a webhook URL that must not be shown: all of it, its path
    (the token lives there for Slack and Teams connectors) and its query values
    (``sig=`` for Power Automate), longest first."""
    parts = urlsplit(url)
    found = {url, parts.path if len(parts.path) > 1 else "", parts.query}
    found.update(v for _, v in parse_qsl(parts.query) if len(v) >= 8)
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by :data:`HIDDEN_URL`."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, HIDDEN_URL)
    return text


def scrub_exception(exc: BaseException, secrets: Sequence[str]) -> BaseException:
    """Hide the secrets in ``exc`` and the exceptions it chains, in place; returns ``exc``.

    HTTP clients put the URL in their messages (urllib3: ``Max retries exceeded
    with url: /services/T0/B0/XXXX``). We still chain the original
    (``raise NotifyError(...) from scrub_exception(exc, ...)``) for the
    traceback, but its text must not leak the webhook into a log.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        todo += [e.__cause__, e.__context__, *(a for a in e.args if isinstance(a, BaseException))]
        try:
            e.args = tuple(scrub(str(a), secrets) if not isinstance(a, (int, float)) else a
                           for a in e.args)
        except (TypeError, AttributeError):  # an exception type with read-only args
            continue
    return exc


def http_failure(status: int) -> tuple[bool, NotifyReason]:
    """(transient, reason) for an HTTP status that is not a success."""
    if status == 429:
        return True, "rate-limited"
    if status == 408:
        return True, "timeout"
    if status >= 500:
        return True, "server-error"
    return False, "client-error"


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))



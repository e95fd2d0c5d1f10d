"""The typed objects that flow through the pipeline.

The Zabbix adapter turns each raw ``event.get`` row into one frozen
:class:`Problem`; nothing downstream ever sees an API dict. Classification
and rendering produce further frozen values, so a stage can never mutate what
an earlier stage decided.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


def _is_valid(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_text(text: str) -> str:
    """``text`` as valid Unicode: lone surrogates become U+FFFD (the replacement character)."""
    if _is_valid(text):
        return text
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class Severity(enum.IntEnum):
    """Zabbix trigger severities, in Zabbix's own numbering."""

    NOT_CLASSIFIED = 0
    INFORMATION = 1
    WARNING = 2
    AVERAGE = 3
    HIGH = 4
    DISASTER = 5

    @classmethod
    def parse(cls, value: object) -> Severity:
        """Accept ``"high"``, ``"High"``, ``"not_classified"`` or ``4``; anything else is a
        ValueError whose message lists the names (config and rule files show it as is)."""
        try:
            if isinstance(value, int) and not isinstance(value, bool):
                return cls(value)
            if isinstance(value, str):
                key = value.strip().upper().replace(" ", "_").replace("-", "_")
                return cls(int(key)) if key.isdigit() else cls[key]
        except (KeyError, ValueError):
            pass
        names = ", ".join(s.label.replace(" ", "_") for s in cls)
        raise ValueError(f"unknown severity {value!r}; use one of {names}")

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").lower()


@dataclass(frozen=True, slots=True)
class ItemValue:
    """One item of the problem's trigger and its value at (or just before) the event."""

    name: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Ack:
    """One message already on an event (acknowledgement or comment), and whose it is."""

    userid: str
    message: str
    #: Written by Hefestus's own Zabbix user (or one configured as another Hefestus): only
    #: such a message is Hefestus's marker. Anyone may write "[Hefestus]" in a comment.
    by_hefestus: bool = False


@dataclass(frozen=True, slots=True)
class Problem:
    """One Zabbix problem event, as Hefestus sees it."""

    eventid: int
    clock: int
    name: str
    severity: Severity
    hosts: tuple[str, ...] = ()
    host_groups: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    opdata: str = ""
    items: tuple[ItemValue, ...] = ()
    triggerid: int = 0
    resolved: bool = False
    suppressed: bool = False
    acknowledged: bool = False
    #: Messages already attached to the event (used to spot Hefestus's marker).
    acks: tuple[Ack, ...] = ()
    #: Zabbix 6.4+ rank: the event this one is a symptom of; 0 for a cause (every event on 6.0).
    cause_eventid: int = 0
    #: The cause's host and problem name, for a symptom's pointer ("" when not readable).
    cause_host: str = ""
    cause_name: str = ""

    def __post_init__(self) -> None:
        # Text from logs can hold bytes that are not UTF-8 (lone surrogates after a lenient
        # decode): RE2, the model request and Zabbix's JSON-RPC all refuse those, and one such
        # event must not stall the poll behind it. Made valid here, once, at the edge.
        for name in ("name", "opdata", "cause_host", "cause_name"):
            object.__setattr__(self, name, valid_text(getattr(self, name)))
        object.__setattr__(self, "hosts", tuple(valid_text(h) for h in self.hosts))
        object.__setattr__(self, "tags", tuple((valid_text(t), valid_text(v)) for t, v in self.tags))
        if any(not _is_valid(i.value) for i in self.items):
            object.__setattr__(self, "items", tuple(ItemValue(i.name, i.key, valid_text(i.value))
                                                    for i in self.items))

    @property
    def host(self) -> str:
        return self.hosts[0] if self.hosts else ""

    @property
    def symptom(self) -> bool:
        """Ranked by an operator as a symptom of another problem (Zabbix 6.4+)."""
        return self.cause_eventid != 0

    @property
    def error_text(self) -> str:
        """What the patterns see: name, operational data and full item values.

        Zabbix cuts ``opdata`` to 20 characters per macro, so the item values
        are where the real log line or command output lives.
        """
        parts = [self.name]
        if self.opdata:
            parts.append(self.opdata)
        parts.extend(item.value for item in self.items if item.value)
        return "\n".join(parts)

    def tag_dict(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for tag, value in self.tags:
            out.setdefault(tag, []).append(value)
        return out


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict of the pattern dictionaries for one error text.

    ``category`` is ``None`` when nothing matched: an honest "unclassified",
    never a guess dressed up as a match.
    """

    domain: str
    category: str | None
    pattern_id: str | None
    confidence: float
    matched_text: str
    cause: str
    solutions: tuple[str, ...]
    #: Why this domain was chosen: the routing rule's name, or "best match".
    routed_by: str = ""
    groups: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    #: What operators must know about this text's advice: a captured value withheld from it.
    note: str = ""

    @property
    def classified(self) -> bool:
        return self.category is not None

    @property
    def source(self) -> str:
        return f"pattern {self.domain}:{self.pattern_id}" if self.pattern_id else "no pattern"

    def as_dict(self) -> dict[str, object]:
        return {
            "domain": self.domain,
            "category": self.category,
            "pattern_id": self.pattern_id,
            "confidence": round(self.confidence, 3),
            "matched_text": self.matched_text,
            "cause": self.cause,
            "solutions": list(self.solutions),
            "routed_by": self.routed_by,
        }


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which problem events intake asks Zabbix for."""

    min_severity: Severity = Severity.NOT_CLASSIFIED
    groupids: tuple[str, ...] = ()
    include_suppressed: bool = False


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One structured question to the language model, already redacted and fenced."""

    model: str
    system: str
    user: str
    #: JSON schema the answer must follow (sent as Ollama's ``format``).
    schema: dict[str, object]
    temperature: float
    max_tokens: int
    num_ctx: int
    timeout: float
    keep_alive: str = "30m"


@dataclass(frozen=True, slots=True)
class ModelReply:
    """The model's raw answer: content is untrusted until validated by the analysis stage."""

    content: str
    done_reason: str
    eval_count: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Suggestion:
    """What Hefestus tells operators about one event: the classification plus the advice
    actually shown, and where that advice came from."""

    classification: Classification
    cause: str
    steps: tuple[str, ...]
    confidence: float
    #: "pattern <domain>:<id>", "model <name>" or "no pattern".
    source: str
    #: Model name when the advice came from the model.
    model: str | None = None
    #: Why the model was not used or not trusted, shown to operators ("" when all went well).
    note: str = ""
    cached: bool = False
    fingerprint: str = ""
    #: Reason codes of the model answers the gate refused for this event, one per refused
    #: answer in the order they came (codes: ``hefestus.analysis.gate.REJECT_REASONS``).
    #: Empty when the model was not asked, failed outright, or its answer passed. A
    #: suggestion with rejections carries the pattern's advice (or the triage steps).
    rejected: tuple[str, ...] = ()

    @classmethod
    def from_pattern(cls, c: Classification, *, note: str = "", fingerprint: str = "",
                     rejected: tuple[str, ...] = ()) -> Suggestion:
        note = " ".join(n for n in (note, c.note) if n)  # the pattern's note travels with its steps
        return cls(c, c.cause, c.solutions, c.confidence, c.source, note=note, fingerprint=fingerprint,
                   rejected=rejected)

    @property
    def from_model(self) -> bool:
        return self.model is not None

    @property
    def verified_confidence(self) -> float | None:
        """A confidence fit to show as a number, or None.

        A pattern's confidence is set by whoever wrote and tested the pattern; a model's
        number is its own guess about itself (SmolLM2 said 90% for "error_message") and is
        not shown: ``confidence`` keeps it for logs and the API, uncalibrated.
        """
        return None if self.from_model else self.confidence


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one remediation ended: what the remediation engine hands to notifiers."""

    eventid: int
    host: str
    rule: str
    job_name: str
    project: str
    #: succeeded, failed, aborted, timedout, ..., unknown, rejected, error, dropped,
    #: refused, recovered, still-open
    result: str
    #: What was written to Zabbix ("" when nothing was: a problem that recovered).
    message: str
    permalink: str = ""
    exec_id: int | None = None

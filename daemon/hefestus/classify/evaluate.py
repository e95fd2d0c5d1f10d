"""`hefestus eval`: how often the dictionaries (and the model) are right, on a labelled corpus.

The message written into Zabbix is the product, and a dictionary change that looks
harmless can move texts from one domain to another. A corpus is JSON lines, one
labelled text a line::

    {"text": "...", "domain": "linux" | "none", "category": "disk-full", "source": "https://..."}

``domain: "none"`` marks a look-alike that is no infrastructure fault (a business
error, test output, a harmless warning): the right answer for it is to leave it
unclassified. ``category`` and ``source`` are optional.

This module only loads and scores: the caller passes the classification function
(the daemon's own routing + dictionaries) and, with ``--model``, the suggestion
function, so an outside corpus in the same format is scored with no code change.
The figures are results, not a test; tests/test_eval.py holds the committed
thresholds.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hefestus.values import Classification, Suggestion

NONE = "none"
UNCLASSIFIED = "unclassified"
_KEYS = {"text", "domain", "category", "source"}
_MAX_ERRORS_SHOWN = 20


class CorpusError(ValueError):
    """Bad corpus lines, each named ``file:line: why`` (the CLI exits 2 with them)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        shown = list(self.problems[:_MAX_ERRORS_SHOWN])
        if len(self.problems) > _MAX_ERRORS_SHOWN:
            shown.append(f"... and {len(self.problems) - _MAX_ERRORS_SHOWN} more")
        super().__init__("\n".join(shown))


@dataclass(frozen=True, slots=True)
class Sample:
    text: str
    domain: str  # a dictionary's domain, or NONE
    category: str | None
    source: str
    origin: str  # "file:line", for messages


def load_corpus(paths: Iterable[Path], *, domains: Iterable[str] | None = None) -> list[Sample]:
    """Every line of every file as a :class:`Sample`; all bad lines at once in a CorpusError.

    ``domains`` (the loaded dictionaries) lets a typo such as ``"kubernets"`` be caught
    here, not counted silently as a miss. Blank lines are skipped.
    """
    known = None if domains is None else {*domains, NONE}
    samples: list[Sample] = []
    problems: list[str] = []
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror or exc}")
            continue
        except UnicodeDecodeError:
            problems.append(f"{path}: not valid UTF-8")
            continue
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            origin = f"{path}:{n}"
            try:
                samples.append(_sample(line, origin, known))
            except ValueError as exc:
                problems.append(f"{origin}: {exc}")
    if problems:
        raise CorpusError(problems)
    return samples


def _sample(line: str, origin: str, known: set[str] | None) -> Sample:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON object: {exc.msg} (column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object: each line is {\"text\": ..., \"domain\": ...}")
    extra = sorted(set(raw) - _KEYS)
    if extra:
        raise ValueError(f"unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(_KEYS))})")
    text, domain = raw.get("text"), raw.get("domain")
    if not isinstance(text, str) or not text.strip():
        raise ValueError('"text" is missing or empty')
    if not isinstance(domain, str) or not domain:
        raise ValueError('"domain" is missing: a dictionary\'s domain, or "none"')
    if known is not None and domain not in known:
        raise ValueError(f"unknown domain {domain!r} (known: {', '.join(sorted(known))})")
    category, source = raw.get("category"), raw.get("source", "")
    if category is not None and (not isinstance(category, str) or not category):
        raise ValueError('"category" must be a non-empty string when given')
    if domain == NONE and category is not None:
        raise ValueError('a "none" text has no category')
    if not isinstance(source, str):
        raise ValueError('"source" must be a string (a URL or repo:path)')
    return Sample(text, domain, category, source, origin)


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True, slots=True)
class Scored:
    sample: Sample
    got: str  # the domain given, or UNCLASSIFIED
    category: str | None
    #: With the model: whether it was asked, whether its answer was used, how long it took.
    asked_model: bool = False
    model_answered: bool = False
    seconds: float = 0.0
    rejections: tuple[str, ...] = ()


@dataclass(slots=True)
class Figures:
    """One domain's (or the whole corpus's) counts; the shares are derived."""

    count: int = 0
    classified: int = 0
    domain_right: int = 0
    category_labelled: int = 0
    category_right: int = 0

    def add(self, o: Scored) -> None:
        self.count += 1
        self.classified += o.got != UNCLASSIFIED
        self.domain_right += o.got == o.sample.domain
        if o.sample.category is not None:
            self.category_labelled += 1
            self.category_right += o.got == o.sample.domain and o.category == o.sample.category

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "coverage": _share(self.classified, self.count),
                "domain_accuracy": _share(self.domain_right, self.count),
                "category_labelled": self.category_labelled,
                "category_accuracy": _share(self.category_right, self.category_labelled)}


@dataclass(slots=True)
class ModelFigures:
    asked: int = 0
    answered: int = 0  # the model's answer was used (it passed validation and the gate)
    #: Texts for which the model gave no answer to judge (down, timed out, breaker open).
    no_answer: int = 0
    seconds: float = 0.0
    #: Refused answers by reason (one text can have two: the answer and its retry).
    rejections: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        judged = self.answered + sum(self.rejections.values())
        return {"asked": self.asked, "answered": self.answered, "no_answer": self.no_answer,
                "answers_used": _share(self.answered, self.asked),
                "passed_gate": _share(self.answered, judged),
                "mean_answer_seconds": round(self.seconds / self.asked, 3) if self.asked else None,
                "rejections": dict(self.rejections.most_common())}


@dataclass(slots=True)
class Report:
    per_domain: dict[str, Figures] = field(default_factory=dict)
    known: Figures = field(default_factory=Figures)  # every text whose domain is not "none"
    none_count: int = 0
    none_left: int = 0
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)
    model: ModelFigures | None = None
    outcomes: list[Scored] = field(default_factory=list)

    def add(self, o: Scored) -> None:
        self.outcomes.append(o)
        expected = o.sample.domain
        self.per_domain.setdefault(expected, Figures()).add(o)
        if expected == NONE:
            self.none_count += 1
            self.none_left += o.got == UNCLASSIFIED
            if o.got != UNCLASSIFIED:
                self.confusions[(NONE, o.got)] += 1
        else:
            self.known.add(o)
            if o.got != expected:
                self.confusions[(expected, o.got)] += 1
        if self.model is not None and o.asked_model:
            self.model.asked += 1
            self.model.answered += o.model_answered
            self.model.seconds += o.seconds
            self.model.rejections.update(o.rejections)
            self.model.no_answer += not o.model_answered and not o.rejections

    @property
    def known_domain_accuracy(self) -> float | None:
        return _share(self.known.domain_right, self.known.count)

    @property
    def none_left_alone(self) -> float | None:
        return _share(self.none_left, self.none_count)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": self.known.count + self.none_count,
            "known_domain_accuracy": self.known_domain_accuracy,
            "none_left_alone": self.none_left_alone,
            "overall": self.known.as_dict(),
            "per_domain": {d: f.as_dict() for d, f in sorted(self.per_domain.items())},
            "confusions": [{"expected": e, "got": g, "count": n}
                           for (e, g), n in sorted(self.confusions.items(), key=lambda kv: (-kv[1], kv[0]))],
        }
        if self.model is not None:
            out["model"] = self.model.as_dict()
        return out


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


Classify = Callable[[str], Classification]
#: (text, its classification) -> the suggestion the daemon would write, or None when the
#: model is not wanted for this classification (then the pattern's answer stands).
Suggest = Callable[[str, Classification], Suggestion | None]


def evaluate(samples: Iterable[Sample], classify: Classify, *, suggest: Suggest | None = None,
             clock: Callable[[], float] = time.perf_counter) -> Report:
    """Score every sample. The domain is judged on the classification (what routes the
    advice and self-healing); the model, when given, is judged on whether its answer
    was used and how long it took."""
    report = Report(model=ModelFigures() if suggest is not None else None)
    for sample in samples:
        c = classify(sample.text)
        got = c.domain if c.classified else UNCLASSIFIED
        if suggest is None:
            report.add(Scored(sample, got, c.category))
            continue
        start = clock()
        s = suggest(sample.text, c)
        seconds = clock() - start
        if s is None:
            report.add(Scored(sample, got, c.category))
            continue
        report.add(Scored(sample, got, c.category, asked_model=True, model_answered=s.from_model,
                           seconds=seconds, rejections=s.rejected))
    return report


# --------------------------------------------------------------------------- printing


def format_table(report: Report) -> str:
    """The report as the plain table `hefestus eval` prints."""
    head = f"{'domain':<16}{'count':>7}{'coverage':>10}{'domain acc':>12}{'category acc':>16}"
    lines = [head, "-" * len(head)]
    for domain, f in sorted(report.per_domain.items()):
        if domain != NONE:
            lines.append(_row(domain, f))
    lines.append(_row("overall (known)", report.known))
    if report.none_count:
        lines.append(f"{NONE:<16}{report.none_count:>7}   left alone (unclassified): "
                     f"{_pct(report.none_left_alone)} ({report.none_left}/{report.none_count})")
    lines.append("")
    lines.append(f"known domain accuracy: {_pct(report.known_domain_accuracy)}   "
                 f"none left alone: {_pct(report.none_left_alone)}")
    if report.confusions:
        lines.append("confusions (expected -> got):")
        for (e, g), n in sorted(report.confusions.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {e} -> {g}: {n}")
    if report.model is not None:
        m = report.model.as_dict()
        mean = "-" if m["mean_answer_seconds"] is None else f"{m['mean_answer_seconds']:.2f} s"
        lines.append(f"model: asked {m['asked']}, answers used {m['answered']}, no answer {m['no_answer']}; "
                     f"answers that passed the gate: {_pct(m['passed_gate'])}; mean answer time {mean}")
        for reason, n in m["rejections"].items():
            lines.append(f"  rejected: {reason}: {n}")
    return "\n".join(lines)


def _row(name: str, f: Figures) -> str:
    d = f.as_dict()
    cat = f"{_pct(d['category_accuracy'])} of {f.category_labelled}" if f.category_labelled else "-"
    return f"{name:<16}{f.count:>7}{_pct(d['coverage']):>10}{_pct(d['domain_accuracy']):>12}{cat:>16}"


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def misses(report: Report) -> list[Scored]:
    """The texts that got the wrong domain (or were classified though labelled none)."""
    return [o for o in report.outcomes if o.got != (o.sample.domain if o.sample.domain != NONE
                                                    else UNCLASSIFIED)]

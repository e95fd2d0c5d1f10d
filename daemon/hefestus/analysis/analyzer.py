"""The analysis stage: pattern suggestion, model answer, or both — never a stall.

For a batch of classified events it decides, per event, whether the model is
asked (``[analysis] mode``), then asks it **once per fingerprint**: events
whose redacted error text differs only in volatile parts (numbers, ids, pod
suffixes, addresses, times, their own host name) share one model call, and
the answer is cached in the state store for ``cache_ttl`` seconds, so an
alert storm of 1,000 events of 10 kinds costs 10 calls, not 1,000.

Three things keep a sick model server from hurting the daemon:

* every call has a deadline (enforced by the adapter) and at most
  ``max_concurrency`` calls run at once;
* a circuit breaker (:mod:`hefestus.analysis.breaker`) opens after ``failure_threshold``
  consecutive failures; while open, no call is made and the events get the
  pattern suggestion at once, with a note saying why; after ``retry_after``
  seconds one call tries the model again;
* an answer that is invalid or cut off, or that the gate
  (:mod:`hefestus.analysis.gate`) refuses — placeholders, steps without an action,
  text copied from the event into a command, an answer about something else — gets one
  retry, then the pattern suggestion (or the domain's triage steps) with a note saying
  why: unvalidated model text never reaches Zabbix.

Secrets are redacted from everything put in a request.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from hefestus.analysis.breaker import Breaker, BreakerOpen
from hefestus.analysis.fingerprint import fingerprint, mask_hosts
from hefestus.analysis.gate import REJECT_REASONS, Rejection, RejectReason
from hefestus.analysis.gate import check as gate_check
from hefestus.analysis.prompt import (
    DEFAULT_INSTRUCTIONS,
    ModelAnswer,
    Profile,
    build_request,
    parse_answer,
    tail,
)
from hefestus.config import AnalysisSettings, DomainSettings, OllamaSettings
from hefestus.errors import ModelBadAnswer, ModelError, ModelNotFound, ModelUnavailable
from hefestus.pipeline.ports import LanguageModel
from hefestus.values import Classification, ModelReply, ModelRequest, Problem, Suggestion

log = structlog.get_logger("hefestus.analysis.analyzer")


class AnswerStore(Protocol):
    """Where answers are cached: :class:`hefestus.state.AnswerCache`, or :class:`MemoryCache`."""

    def cached_answers(self, fingerprints: Sequence[str]) -> dict[str, tuple[str, str]]: ...

    def cache_answer(self, fingerprint: str, model: str, answer: str, *, ttl: float) -> None: ...


class MemoryCache:
    """An answer cache in memory, for commands that must not touch the state file."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[str, str, float]] = {}

    def cached_answers(self, fingerprints: Sequence[str]) -> dict[str, tuple[str, str]]:
        now = time.time()
        return {fp: (m, a) for fp in fingerprints if (row := self._rows.get(fp)) and row[2] > now
                for m, a, _ in [row]}

    def cache_answer(self, fingerprint: str, model: str, answer: str, *, ttl: float) -> None:
        self._rows[fingerprint] = (model, answer, time.time() + ttl)


def compile_profiles(ollama: OllamaSettings, domains: Mapping[str, DomainSettings],
                     description: Callable[[str], str] = lambda _: "") -> Callable[[str], Profile]:
    """[ollama] defaults + [domains.X] overrides -> a profile lookup by domain.

    ``description`` gives a domain's dictionary description (it can change on reload,
    so it is asked each time; building a profile is cheap).
    """

    def build(domain: str) -> Profile:
        d = domains.get(domain, DomainSettings())
        template = d.prompt_template or DEFAULT_INSTRUCTIONS
        about = description(domain)
        instructions = template.format(domain=domain, description=about)
        return Profile(
            domain=domain, model=d.model or ollama.model, instructions=instructions, description=about,
            temperature=ollama.temperature if d.temperature is None else d.temperature,
            max_tokens=d.max_tokens or ollama.max_tokens, num_ctx=d.num_ctx or ollama.num_ctx,
            timeout=d.timeout or ollama.timeout, keep_alive=ollama.keep_alive)

    return build


#: Upper bounds (seconds) of the model latency histogram.
LATENCY_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)


@dataclass(slots=True)
class AnalysisStats:
    """Counters for logs, tests and metrics (bounded: a daemon runs for months)."""

    model_calls: int = 0
    cache_hits: int = 0
    model_failures: int = 0
    bad_answers: int = 0
    breaker_skips: int = 0
    #: Model answers the gate refused, by reason (every reason present, zero or not). A
    #: refused answer is counted once per model call, not per event of its fingerprint.
    rejected: dict[RejectReason, int] = field(default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0))
    seconds_sum: float = 0.0
    #: Cumulative counts per bound of LATENCY_BUCKETS, as Prometheus histograms want them.
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))

    def observe(self, seconds: float) -> None:
        self.seconds_sum += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1


@dataclass(frozen=True, slots=True)
class _Job:
    fingerprint: str
    problem: Problem
    classification: Classification
    profile: Profile
    error_text: str  # redacted


@dataclass(frozen=True, slots=True)
class _Fallback:
    """No model answer to show: the note saying why, and the gate's refusals on the way."""

    note: str
    rejected: tuple[RejectReason, ...] = ()


class Analyzer:
    def __init__(self, *, settings: AnalysisSettings, ollama: OllamaSettings,
                 profiles: Callable[[str], Profile], model: LanguageModel | None,
                 cache: AnswerStore, redact: Callable[[str], str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._profiles = profiles
        self._model = model
        self._enabled = model is not None and settings.mode != "pattern"
        self._cache = cache
        self._redact = redact
        self._pool = ThreadPoolExecutor(max_workers=ollama.max_concurrency, thread_name_prefix="model")
        self._breaker = Breaker(fail_max=ollama.failure_threshold, reset_timeout=ollama.retry_after,
                                counts=lambda e: isinstance(e, (ModelUnavailable, ModelNotFound)),
                                clock=clock)
        self._retry_after = ollama.retry_after
        self._last_failure = ""
        self.stats = AnalysisStats()
        self._stats_lock = threading.Lock()

    def _bump(self, counter: str) -> None:
        with self._stats_lock:  # pool threads count too
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def breaker_open(self) -> bool:
        return self._breaker.open

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wants_model(self, c: Classification) -> bool:
        """Whether this classification would be put to the model (by mode and availability)."""
        if not self._enabled:
            return False
        if self._settings.mode == "model-always":
            return True
        return not c.classified  # model-when-unclassified

    def suggest(self, items: Sequence[tuple[Problem, Classification]], *,
                remember: bool = True) -> list[Suggestion]:
        """One suggestion per item, in order. Never raises for model trouble.

        ``remember=False`` (dry runs) reads the answer cache but writes nothing to it.
        """
        out: list[Suggestion | None] = [None] * len(items)
        for group in self.suggest_groups(items, remember=remember):
            for i, s in group:
                out[i] = s
        return [s for s in out if s is not None]

    def suggest_groups(self, items: Sequence[tuple[Problem, Classification]], *,
                       remember: bool = True) -> Iterator[list[tuple[int, Suggestion]]]:
        """(index, suggestion) pairs in groups, as they become ready: first every item that
        needs no model call (no model wanted, or a cached answer), then each fingerprint's
        items as soon as its answer (or its failure) is in. The pipeline writes each group at
        once, so no event waits for a slower fingerprint's answer."""
        jobs: list[_Job | None] = []
        for problem, c in items:
            if not self.wants_model(c):
                jobs.append(None)
                continue
            profile = self._profiles(c.domain)
            text = self._redact(problem.error_text)
            fp = fingerprint(domain=c.domain, model=profile.model, prompt_version=profile.prompt_version,
                             text=mask_hosts(text, problem.hosts))
            jobs.append(_Job(fp, problem, c, profile, text))
        members: dict[str, list[int]] = {}  # fingerprint -> item indices; the first represents
        for i, j in enumerate(jobs):
            if j is not None:
                members.setdefault(j.fingerprint, []).append(i)
        ready: list[tuple[int, Suggestion]] = [(i, Suggestion.from_pattern(c))
                                               for i, ((_, c), j) in enumerate(zip(items, jobs, strict=True))
                                               if j is None]
        cached = self._cache.cached_answers(list(members)) if members else {}
        misses: list[_Job] = []
        for fp, idx in members.items():
            raw = cached.get(fp)
            answer = None
            if raw is not None:
                try:
                    answer = ModelAnswer.model_validate_json(raw[1])
                except ValueError:
                    answer = None  # a cache row from an older schema: ask again
                if answer is not None and self._gate(self._job(jobs, idx[0]), answer) is not None:
                    answer = None  # cached before the gate existed, or the gate grew stricter
            if answer is None:
                misses.append(self._job(jobs, idx[0]))
                continue
            self._bump("cache_hits")
            ready.extend((i, self._suggestion(items[i][1], self._job(jobs, i), answer, cached=True))
                         for i in idx)
        if ready:
            yield ready
        futures = {self._pool.submit(self._ask, job): job for job in misses}
        for future in as_completed(futures):
            job = futures[future]
            outcome = future.result()
            if isinstance(outcome, ModelAnswer) and remember and self._settings.cache_ttl > 0:
                self._cache.cache_answer(job.fingerprint, job.profile.model, outcome.model_dump_json(),
                                         ttl=self._settings.cache_ttl)
            yield [(i, self._suggestion(items[i][1], self._job(jobs, i), outcome))
                   for i in members[job.fingerprint]]

    @staticmethod
    def _job(jobs: list[_Job | None], i: int) -> _Job:
        job = jobs[i]
        assert job is not None
        return job

    def _gate_text(self, job: _Job) -> str:
        """What the model was shown of the event: the gate compares the answer with it."""
        return f"{self._redact(job.problem.name)}\n{tail(job.error_text, self._settings.max_error_chars)}"

    def _gate(self, job: _Job, answer: ModelAnswer) -> Rejection | None:
        """The gate on the answer as it would be shown (redacted), against the event's text, the
        domain's description and the pattern hint the model was given."""
        c = job.classification
        hint = [c.cause, *c.solutions] if c.classified else []
        return gate_check(self._redact(answer.cause), [self._redact(s) for s in answer.steps],
                          event_text=self._gate_text(job), context=[job.profile.description, *hint])

    def _suggestion(self, c: Classification, job: _Job, outcome: ModelAnswer | _Fallback, *,
                    cached: bool = False) -> Suggestion:
        if isinstance(outcome, _Fallback):
            return Suggestion.from_pattern(c, note=outcome.note, fingerprint=job.fingerprint,
                                           rejected=outcome.rejected)
        # The answer passed the gate for the event that was asked about; the other events of
        # its fingerprint differ in volatile parts only, but those parts are event text too.
        refused = self._gate(job, outcome)
        if refused is not None:
            return Suggestion.from_pattern(c, note=_refused_note(job.profile.model, refused, retried=False),
                                           fingerprint=job.fingerprint, rejected=(refused.reason,))
        hint = f" (pattern {c.domain}:{c.pattern_id} as hint)" if c.classified else ""
        return Suggestion(
            classification=c, cause=self._redact(outcome.cause),
            steps=tuple(self._redact(s) for s in outcome.steps), confidence=outcome.confidence,
            source=f"model {job.profile.model}{hint}", model=job.profile.model, cached=cached,
            fingerprint=job.fingerprint)

    # -- one model call (runs on a pool thread) ------------------------------------------

    def _ask(self, job: _Job) -> ModelAnswer | _Fallback:
        """The validated answer that passed the gate, or the note to show operators instead."""
        name = job.profile.model
        request = build_request(job.problem, job.classification, job.profile, error_text=job.error_text,
                                max_chars=self._settings.max_error_chars, redact=self._redact)
        last_bad = ""
        refused: list[Rejection] = []
        for attempt in (1, 2):
            try:
                reply = self._breaker.call(self._model_chat, request)
            except BreakerOpen:
                self._bump("breaker_skips")
                return _Fallback(f"Model {name} skipped: it failed {self._breaker.fail_max} times in a row "
                                 f"(last: {self._last_failure}); Hefestus tries it again after "
                                 f"{self._retry_after:g} s.", tuple(r.reason for r in refused))
            except ModelError as exc:
                self._bump("model_failures")
                self._last_failure = str(exc)
                log.warning("model call failed", model=name, fingerprint=job.fingerprint[:12], error=str(exc))
                kind = "is not pulled" if isinstance(exc, ModelNotFound) else "is unavailable"
                return _Fallback(f"Model {name} {kind}: {exc}", tuple(r.reason for r in refused))
            with self._stats_lock:
                self.stats.model_calls += 1
                self.stats.observe(reply.seconds)
            try:
                answer = parse_answer(reply)
            except ModelBadAnswer as exc:
                self._bump("bad_answers")
                last_bad = str(exc)
                log.warning("model answer rejected", model=name, attempt=attempt, reason=last_bad,
                            fingerprint=job.fingerprint[:12])
                request = _retry_request(request, reply.done_reason, last_bad)
                continue
            rejection = self._gate(job, answer)
            if rejection is not None:
                with self._stats_lock:
                    self.stats.rejected[rejection.reason] += 1
                refused.append(rejection)
                last_bad = ""
                log.warning("model answer refused by the gate", model=name, attempt=attempt,
                            reason=rejection.reason, detail=rejection.detail,
                            fingerprint=job.fingerprint[:12])
                log.debug("refused answer", fingerprint=job.fingerprint[:12],  # what did it say?
                          cause=self._redact(answer.cause)[:300],
                          steps=[self._redact(s)[:200] for s in answer.steps])
                request = _retry_request(request, reply.done_reason, f"{rejection.detail}. {_GUIDANCE}")
                continue
            log.info("model answered", model=name, fingerprint=job.fingerprint[:12],
                     seconds=round(reply.seconds, 2), eval_count=reply.eval_count)
            return answer
        reasons = tuple(r.reason for r in refused)
        if last_bad or not refused:
            return _Fallback(f"Model {name} gave no usable answer ({last_bad}), even on a retry.", reasons)
        return _Fallback(_refused_note(name, refused[-1], retried=True), reasons)

    def _model_chat(self, request: ModelRequest) -> ModelReply:
        assert self._model is not None
        return self._model.chat(request)


#: Told to the model after the gate refused its answer.
_GUIDANCE = ("Give the cause as one or two full sentences about this event, and distinct steps that "
             "are commands or actions; never copy text from the event into a command")


def _refused_note(model: str, rejection: Rejection, *, retried: bool) -> str:
    """The operator's note when the gate refused the model's answer (see hefestus.analysis.gate)."""
    again = ", even on a retry" if retried else ""
    return f"Model {model}'s answer was rejected{again} ({rejection.reason}: {rejection.detail}); not shown."


def _retry_request(request: ModelRequest, done_reason: str, reason: str) -> ModelRequest:
    """The retry: more room when the answer was cut off, a reminder of the format otherwise."""
    if done_reason == "length":
        return dataclasses.replace(request, max_tokens=min(request.max_tokens * 2, 32768))
    return dataclasses.replace(
        request, user=f"{request.user}\n\nYour previous answer was rejected: {reason}. "
                      "Answer with the JSON object only.")

"""Look-alike messages through AUTO routing: another domain's text never gets this domain's advice.

The cases (tests/data/patterns/lookalikes/cases.toml) are the messages the dictionary audit found
confused between domains, and those found since: each must be classified in its own domain or
left unclassified, both by ``hefestus analyze`` without ``--domain`` and by the daemon's routing
of an event that no rule claims.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from hefestus.classify.knowledge import Knowledge, load_knowledge
from hefestus.values import Classification, ItemValue, Problem, Severity
from tests.support.paths import DATA, ROOT

CASES: list[dict[str, Any]] = tomllib.loads((DATA / "patterns" / "lookalikes" / "cases.toml").read_text())["case"]


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge(ROOT / "rules", ROOT / "patterns")


def _event(text: str) -> Problem:
    """An event whose trigger name, host and tags match no routing rule: the default (auto) route."""
    return Problem(eventid=1, clock=0, name="Log monitor: new error line", severity=Severity.AVERAGE,
                   hosts=("host-1",), items=(ItemValue("log", "log[/var/log/app.log]", text),))


def _check(case: dict[str, Any], c: Classification) -> None:
    got = f"{c.domain}/{c.pattern_id}"
    if not c.classified:
        return  # left alone: no one's advice
    assert case["domain"] != "none", f"{got} claimed a text no dictionary should (was {case['was']})"
    assert c.domain == case["domain"], f"{got}: another domain's advice (was {case['was']})"
    if "category" in case:
        assert c.category == case["category"], got
    if "not_pattern" in case:
        assert c.pattern_id is not None and not c.pattern_id.startswith(case["not_pattern"]), got


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["text"][:50])
def test_a_lookalike_gets_its_own_domain_or_none(case: dict[str, Any], knowledge: Knowledge) -> None:
    _check(case, knowledge.analyze(case["text"]))
    _check(case, knowledge.classify(_event(case["text"])))


def test_the_event_really_takes_the_default_auto_route(knowledge: Knowledge) -> None:
    c = knowledge.classify(_event("curl: (60) SSL certificate problem: certificate has expired"))
    assert "best match of all dictionaries" in c.routed_by


def test_every_case_names_a_known_domain_and_a_source(knowledge: Knowledge) -> None:
    domains = set(knowledge.catalog.domains) | {"none"}
    for case in CASES:
        assert case["domain"] in domains and case["source"].strip() and case["was"].strip(), case
    assert len({c["text"] for c in CASES}) == len(CASES)

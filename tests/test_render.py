"""The acknowledgement message: marked, readable, and never over Zabbix's 2048 characters."""

from __future__ import annotations

from hefestus.pipeline.render import MARKER, ZABBIX_MESSAGE_LIMIT, render
from hefestus.values import Classification


def cls(**kw: object) -> Classification:
    base: dict[str, object] = dict(domain="linux", category="disk-full", pattern_id="disk-full",
                                   confidence=0.85, matched_text="No space left on device",
                                   cause="The filesystem is full.", solutions=("df -h", "du -xsh /var/*"),
                                   routed_by="rule 'linux-servers'")
    base.update(kw)
    return Classification(**base)  # type: ignore[arg-type]


def test_layout() -> None:
    msg = render(cls())
    assert msg.splitlines() == [
        f"{MARKER} linux / disk-full — pattern linux:disk-full, confidence 85%",
        "Cause: The filesystem is full.",
        "Matched: No space left on device",
        "Next steps:",
        "1. df -h",
        "2. du -xsh /var/*",
        "Routed by rule 'linux-servers'.",
    ]


def test_unclassified_says_so_and_how_to_teach() -> None:
    msg = render(cls(category=None, pattern_id=None, confidence=0.0, matched_text="",
                     cause="No pattern of the linux dictionary matched this text.",
                     solutions=("journalctl -p err -b",)))
    lines = msg.splitlines()
    assert lines[0] == f"{MARKER} linux / unclassified — no pattern matched"
    assert lines[1].startswith("Cause: Unknown.")
    assert "Triage steps:" in lines and "1. journalctl -p err -b" in lines
    assert "add a pattern to patterns/linux.toml" in msg


def test_overlong_content_is_shortened_from_the_least_important_end() -> None:
    steps = tuple(f"step {i}: " + "x" * 150 for i in range(40))
    msg = render(cls(solutions=steps, matched_text="m" * 1000, cause="c" * 500))
    assert len(msg) <= ZABBIX_MESSAGE_LIMIT
    lines = msg.splitlines()
    assert lines[0].startswith(MARKER)
    assert lines[4].startswith("1. step 0: ")  # the first step survives
    assert any(line.startswith("(+") and "more steps" in line for line in lines)
    assert lines[-1] == "Routed by rule 'linux-servers'."


def test_a_single_huge_field_is_cut_not_rejected() -> None:
    for field in ("cause", "matched_text"):
        msg = render(cls(**{field: "y" * 10_000}))
        assert len(msg) <= ZABBIX_MESSAGE_LIMIT and msg.startswith(MARKER)
    msg = render(cls(solutions=("z" * 5000,)))
    assert len(msg) <= ZABBIX_MESSAGE_LIMIT and "1. zzz" in msg


def test_custom_limit_is_honoured() -> None:
    msg = render(cls(solutions=tuple("step " * 20 for _ in range(10))), limit=300)
    assert len(msg) <= 300 and msg.startswith(MARKER)


def test_model_answer_says_where_it_came_from_and_leaves_out_the_event_excerpt() -> None:
    """A model answer is shared by a storm's events: no per-event excerpt, so they batch. Its
    self-reported confidence (0.7 here) is not shown: nothing calibrates it."""
    from hefestus.values import Suggestion

    c = cls()
    s = Suggestion(c, "Log rotation stopped and /var filled up.", ("df -h /var", "journalctl -u logrotate"),
                   0.7, "model llama3.1:8b (pattern linux:disk-full as hint)", model="llama3.1:8b")
    assert s.verified_confidence is None
    assert render(s).splitlines() == [
        f"{MARKER} linux / disk-full — model llama3.1:8b (pattern linux:disk-full as hint), unverified",
        "Cause: Log rotation stopped and /var filled up.",
        "Next steps:",
        "1. df -h /var",
        "2. journalctl -u logrotate",
        "Note: advice written by a language model from the event text; check it before acting.",
        "Routed by rule 'linux-servers'.",
    ]


def test_fallback_note_is_shown_with_the_pattern_suggestion() -> None:
    from hefestus.values import Suggestion

    s = Suggestion.from_pattern(cls(), note="Model llama3.1:8b is unavailable: Ollama at http://m:11434: "
                                            "cannot connect (is it running?) while asking llama3.1:8b")
    lines = render(s).splitlines()
    assert lines[0] == f"{MARKER} linux / disk-full — pattern linux:disk-full, confidence 85%"
    assert "Matched: No space left on device" in lines
    assert lines[-2].startswith("Note: Model llama3.1:8b is unavailable: Ollama at http://m:11434")


def test_an_unclassified_model_answer_is_unverified_and_shows_no_percentage() -> None:
    from hefestus.values import Suggestion

    c = cls(category=None, pattern_id=None, confidence=0.0, matched_text="", domain="unknown")
    s = Suggestion(c, "The payment gateway's upstream refuses the TLS handshake.", ("openssl s_client",),
                   0.9, "model smollm2:135m", model="smollm2:135m")
    first = render(s).splitlines()[0]
    assert first == f"{MARKER} unknown / unclassified — model smollm2:135m, unverified"
    assert "%" not in first


def test_a_pattern_keeps_its_confidence_even_after_the_gate_refused_the_model() -> None:
    from hefestus.values import Suggestion

    s = Suggestion.from_pattern(cls(), note="Model smollm2:135m's answer was rejected, even on a retry "
                                            "(off-topic: …); not shown.", rejected=("off-topic", "off-topic"))
    assert s.verified_confidence == 0.85
    lines = render(s).splitlines()
    assert lines[0] == f"{MARKER} linux / disk-full — pattern linux:disk-full, confidence 85%"
    assert lines[-2].startswith("Note: Model smollm2:135m's answer was rejected")

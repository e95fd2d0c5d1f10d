"""The deduplication key that lets an alert storm cost one LLM call.

When a deployment crash-loops, Zabbix raises the same problem for every pod,
every restart, every node: texts that differ only in pod suffixes, timestamps,
addresses and counters. :func:`normalise` replaces those volatile parts with
placeholders, and :func:`fingerprint` hashes the result together with what
else decides the answer (domain, model, prompt version), so one analysis can
be reused for the whole storm and a new model or prompt asks again.

Everything is RE2 (texts may be 1 MB and crafted), and only the head of a
text is looked at: the first lines say what went wrong, the rest is detail.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Sequence
from typing import Any

import re2

from hefestus.classify.regex import compile_regex

SCHEME = "hefestus-fp-2"  # bump when normalise changes, so old keys stop matching
RAW_LIMIT = 64 * 1024  # characters read; leaves room for placeholders shrinking the text
LIMIT = 4096  # characters of normalised text that count
_MAX_ROUNDS = 8

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?"
_ZONE = r"(?:[ ]?(?:z|utc|gmt|[+-]\d{2}:?\d{2})\b)?"
_TIME = compile_regex("(?:" + "|".join((
    rf"\b\d{{4}}-\d{{2}}-\d{{2}}(?:[t ]{_CLOCK})?{_ZONE}",  # ISO 8601 / RFC 3339
    rf"\b\d{{4}}/\d{{2}}/\d{{2}}(?:[ ]{_CLOCK})?",  # 2024/04/23 12:34:56 (nginx error.log)
    rf"\b(?:{_DAY}\s+)?{_MONTH}\s+\d{{1,2}}(?:,?\s+\d{{4}})?\s+{_CLOCK}(?:\s+\d{{4}})?{_ZONE}",  # syslog, ctime
    rf"\b(?:{_DAY}\s+)?\d{{1,2}}\s+{_MONTH}\s+\d{{4}}\s+{_CLOCK}{_ZONE}",  # RFC 2822
    rf"\b\d{{1,2}}/{_MONTH}/\d{{4}}:{_CLOCK}(?:\s+[+-]\d{{4}})?",  # access logs
    rf"\b{_CLOCK}\b{_ZONE}",  # a bare time of day
)) + r")\b")  # never glued to a word: "2024-04-230x0" is no date
# klog headers: "E0423 12:34:56.789012" - the date is glued to the severity letter.
_KLOG = compile_regex(r"\b(?P<sev>[IWEF])\d{4} +<time>", case_sensitive=True)
_UUID = compile_regex(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_IPV4 = compile_regex(r"\b(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?::\d{1,5})?\b")
# IPv6 by shape (hex groups of 1-4, at most one "::"), matched leftmost-longest
# so "fe80::1" is not cut at "fe80::"; ipaddress has the last word.
_H = "[0-9a-f]{1,4}"
_V4 = r"(?:\d{1,3}\.){3}\d{1,3}"
_V6 = "|".join((
    rf"(?:{_H}:){{7}}{_H}", rf"(?:{_H}:){{1,7}}:", rf"(?:{_H}:){{1,6}}:{_H}",
    *(rf"(?:{_H}:){{1,{n}}}(?::{_H}){{1,{7 - n}}}" for n in range(5, 0, -1)),
    rf":(?::{_H}){{1,7}}", "::", rf"(?:(?:{_H}:){{6}}|(?:(?:{_H}:){{1,4}}|:):(?:{_H}:){{0,4}}){_V4}",
))
_LONGEST = re2.Options()
_LONGEST.log_errors, _LONGEST.longest_match, _LONGEST.case_sensitive = False, True, False
_LONGEST.max_mem = 8 << 20
_IPV6 = re2.compile(rf"\[(?P<br>(?:{_V6})(?:%[\w.-]+)?)\](?::\d{{1,5}})?|(?P<bare>(?:{_V6})(?:%[\w.-]+)?)",
                    _LONGEST)
_MAC = compile_regex(r"\b(?:[0-9a-f]{2}[:-]){5}[0-9a-f]{2}\b")
# Pod names: Kubernetes builds suffixes from consonants and digits without
# vowels, 0, 1 or 3, so words like "crash-loop" or "back-off" never look like one.
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_POD = compile_regex(
    rf"\b(?P<name>[a-z0-9](?:[a-z0-9.-]*?[a-z0-9])?)-(?:{_SAFE}{{5,10}}-{_SAFE}{{5}}|{_SAFE}{{5}})"
    r"(?P<end>$|[^a-z0-9-])", case_sensitive=True)
_HEX = compile_regex(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{7,}\b")
_DURATION = compile_regex(r"\b(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d))+\b", case_sensitive=True)
# A number standing alone: not part of a word or version glued to one (php8.2-fpm).
_NUMBER = compile_regex(r"(?P<pre>^|[^\w.])[-+]?\d+(?:\.\d+)*\b")
# kubectl's event counters: "(x244 over 5h)".
_COUNTER = compile_regex(r"\bx\d+\b", case_sensitive=True)
_SPACE = compile_regex(r"\s+")


def _wordy(text: str, i: int) -> bool:
    """Word characters, and our placeholders' brackets: "fe80::Apr" and the
    "fe80::<time>" it becomes must be judged alike, or normalise is not idempotent."""
    return 0 <= i < len(text) and (text[i].isalnum() or text[i] in "_<>")


def _ipv6(m: Any) -> str:
    addr = m.group("br") or m.group("bare")
    text, start, end = m.string, m.start(), m.end()
    if m.group("br") is None and (_wordy(text, start - 1) or _wordy(text, end)):
        return str(m.group(0))  # part of a longer word ("std::vector", "cafe:beef:1x")
    if not any(c.isdigit() for c in addr):
        return str(m.group(0))  # "::" alone, or hex words like "dead::beef"
    try:
        ipaddress.IPv6Address(addr)
    except ValueError:
        return str(m.group(0))
    return "<ip>"


def _hex(m: Any) -> str:
    word = str(m.group(0))
    if word[:2].lower() == "0x":
        return "<hex>"
    has_digit = any(c.isdigit() for c in word)
    return "<hex>" if has_digit and not word.isdigit() else word


# Order matters: ids first (a pod's hash and a UUID look like hex, and hex
# words glued to "::" would decide what an address is), then addresses before
# times (fe80::12:34 is not a clock), numbers last. Each step names the characters
# it cannot change a text without: a digit ("0"), or one of its punctuation marks.
# No step puts a digit in (placeholders have none), so a round that starts without
# digits skips the steps that need one: the fixed-point round after the first is cheap.
_STEPS: tuple[tuple[Any, Any, bool, str], ...] = (
    (_UUID, "<uuid>", False, "-"),
    (_MAC, "<mac>", False, ":-"),
    (_POD, lambda m: m.group("name") + "-<pod>" + m.group("end"), False, "-"),
    (_HEX, _hex, True, ""),  # a word of hex letters only is left as it is
    (_IPV6, _ipv6, True, ":"),  # an address without a digit is left as it is
    (_IPV4, "<ip>", True, "."),
    (_TIME, "<time>", True, ""),
    (_KLOG, lambda m: m.group("sev") + "<time>", True, ""),
    (_DURATION, "<dur>", True, ""),
    (_COUNTER, "x<n>", True, ""),
    (_NUMBER, lambda m: m.group("pre") + "<n>", True, ""),
)
_DIGIT = compile_regex(r"\d")


def normalise(text: str) -> str:
    """The text with volatile parts replaced by placeholders, whitespace collapsed.

    Words, quoted names, unit names and paths stay, since they say *what*
    failed; the placeholders are ``<time> <uuid> <ip> <mac> <pod> <hex> <dur> <n>``.
    A replacement can change what its neighbour looks like ("fe80::1:2s" holds
    an address only once "2s" is a duration), so the steps repeat until nothing
    changes: the result is a fixed point, and normalising it again is a no-op.
    """
    out = str(_SPACE.sub(" ", text[:RAW_LIMIT])).strip(" ")
    for _ in range(_MAX_ROUNDS):  # two rounds for real texts; the bound is for crafted ones
        before = out
        digits = _DIGIT.search(out) is not None
        for regex, repl, needs_digit, marks in _STEPS:
            if (needs_digit and not digits) or (marks and not any(c in out for c in marks)):
                continue
            out = str(regex.sub(repl, out))
        if out == before:
            break
    if len(out) > LIMIT:  # cut at a space, so no half token becomes a new one
        head = out[:LIMIT + 1]
        out = head.rsplit(" ", 1)[0] if " " in head else out[:LIMIT]
    return out.rstrip(" ")


def fingerprint(*, domain: str, model: str, prompt_version: str, text: str) -> str:
    """sha256 hex over everything that decides the answer.

    The fields are hashed as a JSON array, so no choice of values can make two
    different tuples serialise alike (as ``"a|b" + "c"`` and ``"a" + "b|c"`` would).
    """
    # An all-digit id reads as <n>, one with a letter as <hex>: for the key they are one kind.
    key = normalise(text).replace("<hex>", "<n>")
    payload = json.dumps([SCHEME, domain, model, prompt_version, key],
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def mask_hosts(text: str, hosts: Sequence[str]) -> str:
    """An event's own host names are volatile for dedup: the same error on 50 hosts is one kind."""
    for host in sorted((h for h in hosts if len(h) >= 3), key=len, reverse=True):
        text = text.replace(host, "<host>")
    return text

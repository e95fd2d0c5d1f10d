"""The fault-injection summary: tests record a row per fault, tests/conftest.py prints them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

K = TypeVar("K")

#: (fault, events, lost, duplicated) recorded by the fault-injection tests, printed at the end.
FAULT_ROWS: list[tuple[str, int, int, int]] = []


def record_fault(fault: str, messages: Mapping[K, Sequence[str]]) -> tuple[int, int]:
    """Count, for events that should each carry exactly one Hefestus message, how many carry
    none (lost) and how many more than one (duplicated); keep the row for the summary."""
    lost = sum(1 for m in messages.values() if not m)
    dup = sum(1 for m in messages.values() if len(m) > 1)
    FAULT_ROWS.append((fault, len(messages), lost, dup))
    return lost, dup

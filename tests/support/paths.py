"""Where things are: the repository and the tests' own data. Tests read nothing outside it."""

from __future__ import annotations

from pathlib import Path

#: The repository's root (pyproject.toml, rules/, patterns/, deploy/).
ROOT = Path(__file__).resolve().parents[2]
#: tests/data: small, stable rules, patterns and vendored reference documents.
DATA = ROOT / "tests" / "data"

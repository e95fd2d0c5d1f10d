"""Whatever ops type into a config, rule or pattern file, the answer is a ConfigError, never a traceback."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hefestus.classify.patterns import load_dictionary
from hefestus.classify.routing import load_router
from hefestus.config import load_settings
from hefestus.errors import ConfigError

keys = st.sampled_from(["zabbix", "intake", "rule", "pattern", "dictionary", "default", "url", "token",
                        "regex", "id", "domain", "category", "poll_interval", "min_severity", "x"])
values = st.one_of(st.integers(-5, 10**6).map(str), st.sampled_from(['"(a+"', '"http://z"', "true", "[1, 2]",
                                                                      '"high"', '"(?=x)"', "{}", '"auto"']),
                   st.text(max_size=20).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'))
line = st.one_of(st.tuples(keys, values).map(lambda kv: f"{kv[0]} = {kv[1]}"),
                 keys.map(lambda k: f"[{k}]"), keys.map(lambda k: f"[[{k}]]"), st.text(max_size=30))
documents = st.lists(line, max_size=12).map("\n".join)


@contextmanager
def _written(name: str, text: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(text.encode("utf-8", "surrogatepass"))  # lone surrogates = invalid UTF-8
        yield p


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(documents)
def test_config_loader_only_raises_config_errors(text: str) -> None:
    with _written("hefestus.toml", text) as p:
        try:
            load_settings(p, {})
        except ConfigError as exc:
            assert "hefestus.toml" in str(exc)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(documents)
def test_pattern_loader_only_raises_config_errors(text: str) -> None:
    with _written("x.toml", text) as p:
        try:
            load_dictionary(p)
        except ConfigError as exc:
            assert "x.toml" in str(exc)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(documents)
def test_rule_loader_only_raises_config_errors(text: str) -> None:
    with _written("10-x.toml", text) as p:
        try:
            load_router(p.parent, domains=["linux", "x"])
        except ConfigError as exc:
            assert "10-x.toml" in str(exc)

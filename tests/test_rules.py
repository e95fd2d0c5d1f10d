"""Routing rules: explicit order, conditions, default, and file:line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hefestus.classify.knowledge import Knowledge
from hefestus.classify.routing import load_router
from hefestus.errors import ConfigError
from hefestus.testing import problem
from hefestus.values import Severity

DOMAINS = ["linux", "database", "kubernetes"]


def test_first_matching_rule_wins_and_all_conditions_must_hold(test_knowledge: Knowledge) -> None:
    router = test_knowledge.router
    assert router.route(problem(groups=["Databases", "Linux servers"])).rule == "rule 'db-hosts'"
    prod_web = problem(host="web-01", groups=["Web"], severity=Severity.HIGH, tags=[("env", "production")])
    assert router.route(prod_web).domain == "linux"
    # one condition short -> not this rule -> default
    assert router.route(problem(host="web-01", groups=["Web"], severity=Severity.AVERAGE,
                                tags=[("env", "production")])).rule == "default"
    assert router.route(problem(host="web-01", groups=["Web"], severity=Severity.HIGH,
                                tags=[("env", "staging")])).rule == "default"


def test_routed_domain_without_match_falls_back_to_best(test_knowledge: Knowledge) -> None:
    p = problem(groups=["Databases"], text="kernel: write error: No space left on device")
    c = test_knowledge.classify(p)
    assert (c.domain, c.category) == ("linux", "disk-full")
    assert "rule 'db-hosts', then best match (nothing in database matched)" == c.routed_by


def _rules(tmp_path: Path, *files: tuple[str, str]) -> Path:
    for name, body in files:
        (tmp_path / name).write_text(body)
    return tmp_path


def test_files_are_read_in_name_order(tmp_path: Path) -> None:
    d = _rules(tmp_path, ("20-b.toml", '[[rule]]\nname = "b"\ndomain = "database"\nhosts = ["*"]\n'),
               ("10-a.toml", '[[rule]]\nname = "a"\ndomain = "kubernetes"\nhosts = ["k8s-*"]\n'))
    router = load_router(d, domains=DOMAINS)
    assert [r.name for r in router.rules] == ["a", "b"]
    assert router.route(problem(host="k8s-1")).domain == "kubernetes"
    assert router.route(problem(host="db-1")).domain == "database"
    assert router.rules[0].origin.endswith("10-a.toml:1")


def test_trigger_regex_and_tag_presence(tmp_path: Path) -> None:
    d = _rules(tmp_path, ("r.toml", '[[rule]]\nname = "k"\ndomain = "kubernetes"\ntrigger = \'\\bpod\\b\'\n'
                                    'tags = { cluster = "*" }\n'))
    router = load_router(d, domains=DOMAINS)
    assert router.route(problem(name="Pod web-1 crashlooping", tags=[("cluster", "")])).domain == "kubernetes"
    assert router.route(problem(name="Pod web-1 crashlooping")).rule == "default"
    assert router.route(problem(name="Podcast down", tags=[("cluster", "x")])).rule == "default"


@pytest.mark.parametrize(("body", "line", "message"), [
    ('[[rule]]\nname = "a"\ndomain = "nosql"\n', 3, "unknown domain 'nosql'"),
    ('\n[[rule]]\nname = "a"\ndomain = "linux"\nhost = ["x"]\n', 5, "rule[0].host: unknown key"),
    ('[[rule]]\nname = "a"\ndomain = "linux"\ntrigger = "(?<=x)y"\n', 4, "trigger: invalid regex"),
    ('[[rule]]\nname = "a"\ndomain = "linux"\nmin_severity = "huge"\n', 4, "unknown severity 'huge'"),
    ('[[rule]]\nname = "a"\ndomain = "linux"\n\n[[rule]]\nname = "a"\ndomain = "linux"\n', 5,
     "rule name 'a' is already used"),
    ('[default]\ndomain = "linux"\n[default]\n', 3, "invalid TOML"),
])
def test_errors_name_file_and_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    d = _rules(tmp_path, ("50-x.toml", body))
    with pytest.raises(ConfigError) as err:
        load_router(d, domains=DOMAINS)
    assert err.value.line == line and message in str(err.value)
    assert str(err.value).startswith(str(d / "50-x.toml"))


def test_only_one_default(tmp_path: Path) -> None:
    d = _rules(tmp_path, ("1.toml", '[default]\ndomain = "linux"\n'), ("2.toml", '[default]\ndomain = "auto"\n'))
    with pytest.raises(ConfigError, match=r"2.toml:1: a second \[default\]; the first is at .*1.toml:1"):
        load_router(d, domains=DOMAINS)


def test_shipped_rules_load_against_shipped_dictionaries(shipped_knowledge: Knowledge) -> None:
    router = shipped_knowledge.router
    assert router.default == "auto" and len(router.rules) >= 5
    assert router.route(problem(groups=["Kubernetes nodes"])).domain == "kubernetes"
    assert router.route(problem(name="PostgreSQL: Service is down", groups=["Other"])).domain == "database"


@pytest.mark.parametrize(("name", "routed"), [
    ("Kubernetes: Pod is crash looping", "rule 'kubernetes-triggers'"),
    ("k8s node not ready", "rule 'kubernetes-triggers'"),
    ("api-pod restarted", "rule 'kubernetes-triggers'"),
    # an API group inside another program's message is not a Kubernetes trigger name
    ("failed to sync cluster https://10.20.0.1:6443: failed to load initial state of resource "
     "Ingress.networking.k8s.io: the server has asked for the client to provide credentials", "default"),
])
def test_the_kubernetes_trigger_rule_skips_api_groups(shipped_knowledge: Knowledge, name: str, routed: str) -> None:
    assert shipped_knowledge.router.route(problem(name=name, groups=["Other"])).rule == routed

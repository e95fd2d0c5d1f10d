"""[[remediation]] rules: validated once with file:line, rendered from the event, allow-listed."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hefestus.classify.knowledge import load_knowledge
from hefestus.classify.patterns import Catalog, load_catalog
from hefestus.classify.routing import load_router
from hefestus.errors import ConfigError
from hefestus.remediation.rules import RemediationRules, load_remediation_rules
from hefestus.testing import problem
from hefestus.values import Classification, ItemValue
from tests.support.paths import DATA, ROOT

GOOD = """
[[rule]]
name = "linux-servers"
domain = "linux"
host_groups = ["Linux*"]

[[remediation]]
name = "restart-service"
domain = "linux"
category = "service-failed"
project = "ops"
job_id = "3f2a9c1e-6b0d-4c55-9a57-2b8f0e6d1c44"
job_name = "Restart service"
options.unit = { value = "{unit}", allow = '^[A-Za-z0-9][A-Za-z0-9@_.-]*\\.service$' }
options.host = { value = "{host}", allow = '^[A-Za-z0-9][A-Za-z0-9.-]*$' }
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(DATA / "patterns")


def load(tmp_path: Path, text: str, catalog: Catalog, name: str = "10-x.toml") -> RemediationRules:
    (tmp_path / name).write_text(text)
    return load_remediation_rules(tmp_path, catalog=catalog)


def classified(c: Catalog, text: str, domain: str = "linux") -> Classification:
    return c.classify(text, domain)


UNIT_FAILED = "systemd[1]: nginx.service: Failed with result 'exit-code'."


def test_a_rule_maps_a_pattern_category_and_renders_its_options(tmp_path: Path, catalog: Catalog) -> None:
    """Options come from the event and the pattern's named groups; the router ignores the table."""
    rules = load(tmp_path, GOOD, catalog)
    assert len(rules) == 1 and rules.rules[0].origin == f"{tmp_path / '10-x.toml'}:7"
    assert len(load_router(tmp_path, domains=["linux"]).rules) == 1
    p = problem(1, "Unit failed", host="web1", text=UNIT_FAILED)
    c = classified(catalog, p.error_text)
    rule = rules.find(p, c)
    assert rule is not None and rule.label == "Rundeck job 'Restart service' (ops)"
    assert rule.render(p, c) == ((("unit", "nginx.service"), ("host", "web1")), None, "")


def test_only_a_pattern_category_can_map_to_a_job(tmp_path: Path, catalog: Catalog) -> None:
    """No pattern id (unclassified, or a category from anywhere but a pattern): no rule applies."""
    rules = load(tmp_path, GOOD, catalog)
    p = problem(1, "x", text=UNIT_FAILED)
    c = classified(catalog, p.error_text)
    assert rules.find(p, Classification("linux", "service-failed", None, 0.9, "", "", ())) is None
    assert rules.find(p, classified(catalog, "something else entirely")) is None
    assert rules.find(p, classified(catalog, "No space left on device")) is None  # other category
    assert rules.find(p, c) is not None


def test_injection_from_a_log_line_is_refused(tmp_path: Path, catalog: Catalog) -> None:
    rules = load(tmp_path, GOOD, catalog)
    p = problem(1, "x", host="web1; rm -rf /", text=UNIT_FAILED)
    c = classified(catalog, p.error_text)
    rule = rules.find(p, c)
    assert rule is not None
    assert rule.render(p, c) == ((), None,
                                 "option 'host' value 'web1; rm -rf /' does not match ^[A-Za-z0-9][A-Za-z0-9.-]*$")


def test_allow_must_match_in_full_and_control_characters_never_pass(tmp_path: Path,
                                                                   catalog: Catalog) -> None:
    text = GOOD.replace("'^[A-Za-z0-9][A-Za-z0-9.-]*$'", "'[a-z0-9]+'")  # not anchored: still a full match
    rules = load(tmp_path, text, catalog)
    c = classified(catalog, UNIT_FAILED)
    for host, ok in (("web1", True), ("web1.example", False), ("WEB1", False)):
        _, _, why = rules.rules[0].render(problem(1, host=host, text=UNIT_FAILED), c)
        assert (why == "") is ok, (host, why)
    text = GOOD.replace('value = "{host}"', 'value = "{trigger}"')
    rules = load(tmp_path, text, catalog)
    _, _, why = rules.rules[0].render(problem(1, "a\x1bb", text=UNIT_FAILED), c)
    assert why == "option 'host' value 'a\\x1bb' contains control characters"


def test_event_fields_tags_items_and_optional_values(tmp_path: Path, catalog: Catalog) -> None:
    text = GOOD.replace("options.host", """options.sev = { value = "{severity}/{eventid}/{category}", allow = '^[a-z][a-z/0-9-]*$' }
options.env = { value = "{tag:env}", allow = '^[a-z]+$' }
options.path = { value = "{item:vfs.fs}", allow = '^/[a-z/]*$', optional = true }
options.unit2 = { value = "{group:unit}", allow = '^[a-z.]+$' }
options.host""")
    rules = load(tmp_path, text, catalog)
    c = classified(catalog, UNIT_FAILED)
    p = problem(7, host="web1", text=UNIT_FAILED, tags=[("env", "prod")])
    opts, _, why = rules.rules[0].render(p, c)
    assert why == "" and dict(opts) == {"unit": "nginx.service", "sev": "average/7/service-failed",
                                         "env": "prod", "unit2": "nginx.service", "host": "web1"}
    p2 = replace(p, items=(*p.items, ItemValue("fs", "vfs.fs", "/var")))
    assert dict(rules.rules[0].render(p2, c)[0])["path"] == "/var"
    _, _, why = rules.rules[0].render(problem(7, host="web1", text=UNIT_FAILED), c)
    assert why == "option 'env' has no value: the event has no tag 'env'"


def test_matching_narrows_like_a_routing_rule(tmp_path: Path, catalog: Catalog) -> None:
    text = GOOD.replace('job_name = "Restart service"',
                        'job_name = "Restart service"\nhost_groups = ["Web*"]\nmin_severity = "high"')
    rules = load(tmp_path, text, catalog)
    c = classified(catalog, UNIT_FAILED)
    from hefestus.values import Severity

    assert rules.find(problem(1, text=UNIT_FAILED, groups=["Web"], severity=Severity.HIGH), c)
    assert not rules.find(problem(1, text=UNIT_FAILED, groups=["Web"]), c)
    assert not rules.find(problem(1, text=UNIT_FAILED, severity=Severity.HIGH), c)


MISTAKES = [
    ('domain = "linux"\ncategory', 'domain = "windows"\ncategory', "unknown domain 'windows'", 9),
    ('category = "service-failed"', 'category = "service-down"',
     "no pattern of linux has category 'service-down' (categories: disk-full, service-failed)", 10),
    ("value = \"{unit}\", allow = '^[A-Za-z0-9][A-Za-z0-9@_.-]*\\.service$'", 'value = "{unit}"',
     "options.unit.allow: required key is missing", 14),
    ("allow = '^[A-Za-z0-9][A-Za-z0-9.-]*$'", "allow = '^[A-Za-z0-9.-+$'", "option 'host': allow: invalid regex", 15),
    ("allow = '^[A-Za-z0-9][A-Za-z0-9.-]*$'", "allow = '.+'", "accepts shell metacharacters (\"'a\"", 15),
    ("allow = '^[A-Za-z0-9][A-Za-z0-9.-]*$'", "allow = '^[A-Za-z0-9 ;.-]+$'", "accepts shell metacharacters", 15),
    ('value = "{host}"', 'value = "{hostname}"', "unknown placeholder {hostname}", 15),
    ('value = "{host}"', 'value = "{tag:}"', "{tag:}: name the tag", 15),
    ('value = "{host}"', 'value = "{host"', "unbalanced '{'", 15),
    ('value = "{host}"', 'value = "web 1"', "the fixed value 'web 1' does not match its own allow", 15),
    ('job_id = "3f2a9c1e-6b0d-4c55-9a57-2b8f0e6d1c44"', 'job_id = "../../system/info"',
     "job_id: String should match pattern", 12),
    ('project = "ops"', 'project = "ops"\ncolor = "red"', "color: unknown key", 12),
    ('job_name = "Restart service"', 'job_name = "Restart service"\nnode_filter = "name: {host}"',
     "a templated node filter needs an allow-list", 14),
    ('job_name = "Restart service"', 'job_name = "Restart service"\ntimeout = 0', "timeout:", 14),
    ('job_name = "Restart service"', 'job_name = "Restart service"\ntrigger = "(?=x)"',
     "trigger: invalid regex", 14),
]


@pytest.mark.parametrize(("old", "new", "message", "line"), MISTAKES)
def test_every_mistake_is_a_config_error_with_file_and_line(tmp_path: Path, catalog: Catalog, old: str,
                                                           new: str, message: str, line: int) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as err:
        load(tmp_path, GOOD.replace(old, new), catalog)
    assert message in str(err.value)
    assert err.value.path == str(tmp_path / "10-x.toml") and err.value.line == line, str(err.value)


def test_duplicate_names_and_a_single_table_are_refused(tmp_path: Path, catalog: Catalog) -> None:
    (tmp_path / "20-y.toml").write_text(GOOD.replace("linux-servers", "other"))
    with pytest.raises(ConfigError, match=r"20-y.toml:7: remediation rule name 'restart-service' "
                                          r"is already used at .*10-x.toml:7"):
        load(tmp_path, GOOD, catalog)
    (tmp_path / "20-y.toml").unlink()
    with pytest.raises(ConfigError, match="write \\[\\[remediation\\]\\]"):
        load(tmp_path, "[remediation]\nname = 'x'\n", catalog)


def test_shipped_examples_load_and_are_placeholders() -> None:
    """The worked examples in rules/ parse against the shipped patterns and never run as shipped."""
    k = load_knowledge(ROOT / "rules", ROOT / "patterns")
    rules = load_remediation_rules(ROOT / "rules", catalog=k.catalog)
    by_name = {r.name: r for r in rules.rules}
    assert set(by_name) == {"restart-failed-service", "clean-full-disk"}
    assert all(r.placeholder for r in rules.rules)
    cases = [
        ("Nov 24 03:12:09 web systemd[1]: nginx.service: Failed with result 'exit-code'.", "web1",
         "restart-failed-service", {"unit": "nginx.service", "host": "web1"}),
        ("/var: Disk space is critically low (used > 90%)", "db1", "clean-full-disk",
         {"path": "/var", "host": "db1"}),
        ("write /data/x: No space left on device", "db1", "clean-full-disk", {"host": "db1"}),
    ]
    for text, host, name, options in cases:
        p = problem(1, "Problem on " + host, host=host, text=text)
        c = k.classify(p)
        rule = rules.find(p, c)
        assert rule is not None and rule.name == name, (text, c)
        opts, _, why = rule.render(p, c)
        assert why == "" and dict(opts) == options
    # Messages whose cause a restart or a clean-up cannot fix (or that recover by themselves)
    # reach no remediation rule: a crash loop, systemd's "Main process exited" (logged before
    # its own Restart=), ENOSPC from semaphores or inotify.
    for text in ("Back-off restarting failed container api in pod api-7d9f8b6c5-x2k4q_shop(5f0c1d2e)",
                 "systemd[1]: postgresql@15-main.service: Main process exited, code=exited, status=1/FAILURE",
                 "FATAL:  could not create semaphores: No space left on device",
                 "inotify_add_watch(/srv/app) failed: No space left on device"):
        p = problem(1, "Problem on db1", host="db1", text=text)
        assert rules.find(p, k.classify(p)) is None, text
    # a unit name carrying a command never reaches Rundeck
    evil = "x systemd[1]: a$(reboot).service: Failed with result 'exit-code'."
    p = problem(1, "x", text=evil)
    rule = rules.find(p, k.classify(p))
    assert rule is None or rule.render(p, k.classify(p))[2]


# -- fuzz: whatever is typed into a [[remediation]], the answer is a ConfigError -------------

keys = st.sampled_from(["remediation", "name", "domain", "category", "project", "job_id", "options",
                        "options.a", "allow", "value", "node_filter", "timeout", "x"])
values = st.one_of(st.integers(-5, 10**6).map(str),
                   st.sampled_from(['"(a+"', '"linux"', '"service-failed"', "true", "[1, 2]", '"{host}"',
                                    '"{unit"', "{}", '{ value = "{x}", allow = ".*" }', '"^[a-z]+$"']),
                   st.text(max_size=20).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'))
line = st.one_of(st.tuples(keys, values).map(lambda kv: f"{kv[0]} = {kv[1]}"),
                 keys.map(lambda k: f"[{k}]"), keys.map(lambda k: f"[[{k}]]"), st.text(max_size=30))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(line, max_size=12).map("\n".join))
def test_remediation_loader_only_raises_config_errors(text: str) -> None:
    catalog = load_catalog(DATA / "patterns")
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "10-x.toml"
        p.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            load_remediation_rules(p.parent, catalog=catalog)
        except ConfigError as exc:
            assert "10-x.toml" in str(exc)

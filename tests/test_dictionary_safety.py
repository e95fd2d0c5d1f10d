"""The load-time guard on dictionary steps (classify/safety.py): read-only first, cautions on
destructive steps, refused with file:line and the pattern id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hefestus.classify import safety
from hefestus.classify.patterns import load_catalog, load_dictionary
from hefestus.errors import ConfigError
from tests.support.paths import ROOT

HEAD = '[dictionary]\ndomain = "linux"\n\n'
CAUTION = "CAUTION: deletes the data of every stopped container"


def _dictionary(tmp_path: Path, *steps: str) -> Path:
    p = tmp_path / "linux.toml"
    p.write_text(HEAD + '[[pattern]]\nid = "p1"\ncategory = "c"\nregex = "x"\ncause = "c"\nsolutions = [\n'
                 + "".join(f"  {json.dumps(s)},\n" for s in steps) + "]\n")
    return p


def test_the_shipped_dictionaries_load() -> None:
    assert len(load_catalog(ROOT / "patterns").domains) >= 5


@pytest.mark.parametrize("step", [
    "docker system prune -af", "argocd app sync app --prune", "rm -rf /var/lib/docker",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity;", "redis-cli FLUSHALL",
    "ip link set eth0 down && ip link set eth0 up", "xfs_repair -L /dev/sdb1", "REPAIR TABLE `a`.`b`;",
    "PURGE BINARY LOGS BEFORE NOW();", "kubectl delete pvc data-0 -n db", "kubectl -n x delete namespace shop",
    "DROP TABLE sessions;", "TRUNCATE orders;", "sudo reboot", "mkfs.ext4 /dev/sdb",
    "dd if=/dev/zero of=/dev/sda", "kubectl delete pod p --grace-period=0 --force",
    "argocd app sync a --resource apps:Deployment:x --force --replace",
])
def test_a_destructive_step_without_a_caution_is_refused(tmp_path: Path, step: str) -> None:
    p = _dictionary(tmp_path, "df -h", step)
    with pytest.raises(ConfigError, match=r"linux\.toml:\d+: pattern 'p1': step 2 uses .*CAUTION") as err:
        load_dictionary(p)
    assert err.value.line is not None and step[:20] in p.read_text().splitlines()[err.value.line - 1]
    assert len(load_dictionary(_dictionary(tmp_path, "df -h", f"{step}   {CAUTION}"))) == 1


@pytest.mark.parametrize("caution", ["", "CAUTION:", "CAUTION: careful", "caution: deletes the data of every container"])
def test_a_caution_must_say_what_it_can_lose(tmp_path: Path, caution: str) -> None:
    with pytest.raises(ConfigError, match="CAUTION"):
        load_dictionary(_dictionary(tmp_path, "df -h", f"docker system prune {caution}"))


@pytest.mark.parametrize("first", [
    "systemctl restart nginx", "Restart the service", "kubectl rollout restart deploy/x -n y",
    "argocd app sync app", "sysctl -w vm.overcommit_memory=1", "Raise max_connections",
    f"docker system prune   {CAUTION}", "helm rollback r 3", "ALTER SYSTEM SET work_mem = '64MB';",
])
def test_the_first_step_must_be_read_only(tmp_path: Path, first: str) -> None:
    with pytest.raises(ConfigError, match=r"pattern 'p1': the first step must be read-only"):
        load_dictionary(_dictionary(tmp_path, first, "df -h"))


@pytest.mark.parametrize("first", [
    "df -h; df -i", "free -m; vmstat 1 5", "last -x reboot | head", "argocd app diff app",
    "argocd app sync app --dry-run --prune   # preview", "kubectl apply --dry-run=server -f /tmp/m.yaml",
    "journalctl -u 'postgresql*' | grep -iE 'shutdown|terminate'", "Compare the fingerprints with the provider's",
    "gh api repos/o/r/actions/runners --jq '.runners[] | [.name] | @tsv'",
])
def test_inspections_count_as_read_only(tmp_path: Path, first: str) -> None:
    assert safety.state_changes(first) == []
    assert len(load_dictionary(_dictionary(tmp_path, first, "systemctl restart x"))) == 1


def test_the_fallback_steps_are_checked_too(tmp_path: Path) -> None:
    p = tmp_path / "linux.toml"
    p.write_text('[dictionary]\ndomain = "linux"\nfallback = ["rm -rf /tmp/x"]\n')
    with pytest.raises(ConfigError, match=r"linux\.toml:3: dictionary fallback: the first step"):
        load_dictionary(p)


def test_seed_json_dictionaries_are_checked_too(tmp_path: Path) -> None:
    p = tmp_path / "k.json"
    p.write_text(json.dumps({"patterns": {"x": {"pattern": "x", "category": "c",
                                                "solutions": ["kubectl get pvc", "kubectl delete pvc data"]}}}))
    with pytest.raises(ConfigError, match=r"pattern 'x': step 2 uses kubectl delete"):
        load_dictionary(p)


def test_every_shipped_step_list_passes_the_guard() -> None:
    catalog = load_catalog(ROOT / "patterns")
    for domain in catalog.domains:
        d = catalog[domain]
        assert safety.problems(d.fallback) == []
        for p in d.patterns:
            assert safety.problems(p.solutions) == [], p.id

"""A reload builds the new rules and patterns in full before swapping; a broken file keeps the old."""

from __future__ import annotations

import shutil
from pathlib import Path

from hefestus.app.reload import KnowledgeHolder
from hefestus.config import load_settings
from hefestus.testing import problem
from tests.support.paths import DATA


def test_broken_file_keeps_last_good_rules(tmp_path: Path, capsys: object) -> None:
    shutil.copytree(DATA / "rules", tmp_path / "rules")
    shutil.copytree(DATA / "patterns", tmp_path / "patterns")
    cfg = tmp_path / "hefestus.toml"
    cfg.write_text('[zabbix]\nurl = "http://z"\ntoken = "t"\n')
    holder = KnowledgeHolder(load_settings(cfg, {}))
    before = holder()
    linux = tmp_path / "patterns" / "linux.toml"
    good = linux.read_text()
    linux.write_text(good.replace("regex = 'No space left on device'", "regex = 'No space (left'"))
    assert holder.reload() is False
    assert holder() is before
    assert holder().classify(problem(text="No space left on device")).category == "disk-full"
    linux.write_text(good.replace("A filesystem is full.", "The filesystem is full (reloaded)."))
    assert holder.reload() is True
    assert holder().classify(problem(text="No space left on device")).cause == "The filesystem is full (reloaded)."


def test_reload_rereads_the_config_and_keeps_it_when_broken(tmp_path: Path) -> None:
    """hefestus.toml is validated on SIGHUP too: per-domain prompts apply at once; a broken
    file keeps everything as it was; a change to [zabbix] waits for a restart."""
    shutil.copytree(DATA / "rules", tmp_path / "rules")
    shutil.copytree(DATA / "patterns", tmp_path / "patterns")
    cfg = tmp_path / "hefestus.toml"
    base = '[zabbix]\nurl = "http://z"\ntoken = "t"\n'
    cfg.write_text(base + '[domains.linux]\nprompt_template = "You are a Linux admin."\n')
    holder = KnowledgeHolder(load_settings(cfg, {}), {})
    cfg.write_text(base.replace("http://z", "http://other") +
                   '[domains.linux]\nprompt_template = "You are a kernel hacker. {unknown}"\n')
    assert holder.reload() is False
    assert holder.settings.domains["linux"].prompt_template == "You are a Linux admin."
    cfg.write_text(base.replace("http://z", "http://other") +
                   '[domains.linux]\nprompt_template = "You are a kernel hacker."\n')
    assert holder.reload() is True
    assert holder.settings.domains["linux"].prompt_template == "You are a kernel hacker."
    assert holder.settings.zabbix.url == "http://z"  # applied at the next restart

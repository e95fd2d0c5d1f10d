"""Configuration is validated once, and every mistake names file, key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hefestus.config import find_config, load_settings
from hefestus.errors import ConfigError
from hefestus.values import Severity
from tests.support.paths import ROOT

CREDS = {"HEFESTUS_ZABBIX_USER": "hefestus", "HEFESTUS_ZABBIX_PASSWORD": "s3cret-pass"}


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "hefestus.toml"
    p.write_text(text)
    return p


def test_shipped_config_is_valid_with_credentials_from_env() -> None:
    s = load_settings(ROOT / "hefestus.toml", CREDS)
    assert s.zabbix.user == "hefestus"
    assert s.acknowledge.action_bits == 4
    assert s.patterns_dir == ROOT / "patterns"


def test_unknown_key_names_file_key_and_line(tmp_path: Path) -> None:
    p = write(tmp_path, '[zabbix]\nurl = "http://z"\ntoken = "t"\n\n[intake]\npoll_interval = 5\npoll_intervall = 6\n')
    with pytest.raises(ConfigError) as err:
        load_settings(p, {})
    assert err.value.line == 7
    assert str(err.value).startswith(f"{p}:7: intake.poll_intervall: unknown key")


def test_wrong_type_and_bad_value(tmp_path: Path) -> None:
    p = write(tmp_path, '[zabbix]\nurl = "http://z"\ntoken = "t"\ntimeout = "fast"\n')
    with pytest.raises(ConfigError, match=r":4: zabbix.timeout: Input should be a valid number"):
        load_settings(p, {})
    p = write(tmp_path, '[zabbix]\nurl = "ftp://z"\ntoken = "t"\n')
    with pytest.raises(ConfigError, match=r":2: zabbix.url: .*must start with http"):
        load_settings(p, {})
    p = write(tmp_path, '[zabbix]\nurl = "http://z"\ntoken = "t"\n[intake]\nmin_severity = "urgent"\n')
    with pytest.raises(ConfigError, match=r":5: intake.min_severity: .*unknown severity 'urgent'"):
        load_settings(p, {})


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    p = write(tmp_path, '[zabbix]\nurl = "http://z\n')
    with pytest.raises(ConfigError) as err:
        load_settings(p, {})
    assert err.value.line == 2 and "invalid TOML" in str(err.value)


def test_missing_credentials_is_a_clear_error(tmp_path: Path) -> None:
    p = write(tmp_path, '[zabbix]\nurl = "http://z"\n')
    with pytest.raises(ConfigError, match="no credentials: set token"):
        load_settings(p, {})


def test_environment_overrides_file_and_secrets_stay_hidden(tmp_path: Path) -> None:
    p = write(tmp_path, '[zabbix]\nurl = "http://file"\ntoken = "from-file"\n[intake]\nmin_severity = "High"\n')
    s = load_settings(p, {"HEFESTUS_ZABBIX_URL": "https://env/zabbix/", "HEFESTUS_ZABBIX_TOKEN": "tok-123",
                          "HEFESTUS_STATE_PATH": "/tmp/x.db"})
    assert s.zabbix.url == "https://env/zabbix"
    assert s.zabbix.token is not None and s.zabbix.token.get_secret_value() == "tok-123"
    assert s.state_path == Path("/tmp/x.db")
    assert s.intake.min_severity is Severity.HIGH
    assert "tok-123" not in repr(s) and "tok-123" not in str(s.model_dump())


def test_config_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config("x.toml", {"HEFESTUS_CONFIG": "y.toml"}) == Path("x.toml")
    assert find_config(None, {"HEFESTUS_CONFIG": "y.toml"}) == Path("y.toml")
    (tmp_path / "hefestus.toml").write_text("")
    assert find_config(None, {}) == Path("hefestus.toml")


def test_other_hefestus_instances_are_zabbix_user_ids(tmp_path: Path) -> None:
    """[zabbix] hefestus_users: the only other authors whose [Hefestus] messages count as markers."""
    p = write(tmp_path, '[zabbix]\nurl = "http://z"\ntoken = "t"\nhefestus_users = ["42", "7"]\n')
    assert load_settings(p, {}).zabbix.hefestus_users == ("42", "7")
    p = write(tmp_path, '[zabbix]\nurl = "http://z"\ntoken = "t"\nhefestus_users = ["Admin"]\n')
    with pytest.raises(ConfigError, match=r":4: zabbix.hefestus_users"):
        load_settings(p, {})

"""The push set-up README's "Push intake" describes, on the real dev Zabbix: deploy/zabbix/'s
webhook media type, a user it is sent to, the two global macros and a trigger action. Shared
by the push test (tests/integration/test_push_webhook.py) and the push benchmark
(bench/push_bench.py), so both configure Zabbix the way ops would."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from tests.support.lab import ZabbixLab
from tests.support.paths import ROOT

MEDIA_TYPE = ROOT / "deploy" / "zabbix" / "hefestus-media-type.yaml"
#: action.create conditions: the event's host group, or its trigger.
HOST_GROUP, TRIGGER = 0, 2


def import_media_type(admin: Any) -> None:
    """deploy/zabbix/hefestus-media-type.yaml imported as ops would (configuration.import)."""
    assert admin.call("configuration.import", format="yaml", source=MEDIA_TYPE.read_text(),
                      rules={"mediaTypes": {"createMissing": True, "updateExisting": True}}) is True


def push_user(admin: Any, media_type: str, name: str, password: str) -> str:
    """The user the action sends the push to (created, or its media set): any "send to" value,
    the media type does the rest."""
    medias = [{"mediatypeid": media_type, "sendto": "hefestus", "active": 0, "severity": 63,
               "period": "1-7,00:00-24:00"}]
    rows = admin.call("user.get", output=["userid"], filter={"username": [name]})
    if rows:
        userid = str(rows[0]["userid"])
        admin.call("user.update", userid=userid, medias=medias)
        return userid
    return str(admin.call("user.create", username=name, passwd=password, roleid="3", usrgrps=[{"usrgrpid": "7"}],
                          medias=medias)["userids"][0])


def set_global_macros(admin: Any, values: dict[str, tuple[str, int]]) -> list[str]:
    """{macro: (value, type)} (type 1: secret text), created or updated; their ids."""
    ids = []
    for macro, (value, kind) in values.items():
        rows = admin.call("usermacro.get", globalmacro=True, output=["globalmacroid"], filter={"macro": macro})
        if rows:
            ids.append(str(rows[0]["globalmacroid"]))
            admin.call("usermacro.updateglobal", globalmacroid=ids[-1], value=value, type=kind)
        else:
            ids.append(str(admin.call("usermacro.createglobal", macro=macro, value=value,
                                      type=kind)["globalmacroids"][0]))
    return ids


def create_push_action(admin: Any, name: str, media_type: str, user: str, *, condition: int, value: str) -> str:
    """A trigger action whose problem operation sends the Hefestus media to ``user``, for the
    events of one trigger or host group only (so no other test's events reach it)."""
    return str(admin.call(
        "action.create", name=name, eventsource=0, status=0, esc_period="1h",
        filter={"evaltype": 0, "conditions": [{"conditiontype": condition, "operator": 0, "value": value}]},
        operations=[{"operationtype": 0, "esc_step_from": 1, "esc_step_to": 1,
                     "opmessage": {"default_msg": 1, "mediatypeid": media_type},
                     "opmessage_usr": [{"userid": user}]}])["actionids"][0])


def reload_server_config(lab: ZabbixLab) -> None:
    """Actions, macros and media types reach the server through its configuration cache
    (CacheUpdateFrequency=5 s in deploy/dev): ask for a reload, then allow it to finish."""
    subprocess.run(["zabbix_server", "-c", lab.server_config, "-R", "config_cache_reload"],
                   capture_output=True, timeout=30, check=False)
    time.sleep(6)

"""On a real Zabbix 6.0: only Hefestus's own user's "[Hefestus]" message is its marker.

Any user with "Add problem comments" can write a message starting with "[Hefestus]"; it
must not keep Hefestus off the event. Hefestus's own message still prevents a second one,
even after its state file is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hefestus.adapters.zabbix import ZabbixClient
from hefestus.app.build import App
from hefestus.pipeline.render import MARKER
from tests.integration.test_end_to_end import fire, run_until_quiet
from tests.support.lab import ZabbixLab
from tests.support.zabbix_config import ADMIN, IT_USER

DISK = "Nov 24 03:12:09 web kernel: EXT4-fs error: write failed: No space left on device"
FAKE = f"{MARKER} linux / disk-full — nothing to do here (written by a person, not by Hefestus)"


@pytest.mark.zabbix
def test_another_users_marker_does_not_stop_hefestus(lab: ZabbixLab, admin: ZabbixClient,
                                                     make_app: Callable[..., App], tmp_path: Path) -> None:
    users = {u["username"]: u["userid"] for u in admin.call("user.get", output=["userid", "username"],
                                                             filter={"username": [IT_USER[0], ADMIN[0]]})}
    hefestus, person = users[IT_USER[0]], users[ADMIN[0]]
    host = lab.host(lab.unique("it-marker"), "Linux servers")
    app = make_app()
    run_until_quiet(app)  # first start: the cursor is now
    [event] = fire(lab, {"linux": host}, {"linux": DISK})
    admin.acknowledge([int(event["eventid"])], FAKE, action=4)  # Admin, not Hefestus's user

    def messages() -> list[tuple[str, str]]:
        [row] = [e for e in lab.events_for([host], expect=1, acks=True) if e["eventid"] == event["eventid"]]
        return [(a["userid"], a["message"]) for a in row["acknowledges"] if a["message"].startswith(MARKER)]

    run_until_quiet(app)
    ours = [m for u, m in messages() if u == hefestus]
    assert len(ours) == 1 and ours[0].startswith(f"{MARKER} linux / disk-full — pattern linux:"), messages()
    assert (person, FAKE) in messages()

    # Its own marker still counts: a lost state file and a backlog start write nothing more.
    app.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"state.db{suffix}").unlink(missing_ok=True)
    fresh = make_app(intake={"first_start": "backlog", "backlog_hours": 1})
    run_until_quiet(fresh)
    assert sorted(u for u, _ in messages()) == sorted([hefestus, person])

"""The floor: the fewest raw Zabbix API calls that could do Hefestus's job on a storm.

Plain ``requests`` and JSON-RPC, no Hefestus code: one ``event.get`` for the
storm's events, then one ``event.acknowledge`` per distinct message, each
carrying every event that gets that message. The login happens before the
clock starts (a daemon holds a session), and which message goes to which
event is decided by the caller from data it already has, so the floor
includes no classification, no model, no history lookup, no state file and
no marker check: only the calls no implementation can avoid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests


class RpcError(RuntimeError):
    pass


class JsonRpc:
    """A bare JSON-RPC client for Zabbix 6.0 (auth in the body)."""

    def __init__(self, url: str, *, timeout: float = 60) -> None:
        self.url = url.rstrip("/") + "/api_jsonrpc.php"
        self.session = requests.Session()
        self.timeout = timeout
        self.auth: str | None = None
        self._id = 0
        self.log: list[tuple[str, float, int]] = []  # (method, seconds, events in the call)

    def call(self, method: str, params: dict[str, Any] | list[Any]) -> Any:
        self._id += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params, "id": self._id}
        if self.auth is not None and method not in ("user.login", "apiinfo.version"):
            body["auth"] = self.auth
        started = time.perf_counter()
        reply = self.session.post(self.url, json=body, timeout=self.timeout,
                                  headers={"Content-Type": "application/json-rpc"})
        reply.raise_for_status()
        data = reply.json()
        n = len(params.get("eventids", ())) if isinstance(params, dict) else 0
        self.log.append((method, time.perf_counter() - started, n))
        if "error" in data:
            raise RpcError(f"{method}: {data['error']}")
        return data["result"]

    def login(self, user: str, password: str) -> None:
        self.auth = self.call("user.login", {"username": user, "password": password})
        self.log.clear()


@dataclass
class FloorResult:
    seconds: float
    events: int
    get_calls: int
    ack_calls: int
    calls: list[tuple[str, float, int]] = field(default_factory=list)


def run_floor(rpc: JsonRpc, *, triggerids: Sequence[str], eventid_from: int,
              assign: Callable[[list[dict[str, Any]]], dict[str, list[str]]], action: int) -> FloorResult:
    """Time one event.get plus one event.acknowledge per distinct message.

    ``assign`` turns the fetched rows into {message: [eventid, ...]}; it runs inside the
    timed span but only looks up what the caller prepared.
    """
    rpc.log.clear()
    started = time.perf_counter()
    rows = rpc.call("event.get", {"output": ["eventid", "objectid"], "source": 0, "object": 0, "value": 1,
                                  "objectids": list(triggerids), "eventid_from": eventid_from,
                                  "sortfield": ["eventid"], "sortorder": "ASC"})
    plan = assign(rows)
    for message, eventids in plan.items():
        rpc.call("event.acknowledge", {"eventids": eventids, "action": action, "message": message})
    seconds = time.perf_counter() - started
    return FloorResult(seconds, len(rows), 1, len(plan), list(rpc.log))

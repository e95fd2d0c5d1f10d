"""The Zabbix adapter translates whatever the wire brings into Hefestus's errors.

A real local HTTP server plays a misbehaving Zabbix frontend: no patching.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hefestus.adapters.zabbix import ZabbixClient
from hefestus.config import ZabbixSettings
from hefestus.errors import ZabbixAuthError, ZabbixRejected, ZabbixUnavailable
from hefestus.state.lease import LeaseLost

Reply = tuple[int, str, str]  # status, content type, body


class Server:
    def __init__(self) -> None:
        self.replies: Callable[[dict], Reply] = lambda req: (200, "application/json", "{}")  # type: ignore[type-arg]
        self.requests: list[dict] = []  # type: ignore[type-arg]
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                status, ctype, text = outer.replies(body)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def ok(result: object, req: dict) -> Reply:  # type: ignore[type-arg]
    return 200, "application/json", json.dumps({"jsonrpc": "2.0", "result": result, "id": req["id"]})


def err(req: dict, code: int, message: str, data: str) -> Reply:  # type: ignore[type-arg]
    return 200, "application/json", json.dumps(
        {"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": data}, "id": req["id"]})


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()


def client(server: Server, **kw: object) -> ZabbixClient:
    settings = ZabbixSettings.model_validate({"url": server.url, "user": "hefestus", "password": "pw-Secret-1",
                                              "timeout": 2, "retries": 3, **kw})
    return ZabbixClient(settings, sleep=lambda _: None)


def test_html_error_page_is_transient_and_retried(server: Server) -> None:
    server.replies = lambda req: (502, "text/html", "<html><body>Bad Gateway</body></html>")
    with pytest.raises(ZabbixUnavailable, match="HTTP 502"):
        client(server).call("event.get")
    assert len(server.requests) == 3  # retries = 3


def test_garbage_body_is_transient(server: Server) -> None:
    server.replies = lambda req: (200, "text/html", "<b>Fatal error</b>: Allowed memory size exhausted")
    with pytest.raises(ZabbixUnavailable, match="not JSON-RPC"):
        client(server).call("apiinfo.version")


def test_login_then_call_and_expired_session_renewed_once(server: Server) -> None:
    sessions = iter(["s1", "s2"])
    state = {"expired": False}

    def reply(req: dict) -> Reply:  # type: ignore[type-arg]
        if req["method"] == "apiinfo.version":
            return ok("6.0.14", req)
        if req["method"] == "user.login":
            assert req["params"] == {"username": "hefestus", "password": "pw-Secret-1"}
            return ok(next(sessions), req)
        if req.get("auth") == "s1" and state["expired"]:
            return err(req, -32602, "Invalid params.", "Session terminated, re-login, please.")
        return ok([{"eventid": "1"}], req)

    server.replies = reply
    c = client(server)
    assert c.call("event.get") == [{"eventid": "1"}]
    state["expired"] = True
    assert c.call("event.get") == [{"eventid": "1"}]
    assert [r["method"] for r in server.requests].count("user.login") == 2
    assert server.requests[-1]["auth"] == "s2"


def test_wrong_password_is_not_retried(server: Server) -> None:
    def reply(req: dict) -> Reply:  # type: ignore[type-arg]
        if req["method"] == "apiinfo.version":
            return ok("6.0.14", req)
        return err(req, -32500, "Application error.",
                   "Incorrect user name or password or account is temporarily blocked.")

    server.replies = reply
    with pytest.raises(ZabbixAuthError, match="Incorrect user name or password"):
        client(server).call("event.get")
    assert [r["method"] for r in server.requests].count("user.login") == 1  # never a login loop


def test_refusal_is_permanent_and_keeps_the_code(server: Server) -> None:
    def reply(req: dict) -> Reply:  # type: ignore[type-arg]
        if req["method"] == "apiinfo.version":
            return ok("7.0.5", req)
        if req["method"] == "user.login":
            return ok("s1", req)
        return err(req, -32500, "Application error.", "No permissions to referred object or it does not exist!")

    server.replies = reply
    c = client(server)
    with pytest.raises(ZabbixRejected) as exc:
        c.acknowledge([1, 2], "m", action=4)
    assert exc.value.code == -32500 and "No permissions" in exc.value.data
    ack = server.requests[-1]
    assert ack["params"] == {"eventids": ["1", "2"], "action": 4, "message": "m"}
    assert "auth" not in ack  # 6.4+: Bearer header, not the body field


def test_version_specific_parameter_names(server: Server) -> None:
    """6.x reads the acknowledgements in the page's event.get (select_acknowledges); 7.0+
    asks for them in a second event.get, only for events carrying a message (action 4), with
    the spelling 7.2 accepts."""
    seen: list[dict] = []  # type: ignore[type-arg]
    version = {"v": "6.0.14"}
    row = {"eventid": "5", "clock": "1", "ns": "0", "name": "x", "severity": "4", "objectid": "9"}

    def reply(req: dict) -> Reply:  # type: ignore[type-arg]
        if req["method"] == "apiinfo.version":
            return ok(version["v"], req)
        if req["method"] == "user.login":
            return ok("s1", req)
        if req["method"] == "user.checkAuthentication":
            return ok({"userid": "17"}, req)
        seen.append(req)
        page = req["method"] == "event.get" and "eventid_from" in req["params"]
        return ok([row] if page and version["v"] != "6.0.14" else [], req)

    server.replies = reply
    from hefestus.values import EventFilter

    c = client(server)
    c.events(EventFilter(), eventid_from=1)
    assert "select_acknowledges" in seen[-1]["params"] and "selectAcknowledges" not in seen[-1]["params"]
    assert seen[-1]["params"]["value"] == 1 and seen[-1]["params"]["suppressed"] is False
    assert "opdata" not in seen[-1]["params"]["output"]  # expanded from the trigger's template
    version["v"] = "7.2.0"
    seen.clear()
    c2 = client(server)
    c2.events(EventFilter(), eventid_from=1)
    page, marked = [r["params"] for r in seen if r["method"] == "event.get"]
    assert not {"selectAcknowledges", "select_acknowledges"} & set(page)
    assert marked["action"] == 4 and marked["eventids"] == ["5"]
    assert "selectAcknowledges" in marked and "select_acknowledges" not in marked


def test_the_write_guard_runs_before_every_write_and_can_stop_it(server: Server) -> None:
    """With several instances, a leader whose lease ran out while a write waited (or while it
    was paused) must not send it: the guard raises and Zabbix never sees the call."""

    def reply(req: dict) -> Reply:  # type: ignore[type-arg]
        if req["method"] == "apiinfo.version":
            return ok("7.0.22", req)
        if req["method"] == "user.login":
            return ok("s1", req)
        return ok({"eventids": req["params"]["eventids"]}, req)

    server.replies = reply
    c = client(server)
    allowed = {"yes": True}

    def guard() -> None:
        if not allowed["yes"]:
            raise LeaseLost("not the leader")

    c.write_guard = guard
    c.acknowledge([1, 2], "[Hefestus] test", action=4)
    allowed["yes"] = False
    with pytest.raises(LeaseLost):
        c.acknowledge([3], "[Hefestus] test", action=4)
    writes = [r["params"]["eventids"] for r in server.requests if r["method"] == "event.acknowledge"]
    assert writes == [["1", "2"]]

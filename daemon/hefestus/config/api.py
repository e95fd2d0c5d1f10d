"""``[api]``: where the HTTP API listens and who may call it.

Part of the configuration (not of :mod:`hefestus.api`), so validating
hefestus.toml never imports the web stack.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")



def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host, port); port 0 means "any free port".

    Raises :class:`ValueError` with a message meant for a config file's author.
    """
    value = value.strip()
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep:
            raise ValueError(f"{value!r}: write an IPv6 address as [addr]:port, e.g. [::1]:8080")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{value!r}: expected host:port, e.g. 127.0.0.1:8080")
        if ":" in host:
            raise ValueError(f"{value!r}: put an IPv6 address in brackets, e.g. [{host}]:{port}")
        if not _HOSTNAME.match(host):
            raise ValueError(f"{value!r}: {host!r} is not a host name or IPv4 address")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r}: port must be a number from 1 to 65535")
    return host, int(port)


class ApiSettings(BaseModel):
    """``[api]``: the HTTP API beside the daemon (off unless enabled)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    #: host:port; [::1]:8080 for IPv6. The default serves only this machine.
    listen: str = "127.0.0.1:8080"
    #: Bearer token required on every route but /healthz (and the docs when docs_public).
    #: None: no authentication, acceptable only on a loopback listen address.
    token: SecretStr | None = None
    #: Largest request body accepted; larger ones get 413 before they are parsed.
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 65536
    #: Swagger UI and /openapi.json without the token: a browser cannot send a bearer token
    #: when it loads a page, and the document holds no secret. false: they need it too.
    docs_public: bool = True
    #: Components that must be up for /readyz to say ready (others only show in /api/health).
    ready_requires: tuple[str, ...] = ("zabbix",)
    #: Seconds a stopping server lets requests in flight finish before it cancels them.
    stop_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if parse_listen(v)[1] == 0:
            raise ValueError("port 0 picks a random port: give the port clients will use")
        return v.strip()

    @field_validator("token", mode="before")
    @classmethod
    def _token(cls, v: Any) -> Any:
        if v == "":
            return None  # an empty HEFESTUS_API_TOKEN= line means "not set"
        secret = v.get_secret_value() if isinstance(v, SecretStr) else v
        if not isinstance(secret, str):
            return v  # pydantic reports the wrong type
        if len(secret.strip()) < 16:
            raise ValueError("token must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return SecretStr(secret.strip())  # a stray newline from an env file must not lock everyone out

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach the API (then running without a token is fine)."""
        host = parse_listen(self.listen)[0]
        try:
            return host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

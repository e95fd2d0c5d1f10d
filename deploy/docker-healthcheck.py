"""Docker HEALTHCHECK for the Hefestus image (deploy/Dockerfile).

With ``[api] enabled = true`` it asks ``GET /healthz`` (no token needed) on the address
the API listens on; ``0.0.0.0`` and ``::`` are asked on the loopback. Without the API
there is no endpoint to ask: it only checks that the configuration file still parses, and
the container's own exit status tells whether the daemon runs. Proxies in the environment
are ignored: the probe never leaves the container.

Exit 0 healthy, 1 unhealthy (Docker's convention); one line on stdout says why.
"""

from __future__ import annotations

import os
import sys
import tomllib
import urllib.error
import urllib.request


def probe_url(config: dict[str, object], env: dict[str, str]) -> str | None:
    api = config.get("api", {})
    if not isinstance(api, dict) or not api.get("enabled", False):
        return None
    listen = (env.get("HEFESTUS_API_LISTEN") or str(api.get("listen", "127.0.0.1:8080"))).strip()
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"


def main() -> int:
    path = os.environ.get("HEFESTUS_CONFIG", "/etc/hefestus/hefestus.toml")
    try:
        with open(path, "rb") as f:
            config = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"unhealthy: cannot read {path}: {exc}")
        return 1
    url = probe_url(config, dict(os.environ))
    if url is None:
        print(f"ok: {path} parses; [api] is not enabled, so there is no /healthz to ask")
        return 0
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=float(os.environ.get("HEFESTUS_HEALTHCHECK_TIMEOUT", "4"))) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}")
        return 1
    print(f"{'ok' if status == 200 else 'unhealthy'}: {url} answered {status}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())

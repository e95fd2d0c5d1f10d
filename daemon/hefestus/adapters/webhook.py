"""What Slack's and Teams' notifiers share: one POST of JSON to a secret URL.

The webhook URL *is* the credential, so it never appears in a message, a
log line or a chained exception (urllib3 writes the URL path into its own
messages: :func:`~hefestus.notify.dispatcher.scrub_exception` cleans them). Redirects
are not followed: the body would go wherever the redirect points. Each
subclass reads its service's answers in ``_check``.
"""

from __future__ import annotations

from typing import Any

import requests
from pydantic import SecretStr

from hefestus.errors import NotifyError
from hefestus.notify.message import (
    Notification,
    scrub,
    scrub_exception,
    url_secrets,
)


class WebhookNotifier:
    service = "webhook"

    def __init__(self, url: str | SecretStr, *, name: str, timeout: float = 10.0,
                 connect_timeout: float = 5.0, verify_tls: bool = True,
                 session: requests.Session | None = None) -> None:
        self.name = name
        self._url = url.get_secret_value() if isinstance(url, SecretStr) else url
        if not self._url.startswith(("https://", "http://")):
            raise ValueError(f"{name}: the {self.service} webhook URL must start with https://")
        self._secrets = url_secrets(self._url)
        self._timeout = (connect_timeout, timeout)
        self._session = session or requests.Session()
        self._session.verify = verify_tls
        self._session.headers.update({"User-Agent": "hefestus"})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, url='**********')"

    def close(self) -> None:
        self._session.close()

    def payload(self, n: Notification) -> dict[str, Any]:
        raise NotImplementedError

    def _check(self, resp: requests.Response) -> None:
        raise NotImplementedError

    def send(self, n: Notification) -> None:
        """Post once; raise NotifyError (the Dispatcher retries what is transient)."""
        payload = self.payload(n)
        try:
            resp = self._session.post(self._url, json=payload, timeout=self._timeout,
                                      allow_redirects=False)
        except requests.RequestException as exc:
            raise self._no_answer(exc) from scrub_exception(exc, self._secrets)
        with resp:
            self._check(resp)

    def _error(self, message: str, **kw: Any) -> NotifyError:
        return NotifyError(scrub(f"{self.service} webhook '{self.name}': {message}", self._secrets), **kw)

    def _no_answer(self, exc: requests.RequestException) -> NotifyError:
        t = self._timeout
        if isinstance(exc, requests.ConnectTimeout):
            return self._error(f"cannot connect within {t[0]:g}s", transient=True, reason="timeout")
        if isinstance(exc, requests.Timeout):
            # The service may have posted it anyway: a retry can show the message twice.
            return self._error(f"no answer within {t[1]:g}s", transient=True, reason="timeout")
        if isinstance(exc, requests.exceptions.SSLError):
            return self._error("TLS handshake failed (a proxy with its own certificate?)",
                               transient=False, reason="connection")
        if isinstance(exc, requests.ConnectionError):
            return self._error("cannot connect (DNS, firewall or proxy?)", transient=True,
                               reason="connection")
        return self._error(f"request failed: {type(exc).__name__} (is the URL well-formed?)",
                           transient=False, reason="client-error")

    def _redirected(self, status: int) -> NotifyError:
        return self._error(f"redirected (HTTP {status}): check the webhook URL",
                           transient=False, reason="client-error", status=status)

"""Masks secrets in text before it leaves the process.

Event texts are copied from logs, and logs are full of things that must not be
sent to an LLM, written to our own log, posted back to Zabbix as an
acknowledgement or frozen into a test cassette: passwords in DSNs, bearer
tokens in curl commands, keys in env dumps. :class:`Redactor` replaces them
with :data:`REDACTED`, keeping the surrounding text (and the key names) so the
text still explains the problem.

Every detector is an RE2 pattern (the text may be 1 MB and crafted), run once
over the text. Detectors prefer missing an odd-looking secret over mangling
ordinary log text. The output is a fixed point: redacting it again changes
nothing, so callers need not track what was already redacted.

Log text is hostile as well as careless, so the detectors also see through the
ways a key or value gets disguised or wrapped: zero-width characters inside a
key (removed, wherever they follow a letter or digit: they are invisible and
only serve to hide a word), full-width and percent- or HTML-encoded separators
(``＝``, ``%3D``, ``&#61;``), a value on the line after its key, a PEM header
broken over two lines, a URL password holding ``/``, ``?`` or ``#``, and a
token standing alone as a URL's user.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from hefestus.classify.regex import Regex, compile_regex

REDACTED = "<redacted>"

# Key names whose value is a secret. The key must *end* in one of these, so
# ``auth_mode``, ``token_count`` or ``secretName`` are left alone.
_CORE = (r"(?:pass(?:word|wd|phrase)|secret|token|auth|api[ _-]?key|credentials?"
         r"|(?:access|secret|private|account|encryption|signing|master)[_-]?key)")
# ``pass`` and ``pwd`` alone are too common inside words (``bypass``): only as a
# whole word or after a separator (``db_pass``, ``Pwd=`` in ODBC strings), or sshpass's.
_KEY = rf"(?:[A-Za-z0-9_.-]*{_CORE}|\b(?:[A-Za-z0-9_.-]*[_.-])?(?:ssh)?(?:pass|pwd))"
# Bare keys that also start ordinary prose ("failed to fetch token: ...",
# "passwd: files"): with an unquoted ``key: value`` they need a secret-looking value.
_WEAK = frozenset({"token", "auth", "secret", "passwd", "pass", "pwd", "credential", "credentials",
                   "api key"})
# = and : as written, full-width, percent-encoded or as HTML entities.
_SEP = r"(?P<sep>=>|:=|[:=＝：]|%3[dDaA]|&#0*(?:61|58);|&#[xX]0*3[dDaA];|&(?:equals|colon);)"
_COLONS = frozenset({":", "：", "%3a", "&#58;", "&#x3a;", "&colon;"})
# A value: double-quoted, single-quoted, JSON-escaped quoted, or a bare word that ends at
# whitespace, a quote or a list/URL/struct delimiter. ``&`` and ``;`` end it only where a
# new ``key=`` follows (``?password=x&next=/``, ``Pwd=x;Encrypt=yes``): ``password=ab&cd;ef``
# is one value. The character after a bare word is matched (and kept), since RE2 cannot look ahead.
# A part after & or ; holds no separator and no marker: were it to run into a value that a
# later match masks, the next pass would see it end differently (redaction is a fixed point).
_QUOTED = (r""""(?P<dq>(?:[^"\\\r\n]|\\.)*)"|'(?P<sq>[^'\r\n]*)'"""
           r'|\\"(?P<eq>[^"\\\r\n]*)\\"')
_END = r"""(?:[\s"'&;,)\]}]|$)"""
_WRAP = r"[ \t]*\r?\n[ \t]*"  # a line break, with the spaces around it
_PLAIN = r"""[^\s"'&;,)\]}]"""
# (a bare word starting with { or [ followed by a quote or space is a structure, not a value)
_VALUE = (rf"""(?:{_QUOTED}|(?P<u>(?:[^\s"'&;,)\]}}{{\[]|[{{\[][^\s"'&;,)\]}}{{\[]){_PLAIN}*"""
          rf"""(?:[&;][^\s"'&;,)\]}}=＝:：<>]+)*){_END})""")
# A value on the line after its key: quoted after any separator (``"password":\n "x"``), or
# after ``=`` one plain word that is not itself a key nor an option nor a placeholder. After
# a bare ``key:`` the next line is YAML nesting or the next line of a message, not a value.
_EQ = r"(?:=>|:=|[=＝]|%3[dD]|&#0*61;|&#[xX]0*3[dD];|&equals;)"
_NEXT_LINE_VALUE = (rf"""(?:{_SEP}{_WRAP}(?:{_QUOTED})"""
                    rf"""|{_EQ}{_WRAP}(?P<u>[^\s"'&;,)\]}}=:<>-][^\s"'&;,)\]}}=:<>]*){_END})""")
_VALUE_GROUPS = ("dq", "sq", "eq", "u")
_HEADER_SCHEMES = r"(?:bearer|basic|token|digest|negotiate|ntlm|apikey|api-key|sso-key|dpop|key)"
_PREFIXED_TOKENS = "|".join((
    r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}\b",  # AWS key ids
    r"\bgh[pousr]_[A-Za-z0-9]{36,}", r"\bgithub_pat_[A-Za-z0-9_]{22,}",  # GitHub
    r"\bgl(?:pat|dt|rt|ptt|cbt|oas|soat|ft|imt|agent|ffct)-[A-Za-z0-9_.-]{20,}",  # GitLab
    r"\bxox[a-z](?:\.xox[a-z])?-[A-Za-z0-9-]{10,}", r"\bxapp-[A-Za-z0-9-]{10,}",  # Slack
    r"\bAIza[0-9A-Za-z_-]{35}",  # Google API key
    r"\bsk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",  # OpenAI / Anthropic
    r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
    r"\bnpm_[A-Za-z0-9]{36}\b", r"\bpypi-AgE[A-Za-z0-9_-]{50,}", r"\bdckr_pat_[A-Za-z0-9_-]{20,}",
    r"\bhv[sb]\.[A-Za-z0-9_-]{24,}",  # HashiCorp Vault
    r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",  # JWT (header is '{"...')
))
# PEM body: base64, escaped or real newlines, and the headers of old encrypted
# keys. Both branches stop at the first character outside it, so a text of many
# BEGIN lines without END costs one scan, not one scan per line.
_PEM_BODY = r"[A-Za-z0-9+/=\s\\:,.-]"
_PEM_FOOTER = r"-----END[A-Z0-9\s]*PRIVATE\s+KEY(?:\s+BLOCK)?-----"
_AT_HOST = r"@[A-Za-z0-9\[]"  # the @ that ends a URL's credentials, and the host's first character

_Keep = Callable[[Any, str], bool]  # (match, masked value) -> leave it alone?


def _not_a_secret(m: Any, value: str) -> bool:
    """``passwd: files`` / ``token: serviceaccounts "x" not found`` are prose, not secrets."""
    key = (m.group("k") or "").lower().lstrip("-")
    if m.string[max(0, m.start() - 3):m.start()].endswith("//"):
        return True  # scheme://user:pass@ is a URL's user, masked by url-credentials
    if key == "pwd" and value[:1] in ("/", "~"):
        return True  # sudo's PWD=/home/user is a directory
    if key not in _WEAK or (m.group("sep") or "").lower() not in _COLONS or m.group("kq") or m.group("u") is None:
        return False
    return value.isalpha() and len(value) < 16


_PORT = compile_regex(r"\d{1,5}[/?#]", case_sensitive=True)


def _a_port(m: Any, value: str) -> bool:
    """``https://host:8443/a?mail=x@y`` has a port and a path, not a password."""
    return _PORT.match(value) is not None


def _not_a_token(m: Any, value: str) -> bool:
    """A URL's user alone (``https://oauth2@``, ``ssh://git@``) is a name, unless it looks
    generated: three of upper, lower and digit, or 32 characters of two of them."""
    kinds = sum((any(c.isupper() for c in value), any(c.islower() for c in value),
                 any(c.isdigit() for c in value)))
    return not (kinds == 3 or (kinds == 2 and len(value) >= 32))


_DETECTORS: tuple[tuple[str, str, tuple[str, ...], _Keep | None], ...] = (
    # (name, pattern, groups to mask (none: the whole match), exception)
    ("pem", rf"-----BEGIN\s+(?:[A-Z0-9]+\s+)*PRIVATE\s+KEY(?:\s+BLOCK)?-----"
            rf"(?:(?P<b>{_PEM_BODY}*?){_PEM_FOOTER}|(?P<t>{_PEM_BODY}*))", ("b", "t"), None),
    ("authorization", rf"(?i)\b(?:proxy-)?authorization\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?"
                      rf"(?:{_HEADER_SCHEMES}(?:[ \t]+|{_WRAP})(?P<s>[^\s\"'\\,;]+)|(?P<t>[^\s\"'\\,;]{{8,}}))",
     ("s", "t"), None),
    ("cookie", r"""(?i)\b(?:set-)?cookie\\?["']?[ \t]*:[ \t]*\\?["']?(?P<s>[^\r\n"'\\]+)""", ("s",), None),
    # The password runs to the last ``@host`` of the URL: it may hold / ? # and even @
    # (``p@ss@db``); an @ later in the path is masked with it (more is better than less).
    ("url-credentials", rf"""(?i)\b[a-z][a-z0-9+.-]*://[^\s:/?#@"'<>]*:(?P<s>[^\s"']*){_AT_HOST}""",
     ("s",), _a_port),
    ("url-user-token", rf"""(?i)\b[a-z][a-z0-9+.-]*://(?P<s>[A-Za-z0-9._~%+-]{{16,}}){_AT_HOST}""",
     ("s",), _not_a_token),
    ("webhook", r"""(?i)\bhttps://(?:hooks\.slack\.com/(?:services|workflows|triggers)/"""
                r"""|[a-z0-9.-]+\.webhook\.office\.com/webhookb2/|discord(?:app)?\.com/api/webhooks/"""
                r"""|[a-z0-9.-]+\.logic\.azure\.com(?::\d+)?/workflows/)(?P<s>[^\s"'<>]+)""", ("s",), None),
    ("url-query", r"""(?i)[?&](?:sig|signature|x-amz-signature|x-amz-security-token|x-goog-signature"""
                  r"""|x-goog-credential|key|code|access_token|id_token|refresh_token)=(?P<s>[^&\s#"']+)""",
     ("s",), None),
    ("xml", rf"(?i)<(?P<k>{_KEY})>(?P<s>[^<]+)</", ("s",), None),
    ("key-value", rf"(?i)(?P<k>{_KEY})(?P<kq>\\?[\"'])?[ \t]*{_SEP}[ \t]*{_VALUE}",
     _VALUE_GROUPS, _not_a_secret),
    ("key-value-wrapped", rf"(?i)(?P<k>{_KEY})(?P<kq>\\?[\"'])?[ \t]*{_NEXT_LINE_VALUE}",
     _VALUE_GROUPS, _not_a_secret),
    ("cli-flag", rf"(?i)(?:^|[ \t])--?[A-Za-z0-9-]*(?:password|passwd|token|secret|api-?key"
                 rf"|access-key|secret-key)[ \t]+{_VALUE}", _VALUE_GROUPS, None),
    ("mysql-p", r"""(?i:\bmysql(?:dump|admin|import|check|slap)?\b)[^\r\n]*?[ \t]-p"""
                r"""(?:'(?P<sq>[^'\r\n]*)'|"(?P<dq>[^"\r\n]*)"|(?P<u>[^\s'"-]\S*))""", ("sq", "dq", "u"), None),
    # sshpass -p takes the password as its own argument or glued on; options may come first.
    ("sshpass-p", r"""(?i:\bsshpass)[ \t]+(?:-[A-Za-oq-z]\S*[ \t]+)*-p[ \t]*"""
                  r"""(?:'(?P<sq>[^'\r\n]*)'|"(?P<dq>[^"\r\n]*)"|(?P<u>[^\s'"]\S*))""", ("sq", "dq", "u"), None),
    ("bearer", rf"(?i)\bbearer(?:[ \t]+|{_WRAP})(?P<s>[A-Za-z0-9._~+/=-]{{20,}})", ("s",), None),
    ("token", _PREFIXED_TOKENS, (), None),
)

# Keys whose whole value is secret in structured data (dict keys, structlog fields).
_SECRET_FIELD = compile_regex(rf"{_KEY}|[A-Za-z0-9_.-]*(?:authorization|cookie|credentials?)")
# Invisible characters right after a letter or digit: ``pass\u200bword=`` reads as
# ``password=`` to a person and to nothing else. Removed before the detectors run. (The
# standard library's re: no nesting, so linear; its C-level sub is 10x the binding's.)
_INVISIBLE_CHARS = "\u00ad\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"
_INVISIBLE = re.compile(f"([A-Za-z0-9_])[{_INVISIBLE_CHARS}]+")
_INVISIBLE_SET = frozenset(_INVISIBLE_CHARS)


def _already_masked(value: str) -> bool:
    """Masked already, or a documentation placeholder such as ``<token>`` (in a shipped
    step like ``--password <token>``): neither is a secret."""
    if value == REDACTED or set(value) == {"*"}:
        return True
    inner = value[1:-1]
    return (len(value) > 2 and value[0] == "<" and value[-1] == ">" and len(inner) <= 40
            and inner.replace("-", "").replace("_", "").replace(" ", "").isalpha())


def _inside_marker(text: str, start: int, end: int) -> bool:
    """Whether [start, end) lies within a REDACTED we wrote (an extra pattern like ``\\w+``)."""
    if end - start > len(REDACTED):
        return False
    lo = max(0, end - len(REDACTED))
    return any(text.startswith(REDACTED, i) for i in range(lo, start + 1))


class _Detector:
    """One compiled pattern and which of its groups hold the secret."""

    def __init__(self, regex: Regex, groups: Sequence[str], keep: _Keep | None = None) -> None:
        self.regex = regex
        index = regex.groupindex
        self.groups = tuple(index[g] for g in groups) or (0,)
        self.keep = keep

    def __call__(self, text: str) -> str:
        if not text:
            return text
        return str(self.regex.sub(self._mask, text))

    def _mask(self, m: Any) -> str:
        text, start, end = m.string, m.start(), m.end()
        out: list[str] = []
        pos = start
        for g in self.groups:
            s, e = m.span(g)
            if s < 0 or e <= s:
                continue
            value = text[s:e]
            if _already_masked(value) or _inside_marker(text, s, e):
                continue
            if self.keep is not None and self.keep(m, value):
                continue
            out += (text[pos:s], REDACTED)
            pos = e
        out.append(text[pos:end])
        return "".join(out)


class Redactor:
    """Replaces secrets in text and in structured values with :data:`REDACTED`.

    ``extra`` holds RE2 patterns from configuration, for site-specific secrets
    (an internal token format, a customer id). Like every pattern ops edit,
    they are case-insensitive. A pattern with a group named ``secret`` masks
    only that group; otherwise it masks the whole match.
    """

    def __init__(self, extra: Sequence[str] = ()) -> None:
        detectors = [_Detector(compile_regex(src, case_sensitive=True), groups, keep)
                     for _, src, groups, keep in _DETECTORS]
        for src in extra:
            rx = compile_regex(src)  # RegexError names the pattern
            detectors.append(_Detector(rx, ("secret",) if "secret" in rx.groupindex else ()))
        self._detectors = tuple(detectors)

    def __call__(self, text: str) -> str:
        if not text.isascii() and not _INVISIBLE_SET.isdisjoint(text):
            text = _INVISIBLE.sub(r"\1", text)
        for detector in self._detectors:
            text = detector(text)
        return text

    def redact_value(self, obj: Any) -> Any:
        """Redact every string inside dicts, lists and tuples; keys are kept.

        A value under a secret-looking key (``password``, ``Authorization``,
        ``api_key``...) is replaced whole, whatever it looks like, because a
        bare ``"hunter2"`` carries no pattern a text detector could find.
        """
        if isinstance(obj, str):
            return self(obj)
        if isinstance(obj, Mapping):
            return {k: self.redact_field(k, v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.redact_value(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self.redact_value(v) for v in obj)
        return obj

    def redact_field(self, key: Any, value: Any) -> Any:
        """Redact one field: whole if its key looks secret, else like :meth:`redact_value`."""
        return self.redact_value(mask_secret_field(key, value))


def mask_secret_field(key: Any, value: Any) -> Any:
    """``value`` masked whole when ``key`` looks secret (``password``, ``api_key``...), at any
    depth: a Zabbix tag ``password`` holds a list of values, an ``api_key`` may be a number."""
    if isinstance(key, str) and _SECRET_FIELD.fullmatch(key):
        return _mask_all(value)
    return value


def _mask_all(value: Any) -> Any:
    """Strings, numbers and lists of them; a mapping names its own keys (``auth: {user: bob}``)."""
    if isinstance(value, str):
        return value if not value or _already_masked(value) else REDACTED
    if isinstance(value, list):
        return [_mask_all(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_mask_all(v) for v in value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return REDACTED
    return value


_Processor = Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]


def processor(redactor: Redactor) -> _Processor:
    """A structlog processor redacting every field of the event.

    Place it after ``format_exc_info`` so tracebacks, which quote local
    variables and connection strings, are redacted too.
    """

    def redact_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            event[key] = redactor.redact_field(key, value)
        return event

    return redact_event


def unredacted(text: str) -> str:
    """The redaction of a component built without one (tests, tools): the text as it is."""
    return text

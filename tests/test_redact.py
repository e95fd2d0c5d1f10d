"""Secret redaction: each kind of secret is masked, ordinary log text is not touched."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hefestus.classify.regex import RegexError
from hefestus.redact import REDACTED, Redactor, processor

R = Redactor()

# Token-shaped fakes are built by concatenation so secret scanners (GitHub push
# protection, gitleaks) do not flag this file; the Redactor sees the full string.
GH = "ghp" + "_" + "wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx"
GHS = "ghs" + "_" + "16C7e42F292c6912E7710c838347Ae178B4a"
GH_PAT = "github" + "_pat_" + "11ABCDEFG0abcdefghijkl_" + "a1" * 30
GLPAT = "glpat" + "-" + "x7Rb2sTq9LmN4pKc8VzW"
SLACK = "xoxb" + "-123456789012-1234567890123-" + "AbCdEfGhIjKlMnOpQrStUvWx"
SLACK_HOOK = "T00000000/B00000000/" + "XXXXXXXXXXXXXXXXXXXXXXXX"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
       + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
AWS_ID = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
GOOGLE = "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
STRIPE = "sk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
PEM_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"

SECRETS: list[tuple[str, str, str]] = [
    # (id, text, expected output)
    ("dsn-postgres", "could not connect: postgresql://app:S3cr3t!x@db.internal:5432/orders?sslmode=require",
     f"could not connect: postgresql://app:{REDACTED}@db.internal:5432/orders?sslmode=require"),
    ("dsn-mongodb-srv", "MongoServerError at mongodb+srv://admin:p%40ss@cluster0.ab1cd.mongodb.net/test",
     f"MongoServerError at mongodb+srv://admin:{REDACTED}@cluster0.ab1cd.mongodb.net/test"),
    ("dsn-redis-no-user", "Error connecting to redis://:hunter2@redis-master:6379/0.",
     f"Error connecting to redis://:{REDACTED}@redis-master:6379/0."),
    ("dsn-amqp", "amqp://guest:guest-pw@rabbit:5672/ unreachable", f"amqp://guest:{REDACTED}@rabbit:5672/ unreachable"),
    ("dsn-mysql-at-in-password", "mysql://root:p@ss@db/app", f"mysql://root:{REDACTED}@db/app"),
    ("https-basic", f"fatal: unable to access 'https://x-access-token:{GHS}@github.com/o/r.git/'",
     f"fatal: unable to access 'https://x-access-token:{REDACTED}@github.com/o/r.git/'"),
    ("auth-bearer-header", f'curl -sS -H "Authorization: Bearer {JWT}" https://api.example.com/v1',
     f'curl -sS -H "Authorization: Bearer {REDACTED}" https://api.example.com/v1'),
    ("auth-basic-header", "Authorization: Basic dXNlcjpwYXNzd29yZA==", f"Authorization: Basic {REDACTED}"),
    ("auth-token-header", "Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
     f"Authorization: Token {REDACTED}"),
    ("auth-json-header", '{"headers": {"Authorization": "Bearer abc.def.ghi-123456", "Accept": "*/*"}}',
     f'{{"headers": {{"Authorization": "Bearer {REDACTED}", "Accept": "*/*"}}}}'),
    ("bare-bearer", "401 for bearer 7f3c9a1e0b8d4f6a2c5e8b1d3f7a9c0e", f"401 for bearer {REDACTED}"),
    ("cookie", "Cookie: zbx_session=eyJzZXNzaW9uaWQiOiIx; lang=en\nnext", f"Cookie: {REDACTED}\nnext"),
    ("kv-env", "DB_PASSWORD=hunter2 PGPASSWORD='x y' MYSQL_PWD=abc user=app",
     f"DB_PASSWORD={REDACTED} PGPASSWORD='{REDACTED}' MYSQL_PWD={REDACTED} user=app"),
    ("kv-yaml", "  password: hunter2\n  client_secret: \"s3cr3t\"\n  username: app",
     f"  password: {REDACTED}\n  client_secret: \"{REDACTED}\"\n  username: app"),
    ("kv-json", '{"user": "bob", "password": "hun\\"ter2", "api_key": 12345, "auth": "0424bd59b8076741"}',
     f'{{"user": "bob", "password": "{REDACTED}", "api_key": {REDACTED}, "auth": "{REDACTED}"}}'),
    ("kv-json-escaped", '{"log":"{\\"token\\":\\"abc123\\",\\"level\\":\\"info\\"}"}',
     f'{{"log":"{{\\"token\\":\\"{REDACTED}\\",\\"level\\":\\"info\\"}}"}}'),
    ("kv-java-map", "User{name=bob, password=abc}", f"User{{name=bob, password={REDACTED}}}"),
    ("kv-query", "GET /login?user=bob&password=hunter2&next=/ HTTP/1.1",
     f"GET /login?user=bob&password={REDACTED}&next=/ HTTP/1.1"),
    ("kv-odbc", "Server=tcp:db,1433;Database=app;Uid=sa;Pwd=Secr3t;Encrypt=yes",
     f"Server=tcp:db,1433;Database=app;Uid=sa;Pwd={REDACTED};Encrypt=yes"),
    ("kv-header-style", "X-Api-Key: 3f2a9c1b7d", f"X-Api-Key: {REDACTED}"),
    ("kv-weak-key-with-secret-value", "token: 8f14e45fceea167a5a36dedd4bea2543", f"token: {REDACTED}"),
    ("xml", "<user>bob</user><password>hunter2</password>", f"<user>bob</user><password>{REDACTED}</password>"),
    ("cli-flag", "ps: /usr/bin/app --db-password s3cr3t --port 5432", f"ps: /usr/bin/app --db-password {REDACTED} --port 5432"),
    ("mysql-p", "mysqldump -u root -pS3cret -h db app > dump.sql", f"mysqldump -u root -p{REDACTED} -h db app > dump.sql"),
    ("pem", f"key:\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}-----END RSA PRIVATE KEY-----\nnext line",
     f"key:\n-----BEGIN RSA PRIVATE KEY-----{REDACTED}-----END RSA PRIVATE KEY-----\nnext line"),
    ("pem-truncated", f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}", f"-----BEGIN OPENSSH PRIVATE KEY-----{REDACTED}"),
    ("gcp-service-account", '{"type": "service_account", "private_key_id": "1a2b3c", "private_key": '
     '"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n", '
     '"client_email": "ci@proj.iam.gserviceaccount.com"}',
     f'{{"type": "service_account", "private_key_id": "1a2b3c", "private_key": "{REDACTED}", '
     '"client_email": "ci@proj.iam.gserviceaccount.com"}'),
    ("aws", f"[default]\naws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\nregion = eu-west-1",
     f"[default]\naws_access_key_id = {REDACTED}\naws_secret_access_key = {REDACTED}\nregion = eu-west-1"),
    ("aws-sts-json", '{"Credentials": {"SecretAccessKey": "abc/def+1", "SessionToken": "FwoGZXIvYXdzE"}}',
     f'{{"Credentials": {{"SecretAccessKey": "{REDACTED}", "SessionToken": "{REDACTED}"}}}}'),
    ("github", f"remote: Invalid username or token {GH}.", f"remote: Invalid username or token {REDACTED}."),
    ("github-pat", f"using {GH_PAT} for api", f"using {REDACTED} for api"),
    ("gitlab", f"git push https://oauth2@gitlab.com/g/p.git with {GLPAT} failed",
     f"git push https://oauth2@gitlab.com/g/p.git with {REDACTED} failed"),
    ("slack-token", f"slack: invalid_auth for {SLACK}", f"slack: invalid_auth for {REDACTED}"),
    ("slack-webhook", f"POST https://hooks.slack.com/services/{SLACK_HOOK} returned 404",
     f"POST https://hooks.slack.com/services/{REDACTED} returned 404"),
    ("teams-webhook", "POST https://contoso.webhook.office.com/webhookb2/a1b2@c3d4/IncomingWebhook/e5f6/0a1b failed",
     f"POST https://contoso.webhook.office.com/webhookb2/{REDACTED} failed"),
    ("jwt", f"token expired: {JWT} (exp 1700000000)", f"token expired: {REDACTED} (exp 1700000000)"),
    ("azure-storage", f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURE_KEY};EndpointSuffix=core.windows.net",
     f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={REDACTED};EndpointSuffix=core.windows.net"),
    ("azure-sas", "GET https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig=abcDEF%2B123%3D&se=2024 403",
     f"GET https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig={REDACTED}&se=2024 403"),
    ("google-api-key", f"https://maps.googleapis.com/x?key={GOOGLE}&q=1", f"https://maps.googleapis.com/x?key={REDACTED}&q=1"),
    ("stripe", f"stripe: {STRIPE} revoked", f"stripe: {REDACTED} revoked"),
]

ORDINARY = [
    # Kubernetes
    'Back-off restarting failed container app in pod app-7d9f8b6c5d-x2k4q_default(0d6a1f52-3a3e-4f0b-9c1e-2b8f3e6c9a11)',
    'MountVolume.SetUp failed for volume "kube-api-access-x7k2p" : failed to fetch token: serviceaccounts "default" not found',
    'Error: secret "db-credentials" not found',
    'secrets "db-credentials" is forbidden: User "system:serviceaccount:ci:deployer" cannot get resource "secrets"',
    'Failed to pull image "registry.example.com/app:1.2.3": rpc error: code = Unknown desc = 401 Unauthorized',
    '0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }.',
    'Readiness probe failed: Get "http://10.244.1.17:8080/healthz": dial tcp 10.244.1.17:8080: connect: connection refused',
    'token bucket rate limiter: waited 1.2s, tokens=0',
    # PostgreSQL
    '2024-04-23 12:34:56.789 UTC [12345] FATAL:  password authentication failed for user "app"',
    '2024-04-23 12:34:56.789 UTC [12345] DETAIL:  Connection matched pg_hba.conf line 99: "host all all 0.0.0.0/0 md5"',
    'FATAL:  remaining connection slots are reserved for non-replication superuser connections',
    # systemd / Linux
    "Apr 23 12:34:56 web01 systemd[1]: php8.2-fpm.service: Failed with result 'timeout'.",
    "Apr 23 12:34:56 web01 sshd[991]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.7  user=root",
    "Apr 23 12:34:56 web01 sudo[4242]:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
    "passwd: password updated successfully",
    "auth_mode=ldap token_type=bearer max_tokens=512 secretName=db-creds",
    "the Bearer of bad news",
    "Author: Jane Doe <jane@example.com>",
    # GitHub Actions
    "##[error]Process completed with exit code 1.",
    "Run actions/checkout@v4\n  with:\n    token: ***\n    ssh-strict: true",
    '##[command]git -c http.extraheader="AUTHORIZATION: basic ***" fetch origin',
    "Error: The process '/usr/bin/git' failed with exit code 128",
    # misc
    "ssh://git@github.com:22/owner/repo.git and https://example.com:8443/path?q=1",
    "std::vector<int> overflow at 0x7fff5fbff8a8",
    "",
]


@pytest.mark.parametrize(("text", "expected"), [s[1:] for s in SECRETS], ids=[s[0] for s in SECRETS])
def test_each_secret_kind_is_masked_and_the_rest_survives(text: str, expected: str) -> None:
    """Each detector masks its secret exactly, keeping the key names and the text around it."""
    assert R(text) == expected


@pytest.mark.parametrize("secret", [GH, GHS, GH_PAT, GLPAT, SLACK, SLACK_HOOK, JWT, AWS_ID, AWS_SECRET,
                                    AZURE_KEY, GOOGLE, STRIPE, PEM_BODY.split()[0], "hunter2", "S3cr3t"])
def test_no_secret_survives_in_any_sample(secret: str) -> None:
    """Whatever sample a secret was in, its text is gone after redaction."""
    for _, text, _ in SECRETS:
        assert secret not in R(text)


@pytest.mark.parametrize("line", ORDINARY, ids=lambda v: v[:40])
def test_ordinary_log_text_is_unchanged(line: str) -> None:
    """Prose that merely mentions passwords, tokens or auth, and already-masked values, pass through."""
    assert R(line) == line


@pytest.mark.parametrize("text", [s[1] for s in SECRETS] + ORDINARY, ids=lambda v: v[:40])
def test_redaction_is_idempotent(text: str) -> None:
    """Redacting redacted text changes nothing, so callers may redact at every boundary."""
    once = R(text)
    assert R(once) == once


@given(st.lists(st.sampled_from([s[1] for s in SECRETS] + ORDINARY + [" ", "\n", "=", ":", '"', "@", "/"]))
       .map("".join) | st.text())
def test_idempotent_and_total_on_arbitrary_text(text: str) -> None:
    """On any text, and on samples glued together, redaction never raises and is a fixed point."""
    once = R(text)
    assert R(once) == once


def test_extra_patterns_from_configuration() -> None:
    """Ops add site formats; a ``secret`` group masks only itself, otherwise the whole match goes."""
    r = Redactor(extra=[r"acme-[0-9a-f]{16}", r"customer=(?P<secret>\d+)"])
    out = r("key ACME-0123456789abcdef for customer=4711 with password=x")
    assert out == f"key {REDACTED} for customer={REDACTED} with password={REDACTED}"
    assert r(out) == out


def test_an_extra_pattern_matching_the_marker_stays_idempotent() -> None:
    """A careless extra like ``\\w+`` would otherwise nest markers on every pass."""
    r = Redactor(extra=[r"\bsecret\w+"])
    once = r("secretword password=x")
    assert once == f"{REDACTED} password={REDACTED}" and r(once) == once
    r_empty = Redactor(extra=["x*"])  # matches the empty string everywhere: must not insert markers
    assert r_empty("abc") == "abc"


@pytest.mark.parametrize("bad", ["(unclosed", r"(?=lookahead)", r"(a)\1"])
def test_a_bad_extra_pattern_raises_naming_it(bad: str) -> None:
    """A pattern RE2 cannot compile is a configuration error that names the pattern."""
    with pytest.raises(RegexError) as exc:
        Redactor(extra=["fine-[0-9]+", bad])
    assert repr(bad) in str(exc.value)


def test_redact_value_walks_nested_structures() -> None:
    """Strings are redacted at any depth; values under secret-looking keys are masked whole."""
    body: dict[str, Any] = {
        "auth": {"user": "bob", "password": "hunter2"},
        "headers": [("Authorization", "Bearer abc"), ("Accept", "*/*")],
        "dsn": "postgresql://app:pw@db/app",
        "token": "plain",
        "count": 3,
        "note": None,
        "items": [{"msg": f"using {GH}"}, "ok"],
    }
    out = R.redact_value(body)
    assert out == {
        "auth": {"user": "bob", "password": REDACTED},
        "headers": [("Authorization", "Bearer abc"), ("Accept", "*/*")],
        "dsn": f"postgresql://app:{REDACTED}@db/app",
        "token": REDACTED,
        "count": 3,
        "note": None,
        "items": [{"msg": f"using {REDACTED}"}, "ok"],
    }
    assert body["auth"]["password"] == "hunter2"  # the input is not mutated
    assert R.redact_value(out) == out


def test_structlog_processor_redacts_every_field() -> None:
    """The processor masks secret-named fields whole and secrets inside any other string."""
    proc = processor(R)
    event: dict[str, Any] = {"event": f"posting to https://hooks.slack.com/services/{SLACK_HOOK}",
                             "api_key": "k", "auth_mode": "token", "ctx": {"dsn": "redis://:pw@r:6379"}}
    out = proc(None, "info", event)
    assert out == {"event": f"posting to https://hooks.slack.com/services/{REDACTED}",
                   "api_key": REDACTED, "auth_mode": "token", "ctx": {"dsn": f"redis://:{REDACTED}@r:6379"}}


def test_a_megabyte_of_text_is_redacted_completely() -> None:
    """A 1 MB event text with secrets scattered through it is processed whole (RE2, one pass each)."""
    line = "Apr 23 12:34:56 web01 app[42]: request failed, retrying in 5s\n"
    secret_line = f"DB_PASSWORD=hunter2 token {GH} url redis://:pw@r:6379\n"
    text = (line * 99 + secret_line) * 170
    assert len(text) > 1_000_000
    out = R(text)
    assert "hunter2" not in out and GH not in out and ":pw@" not in out
    assert out.count(REDACTED) == 3 * 170
    assert out.count(line) == 99 * 170


@pytest.mark.parametrize("chunk", ['password="', "-----BEGIN PRIVATE KEY-----", "https://u:p@", "mysql -p ",
                                   "Authorization: ", "eyJabcde.", "password=x ", "a"])
def test_crafted_megabyte_inputs_finish(chunk: str) -> None:
    """Repetitive crafted inputs complete and stay a fixed point (no backtracking blow-up)."""
    text = chunk * ((1 << 20) // len(chunk))
    out = R(text)
    assert R(out) == out


def test_documentation_placeholders_are_not_secrets() -> None:
    """A shipped step like `--password <token>` keeps its placeholder; a real value does not."""
    r = Redactor()
    assert r("argocd repo add <url> --password <token> --upsert") == \
        "argocd repo add <url> --password <token> --upsert"
    assert r("argocd repo add x --password hunter2secret") == "argocd repo add x --password <redacted>"
    assert r("password=<s3cr3t>") == "password=<redacted>"

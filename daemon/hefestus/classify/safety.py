"""Advice that is safe to follow: the load-time guard on dictionary steps.

A pattern's ``solutions`` are pasted into Zabbix and followed by an on-call engineer,
often at 3 a.m. and often verbatim. Two rules hold for every step list (a pattern's
``solutions`` and a dictionary's ``fallback``):

1. **Read-only first.** The first step must be read-only. Read-only is defined
   *negatively*: a step is read-only when it uses no command of :data:`DESTRUCTIVE`
   and no command of :data:`STATE_CHANGING`, and does not open with a change verb
   (:data:`CHANGE_VERBS`). A positive list of inspection commands was rejected: good
   first steps are often prose ("Compare the fingerprint with the provider's published
   ones", "Open the Application in the UI") or tools no list anticipates
   (``pg_controldata``, ``ethtool -S``), so a positive list would either refuse correct
   advice or grow into a catalogue of every CLI. The negative lists only have to name
   what changes things, which is a much shorter and more stable set; a step that slips
   through them is still subject to review.
   Because the first step is read-only, no destructive step can come before a
   read-only one.
2. **Destructive steps carry a caution.** A step that uses a command of
   :data:`DESTRUCTIVE` must contain the marker :data:`CAUTION_MARKER` (``CAUTION:``,
   upper case) followed by at least :data:`MIN_CAUTION_WORDS` words saying what it can
   lose (data, availability, access) and what to confirm first.

A dictionary that breaks either rule is refused at load with a
:class:`~hefestus.errors.ConfigError` naming file:line and the pattern id, so
``hefestus check``, ``make test`` and the daemon's start all fail on it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from hefestus.errors import ConfigError

#: The marker a destructive step must carry, followed by what the step can lose.
CAUTION_MARKER = "CAUTION:"
#: Words after :data:`CAUTION_MARKER`: "CAUTION: careful" says nothing an engineer can act on.
MIN_CAUTION_WORDS = 4

_I = re.IGNORECASE

#: Commands that can lose data, availability or access when followed blindly. This is the
#: one list the guard uses (name -> regex searched in each step). Why each one is here:
#: it deletes or overwrites data that no later step can bring back (``rm -rf``, ``DROP``,
#: ``TRUNCATE``, ``mkfs``, ``dd of=``, ``xfs_repair -L`` zeroing the log, ``REPAIR TABLE``
#: dropping rows, ``PURGE BINARY LOGS`` breaking replicas and point-in-time recovery,
#: ``FLUSHALL``, prunes, ``kubectl delete`` of PVCs/PVs/CRDs/Namespaces which cascades to
#: disks and custom resources), it force-replaces live objects (``--force``, ``--replace``),
#: or it cuts availability or access in one stroke (``pg_terminate_backend``, ``ip link
#: set … down`` over SSH, ``reboot``/``shutdown``, ``helm uninstall``, ``iptables -F``).
DESTRUCTIVE: dict[str, re.Pattern[str]] = {
    "--force": re.compile(r"(?<![\w-])--force\b(?!-conflicts)"),
    "--replace": re.compile(r"(?<![\w-])--replace\b"),
    "--grace-period=0": re.compile(r"--grace-period[= ]0\b"),
    "--prune / prune": re.compile(r"(?<![\w-])--prune\b|\b(?:system|image|volume|container|builder|network)\s+prune\b", _I),
    "rm -r": re.compile(r"\brm\s+(?:-\w*[rR]\w*|--recursive)\b"),
    "pg_terminate_backend": re.compile(r"\bpg_terminate_backend\b", _I),
    "FLUSHALL/FLUSHDB": re.compile(r"\bFLUSH(?:ALL|DB)\b", _I),
    "ip link set … down": re.compile(r"\bip\s+link\s+set\s+(?:dev\s+)?\S+\s+down\b", _I),
    "xfs_repair -L": re.compile(r"\bxfs_repair\b[^;&|\n]*\s-L\b"),
    "REPAIR TABLE": re.compile(r"\bREPAIR\s+(?:NO_WRITE_TO_BINLOG\s+|LOCAL\s+)?TABLE\b", _I),
    "PURGE BINARY LOGS": re.compile(r"\bPURGE\s+(?:BINARY|MASTER)\s+LOGS\b", _I),
    "kubectl delete of pvc/pv/crd/namespace": re.compile(
        r"\bkubectl\b[^;&|\n]*\bdelete\s+(?:\S+\s+)*?(?:pvc|pv|crd|ns|namespaces?|persistentvolume(?:claim)?s?|"
        r"customresourcedefinitions?)\b", _I),
    "DROP": re.compile(r"\bDROP\s+(?:TABLE|DATABASE|SCHEMA|INDEX|USER|ROLE|OWNED|TABLESPACE)\b|\bpg_drop_replication_slot\b", _I),
    "TRUNCATE": re.compile(r"\bTRUNCATE\b", _I),
    "DELETE FROM": re.compile(r"\bDELETE\s+FROM\b", _I),
    "reboot/shutdown": re.compile(
        r"(?:^|[;&|(]\s*|\b(?:sudo|systemctl)\s+)(?:reboot|poweroff|halt)\b|\bshutdown\s+(?:-[hrP]\b|now\b|\+\d)|"
        r"\b(?:and|then)\s+reboot\b", _I),
    "mkfs": re.compile(r"\bmkfs\b", _I),
    "dd of=": re.compile(r"\bdd\b[^;&|\n]*\bof=", _I),
    "wipefs": re.compile(r"\bwipefs\b", _I),
    "pg_resetwal": re.compile(r"\bpg_reset(?:wal|xlog)\b", _I),
    "VACUUM FULL": re.compile(r"\bVACUUM\s*(?:\([^)]*\bFULL\b|FULL\b)", _I),
    "helm uninstall": re.compile(r"\bhelm\s+(?:uninstall|delete)\b", _I),
    "argocd app delete": re.compile(r"\bargocd\s+app\s+delete\b", _I),
    "iptables -F": re.compile(r"\biptables\b[^;&|\n]*\s(?:-F|--flush)\b"),
    "docker volume rm": re.compile(r"\bdocker\s+(?:volume\s+rm|rm\s+-\w*v)\b", _I),
}

#: Commands that change state without being destructive by themselves: a step using one
#: is not read-only, so it cannot be the first step (it needs no caution).
STATE_CHANGING: dict[str, re.Pattern[str]] = {
    "systemctl change": re.compile(
        r"\bsystemctl\s+(?:--\S+\s+)*(?:restart|start|stop|reload|try-restart|reload-or-restart|enable|disable|"
        r"kill|mask|unmask|reset-failed|daemon-reload|isolate|edit)\b", _I),
    "service restart": re.compile(r"\bservice\s+\S+\s+(?:restart|stop|start|reload)\b", _I),
    "kubectl change": re.compile(
        r"\bkubectl\b[^;&|\n]*?\s(?:apply|delete|patch|edit|scale|drain|cordon|uncordon|taint|label|annotate|"
        r"create|replace|set|autoscale)\b|\bkubectl\b[^;&|\n]*\srollout\s+(?:restart|undo|pause|resume)\b", _I),
    "helm change": re.compile(r"\bhelm\s+(?:install|upgrade|rollback|uninstall|delete)\b", _I),
    "argocd change": re.compile(
        r"\bargocd\s+(?:app\s+(?:sync|rollback|delete|set|unset|patch|terminate-op|actions\s+run)|"
        r"repo\s+(?:add|rm)|cert\s+(?:add-\S+|rm)|proj\s+(?:add-\S+|allow-\S+|set|role)|login|cluster\s+(?:add|rm))\b", _I),
    "sysctl -w": re.compile(r"\bsysctl\s+(?:-w|--write|-p|--system)\b|\bsysctl\s+[\w.]+=", _I),
    "mount change": re.compile(r"\bu?mount\b[^;&|\n]*(?:remount|\s/dev/)|\bumount\b|\bswap(?:on|off)\b", _I),
    "kill": re.compile(r"(?<![\w-])(?:kill|pkill|killall)\s", _I),
    "SQL change": re.compile(
        r"\b(?:ALTER\s+(?:SYSTEM|TABLE|ROLE|USER|DATABASE)|SET\s+(?:GLOBAL|PERSIST)|CONFIG\s+SET|VACUUM|REINDEX|"
        r"GRANT\s|REVOKE\s|CREATE\s+(?:ROLE|USER|INDEX|TABLE|DATABASE)|UPDATE\s+\S+\s+SET|INSERT\s+INTO|"
        r"pg_reload_conf|pg_cancel_backend|FLUSH\s+(?:HOSTS|PRIVILEGES|TABLES)|OPTIMIZE\s+TABLE|"
        r"START\s+(?:SLAVE|REPLICA)|STOP\s+(?:SLAVE|REPLICA)|CHANGE\s+(?:MASTER|REPLICATION)|RESET\s+(?:MASTER|SLAVE|REPLICA)|"
        r"BGREWRITEAOF|BGSAVE|FAILOVER)\b", re.NOFLAG),
    "package change": re.compile(r"\b(?:apt(?:-get)?|yum|dnf|zypper|pip|npm)\s+(?:install|remove|purge|upgrade|autoremove)\b", _I),
    "docker change": re.compile(r"\bdocker\s+(?:restart|stop|start|rm|rmi|kill|login|logout)\b", _I),
    "link change": re.compile(r"\bip\s+(?:link|addr|route)\s+(?:set|add|del|flush)\b|\bnmcli\b[^;&|\n]*\s(?:reapply|up|down|modify)\b|"
                              r"\bnetworkctl\s+(?:reconfigure|reload|up|down)\b|\bethtool\s+-[KGAs]\b", _I),
    "file change": re.compile(r"\b(?:chmod|chown|chattr|setfacl|truncate|ln\s+-s)\b|\btee\b|(?<![\w>2&<])>\s*/(?!dev/null|tmp/)", _I),
    "git change": re.compile(r"\bgit\s+(?:push|reset|clean|commit|checkout|rebase|config\s+--global)\b", _I),
    "gh change": re.compile(r"\bgh\s+(?:run\s+(?:rerun|cancel)|secret\s+set|workflow\s+(?:run|enable|disable))\b", _I),
}

#: A step that opens with one of these verbs asks for a change, even in prose.
CHANGE_VERBS = (
    "add", "adopt", "allow", "annotate", "apply", "bump", "cancel", "clean", "clear", "cordon", "create",
    "delete", "deploy", "disable", "drain", "drop", "enable", "end", "evict", "fail over", "flush", "free",
    "grant", "increase", "install", "kill", "lower", "move", "patch", "pin", "prune", "purge", "raise",
    "re-run", "re-seed", "reboot", "recreate", "reduce", "reinstall", "reload", "remount", "remove", "rename",
    "renew", "repair", "replace", "rerun", "reset", "resize", "restart", "restore", "retry", "revoke",
    "roll back", "rollback", "rotate", "scale", "set", "shrink", "skip", "start", "stop", "sync", "taint",
    "terminate", "trigger", "uncordon", "uninstall", "unlock", "update", "upgrade", "vacuum", "wipe",
)
_CHANGE_VERB = re.compile(r"^\W*(?:" + "|".join(re.escape(v) for v in CHANGE_VERBS) + r")\b(?!\s*-)", _I)
#: A dry run previews the change: ``kubectl apply --dry-run=server``, ``argocd app sync --dry-run``.
_DRY_RUN = re.compile(r"--dry-run\b")
_PREVIEWABLE = ("kubectl change", "argocd change", "helm change")
_CAUTION = re.compile(re.escape(CAUTION_MARKER) + r"\s*(?P<what>.*)", re.DOTALL)


def destructive_commands(step: str) -> list[str]:
    """Names of the :data:`DESTRUCTIVE` commands ``step`` uses (a ``--dry-run`` prune is a preview)."""
    dry = _DRY_RUN.search(step) is not None
    return [name for name, rx in DESTRUCTIVE.items() if rx.search(step) and not (dry and name == "--prune / prune")]


def state_changes(step: str) -> list[str]:
    """Why ``step`` is not read-only (empty: it is read-only)."""
    found = destructive_commands(step)
    dry = _DRY_RUN.search(step) is not None
    found += [name for name, rx in STATE_CHANGING.items() if rx.search(step) and not (dry and name in _PREVIEWABLE)]
    verb = _CHANGE_VERB.match(step)
    if verb:
        found.append(f"opens with {verb.group(0).strip()!r}")
    return found


def has_caution(step: str) -> bool:
    """``step`` carries :data:`CAUTION_MARKER` followed by what it can lose."""
    m = _CAUTION.search(step)
    return m is not None and len(re.findall(r"[A-Za-z]{2,}", m.group("what"))) >= MIN_CAUTION_WORDS


def problems(steps: Sequence[str]) -> list[tuple[int, str]]:
    """``(step index, problem)`` for every rule ``steps`` breaks (empty: safe to ship)."""
    found: list[tuple[int, str]] = []
    if steps:
        first = state_changes(steps[0])
        if first:
            found.append((0, f"the first step must be read-only (an inspection), but it uses {', '.join(first)}"))
    for i, step in enumerate(steps):
        bad = destructive_commands(step)
        if bad and not has_caution(step):
            found.append((i, f"step {i + 1} uses {', '.join(bad)} without a '{CAUTION_MARKER} <what it can lose>' "
                             f"note (at least {MIN_CAUTION_WORDS} words)"))
    return found


def check_steps(steps: Sequence[str], *, owner: str, path: Path | str, text: str | None = None,
                line: int | None = None) -> None:
    """Raise :class:`ConfigError` (file:line, ``owner``) on the first problem of ``steps``.

    ``owner`` names the step list (``pattern 'x'`` or ``dictionary fallback``); ``line`` is
    where the list starts in ``text``; the error points at the offending step's line.
    """
    found = problems(steps)
    if not found:
        return
    index, problem = found[0]
    raise ConfigError(f"{owner}: {problem}: {steps[index][:100]!r}", path=str(path),
                      line=_step_line(text, line, steps[index]))


def _step_line(text: str | None, start: int | None, step: str) -> int | None:
    """The line at or after ``start`` holding the start of ``step`` (else ``start``)."""
    if text is None or start is None:
        return start
    probe = step.strip()[:40]
    for offset, line in enumerate(text.splitlines()[start - 1 :]):
        if probe and probe in line.replace('\\"', '"'):
            return start + offset
        if offset > 60:
            break
    return start

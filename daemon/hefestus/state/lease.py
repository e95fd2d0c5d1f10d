"""The leader lease: which of several Hefestus instances on one state database may act.

Why a lease row and not a PostgreSQL advisory lock: an advisory lock lives as long as
its connection, so it follows the *connection*, not the process's ability to act. A
leader whose VM froze (or that got SIGSTOP) keeps its TCP connection, hence its lock,
until keepalives give up — minutes in which nobody answers problems — and when it wakes
nothing tells its threads they are no longer alone. A lease row has a deadline that the
database's own clock judges (no clock skew between hosts), and an **epoch** that grows by
one at every change of holder. The epoch is the fencing token: every transaction that
records an intent to write to Zabbix or to start a Rundeck job first checks, in the same
transaction, that this instance still holds the lease *with the epoch it was elected
with* (:meth:`Lease.fence`). A leader that wakes after losing its lease finds the epoch
moved on and its write is refused before anything leaves the process.

One row, ``name = 'leader'``:

* **acquire/renew** is one upsert: it succeeds when the row is free (expired) or already
  ours with our epoch; a takeover bumps the epoch, a renewal keeps it;
* **release** (on a clean stop) expires the row at once, so a standby takes over at its
  next heartbeat instead of after the lease's time to live;
* **fence** is ``SELECT … FOR SHARE`` on PostgreSQL: a takeover's UPDATE waits for the
  fenced transaction to commit, so an intent is either recorded under the old epoch
  (and seen by the new leader, whose marker check is the second guard) or refused.

**Presence**: a leader also holds, for as long as it leads, one extra PostgreSQL
session named ``hefestus leader <epoch>`` that runs nothing. The fence and the local
guard check *before* a write leaves the process; a process stopped between that check
and its send (SIGSTOP, a paused VM) sends the write when it wakes, after a new leader
may have found no message and written its own. Zabbix cannot be asked to refuse a stale
write, so the new leader instead leaves the events its predecessor had in flight
(``pending`` in the ledger) alone while a presence session of an older epoch exists:
a stopped process keeps its sessions, a dead one loses them at once (and a silent host
within the server's keepalive, about 11 s). When it is gone, the marker check finds its
message, or its absence, for sure.

SQLite is one file on one host and stays a single instance: it needs no lease
(:class:`SoleInstance`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from hefestus.errors import HefestusError
from hefestus.state.db import Connection

LEASE_NAME = "leader"
#: Application name of a leader's presence session, followed by its epoch.
PRESENCE = "hefestus leader "
#: How long a claim waits for a row lock before giving up until the next heartbeat.
LOCK_WAIT_MS = 1000
#: Seconds after which an open transaction, while the lease is expired, is a frozen process's.
STALE_TRANSACTION = 2.0

#: The database's clock, in unix seconds, as each dialect spells it.
_NOW = {
    "postgresql": "extract(epoch from clock_timestamp())::double precision",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


@dataclass(slots=True)
class LeaseStats:
    """Counters for /metrics: renewals kept, takeovers won, leases lost."""

    renewals: int = 0
    acquisitions: int = 0
    losses: int = 0
    failures: int = 0


class LeaseLost(HefestusError):
    """This instance no longer holds the leader lease (or never did): it must not act."""


def default_instance_id() -> str:
    """Host name + pid: unique among live processes, and says where to look."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """The lease as the database holds it; ``now`` is the database's clock when read."""

    holder: str
    epoch: int
    acquired_at: float
    renewed_at: float
    expires_at: float
    now: float

    @property
    def live(self) -> bool:
        return self.expires_at > self.now

    @property
    def age(self) -> float:
        """Seconds since the holder last renewed."""
        return max(0.0, self.now - self.renewed_at)


class Lease:
    """The SQL of the lease over a state :class:`~hefestus.state.db.Database`."""

    def __init__(self, db: Any, instance: str, ttl: float) -> None:
        self._db = db
        self.instance = instance
        self.ttl = ttl
        self._now = _NOW[db.dialect]
        self._share = " FOR SHARE" if db.dialect == "postgresql" else ""

    def claim(self, epoch: int | None) -> LeaseRow | None:
        """Acquire the lease if it is free, or renew it if it is ours with ``epoch``.

        Returns the row as it now stands when this instance holds it, None when another
        live instance does. A takeover bumps the epoch; a renewal keeps it.
        """
        now = self._now
        mine = -1 if epoch is None else epoch
        sql = (
            "INSERT INTO lease (name, holder, epoch, acquired_at, renewed_at, expires_at) "
            f"VALUES (?, ?, 1, {now}, {now}, {now} + ?) "
            "ON CONFLICT (name) DO UPDATE SET "
            "holder = excluded.holder, "
            "epoch = CASE WHEN lease.holder = excluded.holder AND lease.epoch = ? "
            "THEN lease.epoch ELSE lease.epoch + 1 END, "
            "acquired_at = CASE WHEN lease.holder = excluded.holder AND lease.epoch = ? "
            "THEN lease.acquired_at ELSE excluded.acquired_at END, "
            "renewed_at = excluded.renewed_at, expires_at = excluded.expires_at "
            f"WHERE lease.expires_at <= {now} OR (lease.holder = excluded.holder AND lease.epoch = ?) "
            "RETURNING epoch"
        )
        with self._db.transaction() as conn:
            if self._db.dialect == "postgresql":
                conn.execute(f"SET LOCAL lock_timeout = {LOCK_WAIT_MS}")  # never stall the heartbeat
                self._evict_frozen(conn, mine)
            # RETURNING yields a row only when this statement took or renewed the lease: the
            # holder's name alone is not proof (a restarted instance keeps its [state] instance).
            won = conn.execute(sql, (LEASE_NAME, self.instance, self.ttl, mine, mine, mine)).fetchone()
            row = self._read(conn) if won is not None else None
        return row

    def _evict_frozen(self, conn: Connection, epoch: int) -> None:
        """PostgreSQL: once the lease has run out, end the sessions a frozen process left mid-transaction.

        A leader frozen inside a fenced transaction (SIGSTOP, a paused VM) keeps its share lock
        on the lease row for as long as its TCP connection lives, and the lock would keep
        every standby out. ``idle_in_transaction_session_timeout`` ends such a session only
        when it froze between two statements, not in the middle of a pipelined one. Every
        Hefestus transaction lasts milliseconds, so one open for :data:`STALE_TRANSACTION`
        seconds while the lease is expired belongs to a process that stopped renewing: its
        session is terminated (allowed for sessions of the same role) and its locks go with
        it. Its process, when it wakes, finds its connection gone and its epoch outdated.
        """
        expired = conn.execute(f"SELECT expires_at <= {self._now} AND NOT (holder = ? AND epoch = ?) "
                               "FROM lease WHERE name = ?", (self.instance, epoch, LEASE_NAME)).fetchone()
        if expired is None or not expired[0]:
            return
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND usename = current_user "
                     "AND pid <> pg_backend_pid() AND application_name = 'hefestus' "
                     "AND xact_start < clock_timestamp() - make_interval(secs => ?)", (STALE_TRANSACTION,))

    def announce(self, epoch: int) -> Any:
        """Open this leader's presence session (PostgreSQL; None on SQLite): close it, or
        exit, to say this process will send nothing more."""
        if self._db.dialect != "postgresql":
            return None
        return self._db.session(f"{PRESENCE}{epoch}")

    def predecessors(self, epoch: int) -> list[int]:
        """Epochs below ``epoch`` whose leader process may still be alive (its presence session
        exists): such a process may still send a write it had checked before it stopped."""
        if self._db.dialect != "postgresql":
            return []
        found = []
        for (name,) in self._db.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
                "AND usename = current_user AND starts_with(application_name, ?)", (PRESENCE,)):
            tail = str(name)[len(PRESENCE):]
            if tail.isdigit() and int(tail) < epoch:
                found.append(int(tail))
        return sorted(found)

    def release(self, epoch: int) -> None:
        """Expire our lease now (a clean stop): a standby takes over at its next heartbeat."""
        with self._db.transaction() as conn:
            conn.execute(f"UPDATE lease SET expires_at = {self._now} - 1 "
                         "WHERE name = ? AND holder = ? AND epoch = ?", (LEASE_NAME, self.instance, epoch))

    def status(self) -> LeaseRow | None:
        """The lease as it stands (None: no instance ever held it)."""
        with self._db.transaction() as conn:
            return self._read(conn)

    def fence(self, conn: Connection, epoch: int) -> None:
        """Inside a transaction: raise :class:`LeaseLost` unless we hold the lease with ``epoch``."""
        row = conn.execute(
            f"SELECT holder, epoch, expires_at > {self._now} FROM lease WHERE name = ?{self._share}",
            (LEASE_NAME,)).fetchone()
        if row is None or str(row[0]) != self.instance or int(row[1]) != epoch or not row[2]:
            holder = "nobody" if row is None else f"{row[0]} (epoch {row[1]})"
            raise LeaseLost(f"instance {self.instance} (epoch {epoch}) is no longer the leader: "
                            f"the lease is held by {holder}; nothing was written")

    def _read(self, conn: Connection) -> LeaseRow | None:
        row = conn.execute(f"SELECT holder, epoch, acquired_at, renewed_at, expires_at, {self._now} "
                           "FROM lease WHERE name = ?", (LEASE_NAME,)).fetchone()
        if row is None:
            return None
        return LeaseRow(holder=str(row[0]), epoch=int(row[1]), acquired_at=float(row[2]),
                        renewed_at=float(row[3]), expires_at=float(row[4]), now=float(row[5]))

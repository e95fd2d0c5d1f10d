"""This process's role among the instances sharing one state database: leader or standby.

Only the leader polls Zabbix, writes messages and starts Rundeck jobs; a standby keeps
its API, probes and metrics up and tries to take the lease at every heartbeat. The
database holds the truth (:mod:`hefestus.state.lease`); this object holds what the
process last learnt of it, plus a local deadline on the monotonic clock: a leader that
could not renew for a whole time to live stops considering itself leader even before
the database tells it so (the database's fence still decides every write).

Losing the lease is final for the process (:attr:`Transition` ``"lost"``): the daemon
stops and exits with :data:`EXIT_LEADERSHIP_LOST`, and systemd (``Restart=on-failure``)
starts it again as a standby. Threads that began work as leader (a poll cycle, a
Rundeck follow-up, a retry timer) cannot all be recalled safely from the inside; a fresh
process can be sure none of them acts. Kubernetes's client-go leader election makes the
same choice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import structlog

from hefestus.errors import StateError
from hefestus.state.db import Connection
from hefestus.state.lease import Lease, LeaseLost, LeaseRow, LeaseStats

log = structlog.get_logger("hefestus.leader")

#: Exit status of a leader that lost its lease (EX_TEMPFAIL): restart me as a standby.
EXIT_LEADERSHIP_LOST = 75

Transition = Literal["promoted", "lost"]


class Leadership:
    """Leader election over a :class:`Lease`, one heartbeat at a time (:meth:`tick`)."""

    def __init__(self, lease: Lease, *, heartbeat: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lease = lease
        self.heartbeat = heartbeat
        self._clock = clock
        self._lock = threading.Lock()
        self._epoch: int | None = None
        self._deadline = -1.0
        self._lost = False
        self.last: LeaseRow | None = None
        self.stats = LeaseStats()
        #: This leader's presence session (see hefestus.state.lease); None on SQLite or standby.
        self._presence: Any = None
        self._present = False
        self._waiting_for: list[int] = []
        #: Stop acting this long before the lease's deadline: a call sent just before it must
        #: reach Zabbix (or Rundeck) before a successor could take over and look.
        self._margin = min(1.0, lease.ttl / 4)

    @property
    def instance(self) -> str:
        return self._lease.instance

    #: Several instances may share the state: the lease matters (SoleInstance: False).
    backend_shared = True

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return self._epoch is not None and not self._lost and self._clock() < self._deadline

    @property
    def epoch(self) -> int | None:
        return self._epoch

    def tick(self) -> Transition | None:
        """Renew (leader) or try to take (standby) the lease; say what changed.

        ``"promoted"`` only when the lease is newly taken (a new epoch); a renewal, even one
        that comes late because the process was paused while nobody took over, keeps the
        epoch and changes nothing. Once lost, always lost: the process is stopping.
        """
        if self._lost:
            return None
        started = self._clock()
        was = self.is_leader
        try:
            row = self._lease.claim(self._epoch)
        except StateError as exc:
            self.stats.failures += 1
            log.warning("lease: state database unreachable", error=str(exc), leader=was)
            if self._epoch is not None and not self.is_leader:
                return self._lose("could not renew within the lease's time to live")
            return None
        acquired = False
        with self._lock:
            if row is not None:
                self.last = row
                acquired = self._epoch is None
                if acquired:
                    self._epoch = row.epoch
                    self.stats.acquisitions += 1
                else:
                    self.stats.renewals += 1
                self._deadline = started + self._lease.ttl
        if row is None:
            self.last = self._safe_status()
            if self._epoch is not None:
                return self._lose(f"the lease is held by {self.last.holder if self.last else 'nobody'}")
            return None
        self._keep_presence(row.epoch)
        if acquired:
            log.info("lease: this instance is now the leader", instance=self.instance, epoch=row.epoch)
            return "promoted"
        return None

    def _keep_presence(self, epoch: int) -> None:
        """Open (after a takeover) or re-open (after the database restarted) the presence
        session; until it is open this process does not act (:meth:`guard`)."""
        if self._presence is not None and self._presence.alive():
            return
        try:
            self._presence = self._lease.announce(epoch)
        except StateError as exc:
            self._presence = None
            self._present = False
            log.warning("lease: could not open the presence session; not acting until it is open",
                        error=str(exc))
            return
        self._present = True

    def predecessor_alive(self) -> bool:
        """Whether a leader of an earlier epoch may still be alive (a stopped process, or a
        host gone silent less than a keepalive ago): it may still send a write it had in
        flight. Unknown (the database unreachable) counts as alive."""
        epoch = self._epoch
        if epoch is None:
            return True
        try:
            found = self._lease.predecessors(epoch)
        except StateError:
            return True
        if found != self._waiting_for:
            if found:
                log.warning("lease: an earlier leader is still connected (stopped, or its host silent); "
                            "the events it was writing wait until it is gone", epochs=found)
            else:
                log.info("lease: no earlier leader is connected any more")
            self._waiting_for = found
        return bool(found)

    def guard(self) -> None:
        """Right before a call that acts outside (a Zabbix write, a Rundeck run): raise
        :class:`LeaseLost` unless this process still leads by its own clock, with a margin.

        The database's fence ran when the intent was recorded; this covers the moment after,
        when the call may have waited for a free writer, or the process was paused (SIGSTOP,
        a frozen VM) between recording and calling. The monotonic clock keeps running while a
        process is stopped, so a leader woken past its lease fails here at once, before the
        new leader's marker check could be overtaken by this late write.
        """
        with self._lock:
            ok = (self._epoch is not None and not self._lost and self._present
                  and self._clock() < self._deadline - self._margin)
        if not ok:
            raise LeaseLost(f"instance {self.instance} may not act: its lease ran out by its own "
                            "clock (or was lost); nothing was sent")

    def fence(self, conn: Connection) -> None:
        """The state database's fence: raise :class:`LeaseLost` unless we lead, with our epoch."""
        epoch = self._epoch
        if epoch is None or not self.is_leader:
            raise LeaseLost(f"instance {self.instance} is not the leader (lease not held or "
                            "expired locally); nothing was written")
        self._lease.fence(conn, epoch)

    def release(self) -> None:
        """On a clean stop: give the lease up so a standby takes over at its next heartbeat."""
        epoch = self._epoch
        if epoch is None or self._lost:
            return
        self._close_presence()  # first: nothing more will be sent
        try:
            self._lease.release(epoch)
            log.info("lease: released", instance=self.instance, epoch=epoch)
        except StateError as exc:
            log.warning("lease: could not release; a standby takes over when it expires", error=str(exc))

    def describe(self) -> str:
        """One line for the health board, `hefestus check` and the log."""
        row = self.last
        role = "leader" if self.is_leader else "standby"
        if row is None:
            return f"{role} ({self.instance}); no instance holds the lease yet"
        who = "this instance" if row.holder == self.instance else row.holder
        state = "" if row.live else ", expired"
        return (f"{role} ({self.instance}); leader {who}, epoch {row.epoch}, "
                f"lease renewed {row.age:.1f} s ago{state}")

    def _lose(self, why: str) -> Transition:
        with self._lock:
            self._lost = True
        self._close_presence()
        self.stats.losses += 1
        log.error("lease: lost the leader lease; stopping so that a fresh process starts as a standby",
                  instance=self.instance, epoch=self._epoch, reason=why)
        return "lost"

    def _close_presence(self) -> None:
        presence, self._presence, self._present = self._presence, None, False
        if presence is not None:
            presence.close()

    def _safe_status(self) -> LeaseRow | None:
        try:
            return self._lease.status()
        except StateError:
            return None


class SoleInstance:
    """SQLite: one file, one host, one instance; always the leader, nothing to fence."""

    instance = "sole instance"
    backend_shared = False
    is_leader = True
    epoch = None
    heartbeat = 0.0
    last = None

    def __init__(self) -> None:
        self.stats = LeaseStats()

    def tick(self) -> Transition | None:
        return None

    def release(self) -> None:
        return None

    def predecessor_alive(self) -> bool:
        return False

    def describe(self) -> str:
        return "leader (single instance: the SQLite state file allows no other)"


def check_line(lease: Lease) -> str:
    """`hefestus check` / `hefestus state`: who leads, and how fresh the lease is."""
    row = lease.status()
    if row is None:
        return "no instance has held the leader lease yet"
    state = "live" if row.live else "expired"
    return (f"leader {row.holder}, epoch {row.epoch}, lease renewed {row.age:.1f} s ago "
            f"({state}, {row.expires_at - row.now:+.1f} s to expiry)")


__all__ = ["EXIT_LEADERSHIP_LOST", "Leadership", "LeaseLost", "LeaseStats", "SoleInstance",
           "Transition", "check_line"]

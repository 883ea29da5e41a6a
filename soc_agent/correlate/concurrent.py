"""Correlation by many processes, on many machines, into one shared state: no global lock.

`ConcurrentCorrelator` runs the same rules as `Correlator` (see `correlator`)
but lets correlations on unrelated alerts proceed in parallel. Why that is
safe:

- **Key locks serialise everyone who reads or writes the same index entries.**
  A correlation reads and writes the fingerprint index only at the alert's
  fingerprint, the entity index only at the alert's pivots, and the alert
  index only at the alert's id. It holds a lock on `fp:<fingerprint>` and on
  `entity:<key>` for every pivot, for its whole duration, so two
  correlations touching the same index entry take turns. The alert id needs
  no lock of its own: the fingerprint is a function of the alert's content,
  so a redelivered alert contends for the same `fp:` lock as its first delivery.
- **An incident reachable through different keys is protected by
  compare-and-set.** Alerts on disjoint keys can still land in one incident
  (it owns both `host:a` and `user:b`). Each correlation gets a fresh view
  from `view_factory()`, which remembers the version of every incident it
  read (or that it was absent) and makes `put_incident` conditional on it.
  If someone changed the incident in between, the write raises
  `IncidentChanged` and the correlation starts over on a fresh view, still
  holding its key locks, and in this process's turn on that incident, so the
  process's losers on one incident retry one at a time instead of colliding.
- **Nothing is half-written on a conflict.** `put_incident` is the first
  write of every path that writes an incident; the index writes that follow
  are under the key locks. A refused write therefore leaves the state exactly
  as it was, and the retry sees the winner's incident. (A view may send a new
  incident's create with the index writes instead: only an incident read as
  absent under the key locks is created, and an entry naming a missing
  incident reads as no entry, so a refused create leaves nothing followed.)

Limitations. Only the incident that is written is version-checked: an
incident merely read (a second candidate for the alert, or the incident
owning a pivot that this alert's new incident might take over) may change
concurrently. The alert then still lands in exactly one incident that
matched when read, but the choice between several matching incidents, or
which incident a pivot points to, can differ from every serial order. Key
locks are only as strong as their implementation (leases expire; see
`soc_agent.store.elasticsearch_leases`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Protocol, runtime_checkable

from soc_agent.correlate.correlator import CorrelationConfig, CorrelationResult, Correlator
from soc_agent.correlate.fingerprint import fingerprint
from soc_agent.correlate.state import CorrelationState, IncidentChanged, PrefetchingState
from soc_agent.errors import SocAgentError
from soc_agent.models import Alert

__all__ = ["ConcurrentCorrelator", "CorrelationContended", "HandOver", "KeyLocks"]

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 10


@runtime_checkable
class HandOver(Protocol):
    """What locks that can hand over yield from `hold_all` (leases): `then`, set in the
    block, names a lock taken as the block's are released (the decision's, for the
    incident the alert went to), in the same request."""

    then: str | None


class KeyLocks(Protocol):
    """Named exclusive locks shared by every correlator of one state (e.g. leases)."""

    def hold_all(self, names: Iterable[str]) -> AbstractAsyncContextManager[HandOver | None]:
        """Hold every named lock for the block, acquired in an order that cannot deadlock."""
        ...


class CorrelationContended(SocAgentError):
    """An alert's incident kept changing under it: every attempt lost its compare-and-set."""

    def __init__(self, alert_id: str, incident_id: str, attempts: int) -> None:
        self.alert_id, self.incident_id, self.attempts = alert_id, incident_id, attempts
        super().__init__(
            f"alert {alert_id}: incident {incident_id} changed concurrently on each of "
            f"{attempts} attempts; redeliver the alert, or raise max_attempts if "
            "alerts on this incident routinely arrive in bursts"
        )


class ConcurrentCorrelator(Correlator):
    """The core rules under per-key locks and per-incident compare-and-set (module docstring)."""

    def __init__(
        self,
        view_factory: Callable[[], CorrelationState],
        config: CorrelationConfig,
        *,
        key_locks: KeyLocks,
        id_factory: Callable[[Alert], str] | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        hand_over: Callable[[str], str] | None = None,
    ) -> None:
        """`hand_over` names the lock of an incident (see `HandOver`): the one the agent
        takes next to decide for an alert placed new or grouped."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        # The base keeps a state for its own (serialised) `correlate`; this class never uses it.
        super().__init__(view_factory(), config, id_factory=id_factory)
        self._views = view_factory
        self._key_locks = key_locks
        self._max_attempts = max_attempts
        self._hand_over = hand_over
        self._retries = 0

    @property
    def retries(self) -> int:
        """Correlations started over after an `IncidentChanged`, since construction."""
        return self._retries

    def lock_names(self, alert: Alert) -> list[str]:
        """Every index key the alert's correlation may write, as lock names."""
        return [f"fp:{fingerprint(alert)}", *(f"entity:{key}" for key in self.pivots(alert))]

    async def correlate(self, alert: Alert) -> CorrelationResult:
        """Place one alert (see `correlator`); concurrent with alerts on other keys.

        A correlation that lost an incident's compare-and-set retries in this process's
        turn on that incident: alerts reaching one incident through distinct keys would
        otherwise retry together, one winner a round, until one ran out of attempts.
        It takes a turn on its first contended incident only, and waits for no other
        turn while holding it, so turns cannot deadlock."""
        async with (
            self._key_locks.hold_all(self.lock_names(alert)) as handing,
            AsyncExitStack() as turn,
        ):
            contended: str | None = None
            for attempt in range(1, self._max_attempts + 1):
                try:
                    result = await self._correlate_in(alert, self._views())
                except IncidentChanged as exc:
                    if attempt == self._max_attempts:
                        raise CorrelationContended(alert.id, exc.incident_id, attempt) from exc
                    self._retries += 1
                    log.debug("alert %s: %s", alert.id, exc)
                    if contended is None:
                        contended = exc.incident_id
                        await turn.enter_async_context(
                            self._turns.hold_all([f"incident:{contended}"])
                        )
                    continue
                if (
                    self._hand_over is not None
                    and isinstance(handing, HandOver)
                    and result.outcome in ("new", "grouped")  # a decision follows
                ):
                    handing.then = self._hand_over(result.incident.id)
                return result
        raise AssertionError("unreachable: the loop returns or raises")

    async def _correlate_in(self, alert: Alert, view: CorrelationState) -> CorrelationResult:
        if not isinstance(view, PrefetchingState):
            return await self._correlate(alert, view)
        pivots = self.pivots(alert)
        await view.prefetch(alert.id, fingerprint(alert), pivots, [self._id_factory(alert)])
        result = await self._correlate(alert, view)
        await view.flush(alert)
        return result

"""The storage protocol the pipeline, CLI and API depend on.

SQLite implements it for one machine, Elasticsearch for workers on several.
Every method is async so neither blocks the event loop (except a SQLite store
opened `inline`, for a process that has nothing else to run meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from soc_agent.correlate.state import CorrelationState
from soc_agent.models import (
    ActionLabel,
    ActionRequest,
    ActionStatus,
    Alert,
    DeadLetter,
    Decision,
    Incident,
    IncidentVerdict,
    Investigation,
    Proposal,
    ProposalStatus,
)

__all__ = [
    "MAX_ACTION_LABELS",
    "MAX_VERDICT_HISTORY",
    "ActionRecord",
    "ClaimResult",
    "DecisionState",
    "StateStore",
    "Store",
    "latest_per_incident",
]

MAX_VERDICT_HISTORY = 10_000
"""Closings read for one history question: a rule on a host closed more often than this
is answered from its most recent closings."""

MAX_ACTION_LABELS = 10_000
"""Labels read for one incident: more analyst acts than this on one incident is not a
case calibration can learn from."""


def latest_per_incident(verdicts: list[IncidentVerdict], since: datetime) -> list[IncidentVerdict]:
    """From closings newest first: each incident's latest, if it was made since `since`."""
    seen: set[str] = set()
    out: list[IncidentVerdict] = []
    for verdict in verdicts:
        if verdict.incident_id in seen:
            continue
        seen.add(verdict.incident_id)
        if verdict.closed_at >= since:
            out.append(verdict)
    return out


@dataclass(frozen=True)
class ActionRecord:
    """The ledger row behind one idempotency key."""

    idempotency_key: str
    action_id: str
    incident_id: str
    action: str
    target: str
    connector: str
    capability: str
    status: ActionStatus
    request: ActionRequest
    result: dict[str, Any] | None
    error: str | None
    claimed_at: datetime
    executed_at: datetime | None
    revert_at: datetime | None
    attempts: int
    rollback_claimed_at: datetime | None = None  # while ROLLING_BACK: when it was claimed


@dataclass(frozen=True)
class ClaimResult:
    """`claimed` is true when this caller won the key; otherwise `record` is the holder's.

    `over_budget` is true (and `record` None) when a budget was given and the
    action's claims in the window already reach it: nothing was claimed.
    """

    claimed: bool
    record: ActionRecord | None
    over_budget: bool = False


@dataclass(frozen=True)
class DecisionState:
    """What deciding on an incident reads first, read together (`Store.decision_state`)."""

    made: Decision | None  # the decision with the id asked for, if it was made
    latest: Decision | None  # the incident's latest decision
    incident: Incident | None = None  # when asked for
    flags: dict[str, Any] = field(default_factory=dict)  # the flags asked for, None if unset


class Store(Protocol):
    # alerts, incidents, investigations, decisions
    async def save_alert(self, alert: Alert, incident_id: str | None) -> None: ...
    async def get_alert(self, alert_id: str) -> Alert | None: ...
    async def get_incident(self, incident_id: str) -> Incident | None: ...
    async def list_incidents(self, *, limit: int = 50, offset: int = 0) -> list[Incident]: ...
    async def save_investigation(self, investigation: Investigation) -> None: ...
    async def get_investigation(self, investigation_id: str) -> Investigation | None: ...
    async def save_decision(
        self, decision: Decision, *, investigation: Investigation | None = None
    ) -> None:
        """Insert or replace (keeping its place in insertion order); with the
        investigation it rests on, written together."""
        ...

    async def latest_decision(self, incident_id: str) -> Decision | None: ...
    async def get_decision(self, decision_id: str) -> Decision | None: ...
    async def decision_state(
        self,
        decision_id: str,
        incident_id: str,
        *,
        with_incident: bool = False,
        flags: Sequence[str] = (),
        standing: bool = False,
    ) -> DecisionState:
        """The decision `decision_id`, the incident's latest decision, optionally the
        incident and some flags, in one round trip. `standing`: the caller will ask
        `action_standing` next, which a store may read ahead in the same round trip."""
        ...

    async def alerts_of(self, incident_id: str) -> list[Alert]: ...
    async def list_decisions(self, *, limit: int = 50, offset: int = 0) -> list[Decision]: ...
    # proposals
    async def save_proposal(self, proposal: Proposal) -> bool: ...
    async def get_proposal(self, proposal_id: str) -> Proposal | None: ...
    async def update_proposal(self, proposal: Proposal, *, expected_version: int) -> bool: ...
    async def list_proposals(
        self, *, status: ProposalStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[Proposal]: ...
    # action ledger
    async def claim_action(
        self,
        request: ActionRequest,
        incident_id: str,
        now: datetime,
        *,
        budget: tuple[int, datetime] | None = None,
    ) -> ClaimResult: ...
    async def retry_claim(self, key: str, now: datetime) -> None: ...
    async def claim_rollback(self, key: str, now: datetime, *, stale_before: datetime) -> bool:
        """Atomically move an EXECUTED action to ROLLING_BACK (or take over a rollback claimed
        before `stale_before`, which a crash cut off); True if this caller won it."""
        ...

    async def release_rollback(self, key: str) -> None:
        """A rollback that failed: the action is EXECUTED again, as before its claim."""
        ...

    async def finish_action(
        self,
        key: str,
        *,
        status: ActionStatus,
        result: dict[str, Any] | None,
        error: str | None,
        now: datetime,
        revert_at: datetime | None,
    ) -> None: ...
    async def get_action(self, key: str) -> ActionRecord | None: ...
    async def list_actions(self, *, limit: int = 50, offset: int = 0) -> list[ActionRecord]: ...
    async def due_reverts(self, now: datetime) -> list[ActionRecord]: ...
    async def count_executions(self, action: str, since: datetime) -> int: ...
    async def action_standing(
        self, key: str, action: str, since: datetime
    ) -> tuple[ActionRecord | None, int]:
        """`(get_action(key), count_executions(action, since))` in one round trip."""
        ...

    async def actions_and_proposals(
        self, keys: Sequence[str], proposal_ids: Sequence[str]
    ) -> tuple[list[ActionRecord | None], list[Proposal | None]]:
        """The ledger rows by idempotency key and the proposals by id, in one round trip."""
        ...

    # dead letters and flags
    async def save_dead_letter(self, letter: DeadLetter) -> None: ...
    async def list_dead_letters(self, *, limit: int = 50) -> list[DeadLetter]: ...
    async def save_verdict(self, verdict: IncidentVerdict) -> bool:
        """Keep a closing; False when a record with its id was already kept."""
        ...

    async def get_verdict(self, verdict_id: str) -> IncidentVerdict | None: ...
    async def incident_verdict(self, incident_id: str) -> IncidentVerdict | None: ...
    async def verdict_history(
        self, *, rule: str | None, entity: str | None, since: datetime
    ) -> list[IncidentVerdict]:
        """The latest verdict of every incident closed since `since` that held `rule`
        and `entity` (an entity key, any of its names), newest first."""
        ...

    async def verdicts_naming(self, entities: list[str], since: datetime) -> list[IncidentVerdict]:
        """The latest verdict of every incident closed since `since` that named any of
        `entities` (entity keys), newest first: one query for a decision's history."""
        ...

    async def list_verdicts(self, *, limit: int = 50, offset: int = 0) -> list[IncidentVerdict]: ...
    async def save_action_label(self, label: ActionLabel) -> bool:
        """Keep an analyst's judgement of an action; False when already kept."""
        ...

    async def action_labels(self, incident_id: str) -> list[ActionLabel]:
        """The incident's action labels, oldest first (the last one on an action stands)."""
        ...

    async def list_action_labels(
        self, *, limit: int = 50, offset: int = 0
    ) -> list[ActionLabel]: ...
    async def get_flag(self, name: str) -> Any: ...
    async def get_flags(self, names: Sequence[str]) -> dict[str, Any]:
        """Each named flag's value (None when unset), in one round trip."""
        ...

    async def set_flag(self, name: str, value: Any) -> None: ...
    async def update_flag(self, name: str, change: Callable[[Any], Any]) -> Any:
        """Set the flag to `change(its value)` atomically (None when unset: a read and a
        write with nothing between them, retried on a concurrent change); the new value.
        `change` may run more than once: it must only compute."""
        ...


class StateStore(Store, CorrelationState, Protocol):
    """A store that also holds the correlation state: what a runtime backend provides."""

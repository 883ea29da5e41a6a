"""The action executor: an action takes effect at most once per idempotency key.

The ledger row is claimed *before* the connector is called. A second caller
(a retry, a redelivered alert, a second approval) finds the claim and does
not call again. A claim left behind by a crash is resolved by asking the
connector's verify capability whether the effect already holds: if it does,
the action is recorded as executed without a second call; if it does not, it
is safe to perform it now. Every outcome is audited.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from soc_agent.audit.base import AuditSink
from soc_agent.errors import ConnectorError, SocAgentError
from soc_agent.gateway import Gateway
from soc_agent.models import (
    ActionJudgement,
    ActionRequest,
    ActionStatus,
    AuditEvent,
    ExecutionStatus,
)
from soc_agent.models.verdict import label_for
from soc_agent.store.base import ActionRecord, Store

__all__ = ["ExecutionOutcome", "Executor"]


@dataclass(frozen=True)
class ExecutionOutcome:
    """What one call to the executor did, and whether it changed the external system."""

    key: str
    status: ExecutionStatus
    performed: bool  # this call changed the external system
    verified: bool | None
    detail: str
    result: dict[str, Any] | None = None


class Executor:
    """Performs, verifies and rolls back actions through the gateway, once per idempotency key.

    See the module docstring for the claim-before-call protocol; every outcome is audited.
    """

    def __init__(
        self,
        store: Store,
        gateway: Gateway,
        audit: AuditSink,
        *,
        actor: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        stale_claim_after: timedelta = timedelta(minutes=5),
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._audit = audit
        self._actor = actor
        self._clock = clock
        self._stale = stale_claim_after

    async def execute(
        self,
        request: ActionRequest,
        incident_id: str,
        *,
        approved_by: list[str] | None = None,
        budget: tuple[int, timedelta] | None = None,
    ) -> ExecutionOutcome:
        """Perform the action unless its key was already taken.

        `budget` (max executions, window) is the blast-radius budget, enforced
        atomically with the claim; an over-budget action is not performed.
        """
        now = self._clock()
        limit = (budget[0], now - budget[1]) if budget else None
        claim = await self._store.claim_action(request, incident_id, now, budget=limit)
        if claim.over_budget:
            return ExecutionOutcome(
                request.idempotency_key,
                ExecutionStatus.OVER_BUDGET,
                False,
                None,
                f"blast-radius budget of {budget[0] if budget else 0} "
                f"{request.action} per window reached at execution time",
            )
        record = claim.record
        assert record is not None
        if not claim.claimed:
            if record.status in (ActionStatus.EXECUTED, ActionStatus.ROLLED_BACK):
                return ExecutionOutcome(
                    record.idempotency_key,
                    ExecutionStatus.ALREADY_EXECUTED,
                    False,
                    None,
                    f"already executed at {record.executed_at}",
                    record.result,
                )
            if record.status is ActionStatus.CLAIMED and now - record.claimed_at < self._stale:
                return ExecutionOutcome(
                    record.idempotency_key,
                    ExecutionStatus.IN_PROGRESS,
                    False,
                    None,
                    "another worker holds this action",
                )
            # a failed attempt, or a claim orphaned by a crash: is the effect there already?
            if await self._verify(request) is True:
                await self._store.finish_action(
                    record.idempotency_key,
                    status=ActionStatus.EXECUTED,
                    result=record.result,
                    error=None,
                    now=now,
                    revert_at=self._revert_at(request, now),
                )
                await self._record(
                    request, incident_id, "executed", "verified after recovery", approved_by
                )
                return ExecutionOutcome(
                    record.idempotency_key,
                    ExecutionStatus.ALREADY_EXECUTED,
                    False,
                    True,
                    "effect already in place (verified); not repeated",
                )
            await self._store.retry_claim(record.idempotency_key, now)
        return await self._perform(request, incident_id, approved_by)

    async def _perform(
        self, request: ActionRequest, incident_id: str, approved_by: list[str] | None
    ) -> ExecutionOutcome:
        key = request.idempotency_key
        args = {
            **request.args,
            "target": self._target_name(request, request.capability),
            "idempotency_key": key,
            "reason": request.reason,
        }
        try:
            result = await self._gateway.call(
                request.connector, request.capability, args, reason=request.reason, ref=request.id
            )
        except SocAgentError as exc:
            await self._store.finish_action(
                key,
                status=ActionStatus.FAILED,
                result=None,
                error=str(exc),
                now=self._clock(),
                revert_at=None,
            )
            await self._record(request, incident_id, "failed", str(exc), approved_by)
            return ExecutionOutcome(key, ExecutionStatus.FAILED, False, None, str(exc))
        verified = await self._verify(request)
        now = self._clock()
        await self._store.finish_action(
            key,
            status=ActionStatus.EXECUTED,
            result=result,
            error=None,
            now=now,
            revert_at=self._revert_at(request, now),
        )
        detail = (
            "verified"
            if verified
            else ("not verifiable" if verified is None else "verification failed")
        )
        await self._record(request, incident_id, "executed", detail, approved_by)
        return ExecutionOutcome(key, ExecutionStatus.EXECUTED, True, verified, detail, result)

    async def rollback(self, key: str, *, actor: str, reason: str) -> ExecutionOutcome:
        """Undo an executed reversible action with its declared inverse, at most once.

        The rollback is claimed like an execution (EXECUTED -> ROLLING_BACK in the
        ledger) before the inverse is called: concurrent callers find the claim and do
        not call it again. A failed inverse releases the claim, so it can be retried;
        one cut off by a crash is taken over once stale.
        """
        record = await self._store.get_action(key)
        if record is None:
            raise SocAgentError(f"no executed action with key or id {key!r}")
        request = record.request
        if record.status not in (ActionStatus.EXECUTED, ActionStatus.ROLLING_BACK):
            return ExecutionOutcome(
                record.idempotency_key,
                ExecutionStatus(record.status),
                False,
                None,
                f"nothing to roll back: action is {record.status}",
            )
        if not request.reversible or not request.rollback_capability:
            raise SocAgentError(f"{request.action} is not reversible; it cannot be rolled back")
        now = self._clock()
        if not await self._store.claim_rollback(
            record.idempotency_key, now, stale_before=now - self._stale
        ):
            current = await self._store.get_action(record.idempotency_key)
            status = current.status if current is not None else record.status
            return ExecutionOutcome(
                record.idempotency_key,
                ExecutionStatus(status),
                False,
                None,
                f"not rolled back again: action is {status} (another rollback claimed it)",
            )
        args = {
            "target": self._target_name(request, request.rollback_capability),
            "reason": reason,
            "idempotency_key": f"{record.idempotency_key}:rollback",
            # What the action answered (a case id, a rule id) is often what undoing it needs.
            "original": record.result or {},
        }
        try:
            result = await self._gateway.call(
                request.connector,
                request.rollback_capability,
                args,
                reason=reason,
                ref=request.id,
                actor=actor,
            )
        except SocAgentError as exc:
            await self._store.release_rollback(record.idempotency_key)
            await self._audit.append(
                AuditEvent(
                    actor=actor,
                    action="action.rollback",
                    subject=request.id,
                    reason=reason,
                    outcome="failed",
                    details={"error": str(exc)},
                    at=self._clock(),
                )
            )
            return ExecutionOutcome(
                record.idempotency_key, ExecutionStatus.FAILED, False, None, str(exc)
            )
        now = self._clock()
        await self._store.finish_action(
            record.idempotency_key,
            status=ActionStatus.ROLLED_BACK,
            result=result,
            error=None,
            now=now,
            revert_at=None,
        )
        if actor != self._actor:  # an analyst undid it; the agent's own reverts judge nothing
            await self._store.save_action_label(
                label_for(
                    request,
                    record.incident_id,
                    ActionJudgement.ROLLED_BACK,
                    analyst=actor,
                    comment=reason,
                    at=now,
                )
            )
        await self._audit.append(
            AuditEvent(
                actor=actor,
                action="action.rollback",
                subject=request.id,
                reason=reason,
                outcome="rolled_back",
                evidence_ref=record.idempotency_key,
                details={
                    "action": request.action,
                    "target": request.target.key,
                    "inverse": request.rollback_capability,
                },
                at=now,
            )
        )
        return ExecutionOutcome(
            record.idempotency_key,
            ExecutionStatus.ROLLED_BACK,
            True,
            None,
            f"{request.rollback_capability} on {request.target.value}",
            result,
        )

    async def revert_due(self) -> list[ExecutionOutcome]:
        """Lift actions whose auto-revert time has come (e.g. a 24 h IP block)."""
        due: list[ActionRecord] = await self._store.due_reverts(self._clock())
        return [
            await self.rollback(
                r.idempotency_key, actor=self._actor, reason="auto-revert: time-to-live elapsed"
            )
            for r in due
        ]

    def _target_name(self, request: ActionRequest, capability: str | None) -> str:
        """The target's name the capability acts on (its `target_names`), else its value."""
        try:
            kinds = self._gateway.capability(request.connector, capability or "").target_names
        except ConnectorError:
            return request.target.value  # the call itself will fail loudly, naming why
        return request.target.name_for(kinds)

    async def _verify(self, request: ActionRequest) -> bool | None:
        cap = self._gateway.capability(request.connector, request.capability)
        if not cap.verify:
            return None
        try:
            out = await self._gateway.call(
                request.connector,
                cap.verify,
                {
                    "action": request.action,
                    "target": self._target_name(request, request.capability),
                },
            )
        except ConnectorError:
            return None
        return bool(out.get("in_effect"))

    def _revert_at(self, request: ActionRequest, now: datetime) -> datetime | None:
        if request.revert_after_seconds and request.reversible:
            return now + timedelta(seconds=request.revert_after_seconds)
        return None

    async def _record(
        self,
        request: ActionRequest,
        incident_id: str,
        outcome: str,
        detail: str,
        approved_by: list[str] | None,
    ) -> None:
        await self._audit.append(
            AuditEvent(
                actor=self._actor,
                action="action.execute",
                subject=request.id,
                reason=request.reason,
                outcome=outcome,
                evidence_ref=incident_id,
                details={
                    "action": request.action,
                    "target": request.target.key,
                    "connector": request.connector,
                    "idempotency_key": request.idempotency_key,
                    "rule": request.rule,
                    "detail": detail,
                    **({"approved_by": approved_by} if approved_by else {}),
                },
                at=self._clock(),
            )
        )

"""From a playbook's candidate actions to policy verdicts.

Looks up what the policy needs to know (which connector performs the action,
whether it is granted and reversible, how critical and protected the target
is, how much of the blast-radius budget is used) and asks the pure policy
engine for a disposition.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from soc_agent_connectors.base import Capability
from soc_agent_connectors.gateway import Gateway

from soc_agent.actions.executor import idempotency_key
from soc_agent.errors import ConnectorError
from soc_agent.models import (
    ActionCandidate,
    ActionRequest,
    AutonomyLevel,
    Disposition,
    Entity,
    Evidence,
    EvidenceStatus,
    Investigation,
    RiskTier,
)
from soc_agent.policy import (
    ActionFacts,
    PolicyConfig,
    PolicyInput,
    budget_for,
    decide,
    effective_autonomy,
)
from soc_agent.store.base import Store

__all__ = ["Decider", "action_facts", "missing_evidence"]

_INVENTORY = ("asset_inventory", "lookup_asset")
_INVENTORY_TYPES = {"host", "user", "ip", "domain", "email", "cloud_resource"}


class Decider:
    def __init__(self, gateway: Gateway, store: Store, *, clock: Callable[[], datetime]) -> None:
        self._gateway = gateway
        self._store = store
        self._clock = clock

    async def decide_all(
        self,
        candidates: list[ActionCandidate],
        *,
        incident_id: str,
        playbook: str,
        playbook_autonomy: AutonomyLevel | None,
        score: float,
        investigation: Investigation,
        policy: PolicyConfig,
    ) -> list[ActionRequest]:
        evidence = investigation.by_step()
        planned: Counter[str] = Counter()
        out: list[ActionRequest] = []
        for cand in candidates:
            key = idempotency_key(incident_id, cand.action, cand.target)
            facts = await self._facts(cand)
            if facts is None:
                out.append(self._unavailable(cand, key, playbook_autonomy, policy))
                continue
            held = await self._store.get_action(key)
            if held is not None and held.status in ("claimed", "executed"):
                # Re-deciding a grown incident: this exact action is already in effect (or
                # being performed); it is a fact now, not a choice, and costs no new budget.
                out.append(
                    held.request.model_copy(
                        update={
                            "disposition": Disposition.EXECUTED,
                            "rule": "ledger.already_in_effect",
                            "reason": f"{cand.action} on {cand.target.value} was already "
                            f"{held.status} for this incident; not repeated",
                            "outcome": None,
                        }
                    )
                )
                continue
            budget = budget_for(cand.action, policy)
            since = self._clock().timestamp() - budget.window_seconds
            used = await self._store.count_executions(
                cand.action, datetime.fromtimestamp(since, tz=self._clock().tzinfo)
            )
            missing = missing_evidence(cand, evidence)
            verdict = decide(
                PolicyInput(
                    candidate=cand,
                    facts=facts,
                    score=score,
                    investigation_concluded=investigation.concluded,
                    missing_evidence=missing,
                    playbook=playbook,
                    playbook_autonomy=playbook_autonomy,
                    executions_in_window=used + planned[cand.action],
                    idempotency_key=key,
                ),
                policy,
            )
            if verdict.disposition is Disposition.EXECUTED:
                planned[cand.action] += 1
            cap = self._gateway.capability(facts.connector, facts.capability)
            out.append(
                ActionRequest(
                    id=f"act-{key[:16]}",
                    action=cand.action,
                    target=cand.target,
                    connector=facts.connector,
                    capability=facts.capability,
                    args=cand.args,
                    playbook_rule=cand.playbook_rule,
                    disposition=verdict.disposition,
                    rule=verdict.rule,
                    reason=verdict.reason,
                    intended=verdict.intended,
                    intended_rule=verdict.intended_rule,
                    guardrails=list(verdict.guardrails),
                    autonomy_source=verdict.autonomy_source,
                    execute_at=verdict.execute_at,
                    propose_at=verdict.propose_at,
                    autonomy=verdict.autonomy,
                    reversible=cap.reversible,
                    rollback_capability=cap.rollback,
                    revert_after_seconds=cand.revert_after_seconds,
                    risk=cap.risk,
                    required_approvals=verdict.required_approvals,
                    review_sample=verdict.review_sample,
                    blast_radius=verdict.blast_radius,
                    idempotency_key=key,
                )
            )
        return out

    async def _facts(self, cand: ActionCandidate) -> ActionFacts | None:
        try:
            connector, cap = self._gateway.find_action(cand.action)
        except ConnectorError:
            return None
        asset = await self._lookup_asset(cand.target)
        return action_facts(
            connector, cap, tuple(self._gateway.missing_scopes(connector, cap.name)), asset
        )

    async def _lookup_asset(self, target: Entity) -> dict[str, Any]:
        """Inventory facts about the target; unknown when there is no inventory or it fails."""
        inventory_configured = _INVENTORY[0] in self._gateway.connectors
        if target.type.value not in _INVENTORY_TYPES or not inventory_configured:
            return {}
        try:
            return await self._gateway.call(
                *_INVENTORY,
                {"type": target.type.value, "value": target.value},
                reason="policy: target facts",
            )
        except ConnectorError:
            # Unknown is treated as medium criticality, not as unimportant.
            return {}

    def _unavailable(
        self,
        cand: ActionCandidate,
        key: str,
        playbook_autonomy: AutonomyLevel | None,
        policy: PolicyConfig,
    ) -> ActionRequest:
        level, _ = effective_autonomy(policy, playbook_autonomy, cand)
        return ActionRequest(
            id=f"act-{key[:16]}",
            action=cand.action,
            target=cand.target,
            connector="",
            capability=cand.action,
            args=cand.args,
            playbook_rule=cand.playbook_rule,
            disposition=Disposition.DENIED,
            rule="config.no_connector",
            reason=f"no configured connector provides the action {cand.action!r}",
            execute_at=cand.execute_at,
            propose_at=cand.propose_at,
            autonomy=level,
            reversible=False,
            risk=RiskTier.HIGH,
            idempotency_key=key,
        )


def missing_evidence(
    candidate: ActionCandidate, evidence: Mapping[str, Evidence]
) -> tuple[str, ...]:
    """The steps an action `requires` that did not end OK."""
    return tuple(
        r
        for r in candidate.requires
        if r not in evidence or evidence[r].status is not EvidenceStatus.OK
    )


def action_facts(
    connector: str,
    cap: Capability,
    missing_scopes: tuple[str, ...],
    asset: Mapping[str, Any] | None = None,
) -> ActionFacts:
    """What the policy needs about an action and its target (unknown: medium, unprotected)."""
    asset = asset or {}
    return ActionFacts(
        connector=connector,
        capability=cap.name,
        reversible=cap.reversible,
        risk=cap.risk,
        rollback=cap.rollback,
        granted=not missing_scopes,
        missing_scopes=missing_scopes,
        target_protected=bool(asset.get("protected", False)),
        target_criticality=str(asset.get("criticality", "medium")),
        target_known=bool(asset.get("found", False)),
        dependents=int(asset.get("dependents", 0)),
    )

"""From a playbook's candidate actions to policy verdicts: the one decide loop.

`decide_all` looks up what the policy needs to know about each candidate
(which connector performs it, whether it is granted and reversible, how
critical and protected the target is, what the executor's ledger holds for it,
how much of the blast-radius budget is used) through a `DecisionFacts` source,
and asks the pure policy for every disposition. Production looks facts up
through the gateway and the store (`GatewayFacts`); `soc-agent playbooks test`
through the installed connector classes (`CatalogFacts`), so both decide alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel
from soc_agent_connectors import Capability

from soc_agent.errors import ConnectorError
from soc_agent.gateway import Gateway
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
    ScoreContribution,
)
from soc_agent.models.ids import action_id, idempotency_key
from soc_agent.playbooks.scoring import model_share
from soc_agent.policy import (
    IN_EFFECT,
    ActionFacts,
    PolicyConfig,
    PolicyInput,
    PolicyRule,
    Verdict,
    budget_for,
    decide,
)
from soc_agent.store.base import ActionRecord, Store

__all__ = [
    "CatalogFacts",
    "DecisionFacts",
    "GatewayFacts",
    "PolicyObserver",
    "action_facts",
    "decide_all",
    "missing_evidence",
]

_INVENTORY = ("asset_inventory", "lookup_asset")
_INVENTORY_TYPES = {"host", "user", "ip", "domain", "email", "cloud_resource"}


class DecisionFacts(Protocol):
    """Where the decide loop learns about actions; every method is a read."""

    async def action(
        self, candidate: ActionCandidate, *, ref: str | None = None
    ) -> ActionFacts | None:
        """The action's connector, capability and target facts; None: nothing provides it.
        `ref` is the investigation the decision rests on (its look-ups are audited under it)."""
        ...

    async def standing(
        self, key: str, action: str, window_seconds: int
    ) -> tuple[ActionRecord | None, int]:
        """The executor's ledger row for this idempotency key, if any, and the executions
        of `action` recorded in the last `window_seconds`."""
        ...


PolicyObserver = Callable[[PolicyInput, Verdict], None]
"""Sees every policy input and the verdict the policy gave it, in decision order."""


async def decide_all(
    candidates: list[ActionCandidate],
    facts: DecisionFacts,
    *,
    incident_id: str,
    playbook: str,
    playbook_autonomy: AutonomyLevel | None,
    score: float,
    investigation: Investigation,
    policy: PolicyConfig,
    breakdown: Sequence[ScoreContribution] = (),
    score_bound: float | None = None,
    injection: tuple[str, ...] = (),
    observe: PolicyObserver | None = None,
) -> list[ActionRequest]:
    """Every candidate's ActionRequest, in order, each disposition made by `policy.decide`.

    Executions planned earlier in the same list count against the budget of later ones.
    `score_bound` is the score had every unevaluated rule of `breakdown` fired.
    `observe` sees each policy input with its verdict (calibration re-asks the pure
    policy what it would do at other thresholds).
    """
    unevaluated = tuple(f"{c.rule} ({c.reason})" for c in breakdown if not c.evaluated)
    model_points = model_share(score, breakdown)
    evidence = investigation.by_step()
    planned: Counter[str] = Counter()
    out: list[ActionRequest] = []
    for cand in candidates:
        key = idempotency_key(incident_id, cand.action, cand.target)
        found = await facts.action(cand, ref=investigation.id)
        window = budget_for(cand.action, policy).window_seconds
        held, used = await facts.standing(key, cand.action, window)
        in_effect = held is not None and held.status in IN_EFFECT
        if found is None or in_effect:  # an action in effect spends no budget
            used = 0
        inp = PolicyInput(
            candidate=cand,
            facts=found,
            score=score,
            model_points=model_points,
            injection=injection,
            score_bound=score_bound,
            unevaluated=unevaluated,
            investigation_concluded=investigation.concluded,
            missing_evidence=missing_evidence(cand, evidence),
            playbook=playbook,
            playbook_autonomy=playbook_autonomy,
            executions_in_window=used + planned[cand.action],
            idempotency_key=key,
            ledger_status=held.status if held is not None else None,
        )
        verdict = decide(inp, policy)
        if observe is not None:
            observe(inp, verdict)
        if verdict.rule is PolicyRule.ALREADY_IN_EFFECT and held is not None:
            # What is in effect is the held request, whatever this decision would ask.
            out.append(
                held.request.model_copy(
                    update={
                        "disposition": verdict.disposition,
                        "rule": verdict.rule.value,
                        "reason": verdict.reason,
                        "outcome": None,
                        "execution": None,
                    }
                )
            )
            continue
        if verdict.disposition is Disposition.EXECUTED:
            planned[cand.action] += 1
        out.append(
            ActionRequest(
                id=action_id(key),
                action=cand.action,
                target=cand.target,
                connector=found.connector if found else "",
                capability=found.capability if found else cand.action,
                args=cand.args,
                playbook_rule=cand.playbook_rule,
                disposition=verdict.disposition,
                rule=verdict.rule.value,
                reason=verdict.reason,
                intended=verdict.intended,
                intended_rule=verdict.intended_rule.value if verdict.intended_rule else None,
                guardrails=list(verdict.guardrails),
                autonomy_source=verdict.autonomy_source,
                execute_at=verdict.execute_at,
                propose_at=verdict.propose_at,
                autonomy=verdict.autonomy,
                # An action nobody provides is treated as the riskiest kind.
                reversible=found.reversible if found else False,
                rollback_capability=found.rollback if found else None,
                revert_after_seconds=cand.revert_after_seconds,
                risk=found.risk if found else RiskTier.HIGH,
                required_approvals=verdict.required_approvals,
                review_sample=verdict.review_sample,
                blast_radius=verdict.blast_radius,
                idempotency_key=key,
            )
        )
    return out


class GatewayFacts:
    """Production facts: the gateway's connectors and grants, the inventory, the store."""

    def __init__(self, gateway: Gateway, store: Store, *, clock: Callable[[], datetime]) -> None:
        self._gateway = gateway
        self._store = store
        self._clock = clock

    async def action(
        self, candidate: ActionCandidate, *, ref: str | None = None
    ) -> ActionFacts | None:
        try:
            connector, cap = self._gateway.find_action(candidate.action)
        except ConnectorError:
            return None
        asset = await self._lookup_asset(candidate.target, ref)
        missing = tuple(self._gateway.missing_scopes(connector, cap.name))
        return action_facts(connector, cap, missing, asset)

    async def standing(
        self, key: str, action: str, window_seconds: int
    ) -> tuple[ActionRecord | None, int]:
        return await self._store.action_standing(
            key, action, self._clock() - timedelta(seconds=window_seconds)
        )

    async def _lookup_asset(self, target: Entity, ref: str | None) -> dict[str, Any]:
        """Inventory facts about the target; unknown when there is no inventory or it fails.
        Under `audit_queries: summary` a successful look-up is listed in the summary entry
        of `ref` (see `Gateway.audit_query_summary`), not audited on its own."""
        inventory_configured = _INVENTORY[0] in self._gateway.connectors
        if target.type.value not in _INVENTORY_TYPES or not inventory_configured:
            return {}
        try:
            return await self._gateway.call(
                *_INVENTORY,
                _asset_query(target, self._gateway.capability(*_INVENTORY).input_model),
                reason="policy: target facts",
                ref=ref,
            )
        except ConnectorError:
            # Unknown is treated as medium criticality, not as unimportant.
            return {}


def _asset_query(target: Entity, model: type[BaseModel]) -> dict[str, Any]:
    """The lookup by value, and by the target's other names where the inventory takes them."""
    query: dict[str, Any] = {"type": target.type.value, "value": target.value}
    if "aliases" in model.model_fields and target.aliases:
        query["aliases"] = [name for name in target.names if name != target.value]
    return query


class CatalogFacts:
    """Playbook-test facts: the installed connector classes and the configured grants.

    A test case records investigation steps only, so the target is unknown to
    the inventory (medium criticality, unprotected), the ledger is empty and no
    budget is used.
    """

    def __init__(
        self,
        actions: Mapping[str, tuple[str, Capability]],
        grants: Mapping[str, list[str]],
    ) -> None:
        self._actions = actions
        self._grants = grants

    async def action(
        self, candidate: ActionCandidate, *, ref: str | None = None
    ) -> ActionFacts | None:
        if candidate.action not in self._actions:
            return None
        connector, cap = self._actions[candidate.action]
        granted = set(self._grants.get(connector, []))
        return action_facts(connector, cap, tuple(s for s in cap.scopes if s not in granted))

    async def standing(
        self, key: str, action: str, window_seconds: int
    ) -> tuple[ActionRecord | None, int]:
        return None, 0


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

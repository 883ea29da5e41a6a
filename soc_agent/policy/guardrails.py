"""Guardrails: checks enforced outside any playbook that deny an action or stop an execution.

Access guardrails (deny list, scopes) deny an action outright. Execution guardrails
turn a would-be execution into a proposal; all of them are evaluated so none is lost,
in a fixed order whose first hit names the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from soc_agent.models.decision import RiskTier
from soc_agent.policy.config import PolicyConfig, budget_for
from soc_agent.policy.inputs import ActionFacts, PolicyInput
from soc_agent.policy.rules import PolicyRule

__all__ = [
    "CRITICALITIES",
    "GuardrailHit",
    "access_denial",
    "blast_radius_info",
    "execution_guardrails",
    "four_eyes_reason",
    "normalise_criticality",
    "risk_at_least",
]

CRITICALITIES = ("low", "medium", "high", "critical")
_RISK_RANK = {RiskTier.LOW: 0, RiskTier.MEDIUM: 1, RiskTier.HIGH: 2}


@dataclass(frozen=True)
class GuardrailHit:
    rule: PolicyRule
    reason: str


def risk_at_least(risk: RiskTier, floor: RiskTier) -> bool:
    return _RISK_RANK[risk] >= _RISK_RANK[floor]


def normalise_criticality(value: str) -> str:
    """Inventory criticality as one of low|medium|high|critical; anything else is medium."""
    text = value.strip().lower()
    return text if text in CRITICALITIES else "medium"


def access_denial(
    inp: PolicyInput, facts: ActionFacts, config: PolicyConfig
) -> GuardrailHit | None:
    """Deny list first, then scopes: an action the agent may not take at any score."""
    action = inp.candidate.action
    if action in config.deny_actions:
        return GuardrailHit(
            PolicyRule.DENY_LIST, f"action {action} is on the deployment's deny list"
        )
    if not facts.granted:
        scopes = (
            f"missing scopes: {', '.join(facts.missing_scopes)}"
            if facts.missing_scopes
            else "scopes not granted"
        )
        return GuardrailHit(
            PolicyRule.NOT_GRANTED,
            f"the agent is not granted {facts.connector}.{facts.capability} for {action} "
            f"({scopes})",
        )
    return None


def four_eyes_reason(inp: PolicyInput, facts: ActionFacts, config: PolicyConfig) -> str | None:
    """Why this action needs two approvers, or None."""
    action, risk = inp.candidate.action, facts.risk
    if action in config.four_eyes_actions:
        return f"{action} is a four-eyes action (two approvers)"
    floor = config.four_eyes_min_risk
    if floor is not None and risk_at_least(risk, floor):
        return f"risk {risk.value} is at or above four_eyes_min_risk {floor.value} (two approvers)"
    return None


def execution_guardrails(
    inp: PolicyInput, facts: ActionFacts, config: PolicyConfig
) -> tuple[GuardrailHit, ...]:
    """Every guardrail that forbids executing this action now, in check order.

    Order: suspected injection, protected asset, irreversible, four-eyes, blast-radius
    budget, kill switch.
    """
    hits: list[GuardrailHit] = []
    target = inp.candidate.target

    if inp.injection:
        hits.append(
            GuardrailHit(
                PolicyRule.INJECTION,
                "text in the alert or a lookup tried to instruct the investigating model ("
                + "; ".join(inp.injection[:5])
                + (f"; and {len(inp.injection) - 5} more" if len(inp.injection) > 5 else "")
                + "), so a human decides",
            )
        )

    pattern = config.protected.matches(target)
    if facts.target_protected or pattern is not None:
        why = (
            "the asset inventory marks it protected"
            if facts.target_protected
            else f"it matches protected pattern {pattern!r}"
        )
        if facts.target_protected and pattern is not None:
            why += f" and it matches protected pattern {pattern!r}"
        hits.append(
            GuardrailHit(PolicyRule.PROTECTED_ASSET, f"target {target.key} is protected: {why}")
        )

    if not facts.reversible:
        hits.append(
            GuardrailHit(
                PolicyRule.IRREVERSIBLE,
                f"{inp.candidate.action} is not reversible; only reversible actions auto-execute",
            )
        )
    elif facts.rollback is None:
        hits.append(
            GuardrailHit(
                PolicyRule.IRREVERSIBLE,
                f"{inp.candidate.action} is declared reversible but names no rollback "
                f"capability; only reversible actions auto-execute",
            )
        )

    four_eyes = four_eyes_reason(inp, facts, config)
    if four_eyes is not None:
        hits.append(GuardrailHit(PolicyRule.FOUR_EYES, four_eyes))

    budget = budget_for(inp.candidate.action, config)
    if inp.executions_in_window >= budget.max_executions:
        hits.append(
            GuardrailHit(
                PolicyRule.BLAST_RADIUS,
                f"blast-radius budget spent: {inp.executions_in_window} of "
                f"{budget.max_executions} executions of {inp.candidate.action} "
                f"in {budget.window_seconds}s",
            )
        )

    if config.kill_switch:
        hits.append(
            GuardrailHit(
                PolicyRule.KILL_SWITCH, "the kill switch is on: every execution becomes a proposal"
            )
        )
    return tuple(hits)


def blast_radius_info(inp: PolicyInput, facts: ActionFacts, config: PolicyConfig) -> dict[str, Any]:
    """What an analyst needs to judge the blast radius; JSON-serialisable."""
    target = inp.candidate.target
    budget = budget_for(inp.candidate.action, config)
    pattern = config.protected.matches(target)
    return {
        "target": target.key,
        "criticality": normalise_criticality(facts.target_criticality),
        "dependents": facts.dependents,
        "known": facts.target_known,
        "protected": facts.target_protected or pattern is not None,
        "protected_pattern": pattern,
        "budget": {
            "action": inp.candidate.action,
            "max_executions": budget.max_executions,
            "window_seconds": budget.window_seconds,
            "used": inp.executions_in_window,
            "remaining": max(0, budget.max_executions - inp.executions_in_window),
        },
    }

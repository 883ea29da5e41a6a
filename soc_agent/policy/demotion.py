"""Demotions after the decision: what the policy says when execution time disagrees with it.

The budget check at decision time counts executions already recorded; two
decisions made concurrently can both see room in the budget. The executor
enforces the budget atomically with its claim, and the loser is demoted here
to a proposal, so a human decides the execution the budget no longer allows.

An operator's runtime flags can change between a decision and its execution
(a long investigation, a crash before acting): an execution still due when the
kill switch is on, or when the action's autonomy has since been lowered to a
level that never executes, is demoted the way the policy would now decide it.
"""

from __future__ import annotations

from soc_agent.models.decision import ActionRequest, AutonomyLevel, Disposition
from soc_agent.policy.autonomy import describe_level
from soc_agent.policy.config import PolicyConfig
from soc_agent.policy.rules import PolicyRule

__all__ = ["demote_for_flags", "demote_over_budget"]


def demote_over_budget(request: ActionRequest, detail: str) -> ActionRequest:
    """An EXECUTED request whose budget was spent at execution time, as a PROPOSED one."""
    rule = PolicyRule.BLAST_RADIUS.value
    return request.model_copy(
        update={
            "disposition": Disposition.PROPOSED,
            "rule": rule,
            "reason": f"{request.reason}; but {detail}",
            "guardrails": [*request.guardrails, rule],
        }
    )


def demote_for_flags(request: ActionRequest, config: PolicyConfig) -> ActionRequest | None:
    """An EXECUTED request the runtime flags in `config` no longer let execute, demoted;
    None when it may still execute.

    The kill switch makes it a proposal. A level lowered below the one it was decided
    under makes it a proposal at level 2 (collaborator) and a notification at level 1
    (operator); a level still at 3 or above leaves it as decided (it executes there).
    """
    if request.disposition is not Disposition.EXECUTED:
        return None
    if config.kill_switch:
        disposition, rule = Disposition.PROPOSED, PolicyRule.KILL_SWITCH
        why = "the kill switch was engaged before it executed: every execution becomes a proposal"
    else:
        now = min(
            config.agent_autonomy,
            config.action_autonomy.get(request.action, AutonomyLevel.OBSERVER),
        )
        if now >= request.autonomy or now > AutonomyLevel.COLLABORATOR:
            return None
        operator = now is AutonomyLevel.OPERATOR
        disposition = Disposition.NOTIFIED if operator else Disposition.PROPOSED
        rule = PolicyRule.OPERATOR if operator else PolicyRule.COLLABORATOR
        why = (
            f"the autonomy was lowered to {describe_level(now)} before it executed, "
            f"which {'only recommends' if operator else 'proposes every action'}"
        )
    return request.model_copy(
        update={
            "disposition": disposition,
            "rule": rule.value,
            "reason": f"{request.reason}; but {why}",
            "guardrails": [*request.guardrails, rule.value]
            if rule is PolicyRule.KILL_SWITCH
            else request.guardrails,
            "review_sample": False,
        }
    )

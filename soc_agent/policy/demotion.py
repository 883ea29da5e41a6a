"""Demotions after the decision: what the policy says when execution time disagrees with it.

The budget check at decision time counts executions already recorded; two
decisions made concurrently can both see room in the budget. The executor
enforces the budget atomically with its claim, and the loser is demoted here
to a proposal, so a human decides the execution the budget no longer allows.
"""

from __future__ import annotations

from soc_agent.models.decision import ActionRequest, Disposition
from soc_agent.policy.rules import PolicyRule

__all__ = ["demote_over_budget"]


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

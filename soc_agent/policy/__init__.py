"""Policy: autonomy levels, thresholds and guardrails -> dispositions (pure, no I/O).

`decide(PolicyInput, PolicyConfig) -> Verdict` is the entry point; the decision
order is documented in `soc_agent.policy.engine`.
"""

from __future__ import annotations

from soc_agent.policy.autonomy import effective_autonomy, review_sampled
from soc_agent.policy.config import (
    DEFAULT_BLAST_RADIUS,
    DEFAULT_BUDGET_KEY,
    DEFAULT_PROPOSAL_EXPIRY_SECONDS,
    BlastRadiusBudget,
    CalibrationPolicy,
    PolicyConfig,
    ProtectedAssets,
    budget_for,
    proposal_expiry,
)
from soc_agent.policy.demotion import demote_for_flags, demote_over_budget
from soc_agent.policy.engine import IN_EFFECT, decide
from soc_agent.policy.flags import (
    ACTION_AUTONOMY_FLAG,
    AUTONOMY_FLAG,
    KILL_SWITCH_FLAG,
    RUNTIME_FLAGS,
    apply_runtime_flags,
)
from soc_agent.policy.inputs import ActionFacts, PolicyInput, Verdict
from soc_agent.policy.rules import PolicyRule
from soc_agent.policy.thresholds import Thresholds, resolve_thresholds
from soc_agent.policy.urgency import urgency

__all__ = [
    "ACTION_AUTONOMY_FLAG",
    "AUTONOMY_FLAG",
    "DEFAULT_BLAST_RADIUS",
    "DEFAULT_BUDGET_KEY",
    "DEFAULT_PROPOSAL_EXPIRY_SECONDS",
    "IN_EFFECT",
    "KILL_SWITCH_FLAG",
    "RUNTIME_FLAGS",
    "ActionFacts",
    "BlastRadiusBudget",
    "CalibrationPolicy",
    "PolicyConfig",
    "PolicyInput",
    "PolicyRule",
    "ProtectedAssets",
    "Thresholds",
    "Verdict",
    "apply_runtime_flags",
    "budget_for",
    "decide",
    "demote_for_flags",
    "demote_over_budget",
    "effective_autonomy",
    "proposal_expiry",
    "resolve_thresholds",
    "review_sampled",
    "urgency",
]

"""What the policy engine is given (facts looked up by the glue) and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from soc_agent.models.decision import (
    ActionCandidate,
    ActionStatus,
    AutonomyLevel,
    Disposition,
    RiskTier,
)
from soc_agent.policy.rules import PolicyRule

__all__ = ["ActionFacts", "PolicyInput", "Verdict"]


@dataclass(frozen=True, kw_only=True)
class ActionFacts:
    """What the glue looked up about an action and its target (gateway and inventory)."""

    connector: str
    capability: str
    reversible: bool
    risk: RiskTier
    rollback: str | None  # the capability that undoes it
    granted: bool  # the agent holds the scopes for it (gateway)
    missing_scopes: tuple[str, ...] = ()
    target_protected: bool = False  # asset inventory flag
    target_criticality: str = "medium"  # low|medium|high|critical; unknown -> medium
    target_known: bool = False  # the inventory knows the target
    dependents: int = 0  # blast radius indicator from the inventory


@dataclass(frozen=True, kw_only=True)
class PolicyInput:
    """One candidate action with everything the policy needs to decide it; no clock, no I/O."""

    candidate: ActionCandidate
    facts: ActionFacts | None  # None: no configured connector provides the action
    score: float
    # Points in `score` that came from score rules reading the model's assessment
    # (`agent.*`), already capped at policy.model.max_points.
    model_points: float = 0.0
    # Text that tried to instruct the model (where, and which pattern) in a model-driven
    # investigation: no execution may rest on what such an investigation saw.
    injection: tuple[str, ...] = ()
    # The highest score had every unevaluated score rule fired (None: every rule was
    # evaluated), and the rules that could not be evaluated, with why.
    score_bound: float | None = None
    unevaluated: tuple[str, ...] = ()
    investigation_concluded: bool  # False: the step/time budget ran out
    missing_evidence: tuple[str, ...] = ()  # steps in candidate.requires that failed/were not run
    playbook: str
    playbook_autonomy: AutonomyLevel | None = None
    executions_in_window: int = 0  # executions of this action in its blast-radius window
    idempotency_key: str
    ledger_status: ActionStatus | None = None  # the executor's ledger row for the key, if any


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The disposition of one candidate action and the rule that produced it.

    In dry-run/shadow mode `disposition` is SKIPPED and `intended`/`intended_rule`
    say what would have happened; in live mode both are None. `guardrails` lists
    every execution guardrail that fired, in check order (the first is `rule` when a
    guardrail decided). `execute_at`/`propose_at`/`notify_at` are the thresholds in
    force after config defaults were applied.
    """

    disposition: Disposition
    rule: PolicyRule
    reason: str
    intended: Disposition | None
    autonomy: AutonomyLevel
    required_approvals: int
    review_sample: bool
    blast_radius: dict[str, Any]
    autonomy_source: str = "agent"
    guardrails: tuple[str, ...] = ()
    intended_rule: PolicyRule | None = None
    execute_at: float | None = None
    propose_at: float | None = None
    notify_at: float | None = None

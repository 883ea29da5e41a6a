"""The policy engine: per candidate action, a disposition and the rule that produced it.

`decide` is a pure function of its input and the config (no I/O, no clock) and checks,
in this order, stopping at the first step that settles the disposition:

0. facts: no configured connector provides the action -> by the thresholds alone,
   ESCALATED `config.no_connector` from propose_at up (a human must act), else
   NOTIFIED or SKIPPED as in 2; the executor's ledger already holds the action's
   idempotency key as claimed or executed (a grown incident decided again)
   -> EXECUTED `ledger.already_in_effect` whatever the mode: it is in effect, not a
   choice, and costs no new budget.
1. access: the action is on the deny list -> DENIED `guardrail.deny_list`; the agent
   lacks the scopes -> DENIED `guardrail.not_granted` (naming the missing scopes).
2. thresholds (candidate's own, else the config defaults; notify_at has no default),
   inclusive: score >= execute_at wants EXECUTE, >= propose_at wants PROPOSE, else
   if some score rules could not be evaluated and the score bound (the score had they
   all fired) reaches propose_at -> ESCALATED `investigation.unevaluated`, naming them:
   partial evidence never quietly lowers what the agent does; else
   >= notify_at -> NOTIFIED `threshold.notify`, else SKIPPED `threshold.below_notify`
   (or `threshold.below_propose` when no notify_at is set).
3. investigation, when an EXECUTE or PROPOSE is wanted: not concluded -> ESCALATED
   `investigation.incomplete`; required evidence missing -> ESCALATED
   `investigation.missing_evidence`. A human looks; nothing is decided on partial
   evidence, at any autonomy level.
4. autonomy (most restrictive of agent, playbook and action knobs):
   level 1 operator -> NOTIFIED `autonomy.operator` (a recommendation, never a
   proposal that could execute); wanted PROPOSE -> PROPOSED `threshold.propose`;
   level 2 collaborator, wanted EXECUTE -> PROPOSED `autonomy.collaborator`;
   level 4 approver, score < execute_at + edge_margin -> ESCALATED
   `autonomy.approver.edge_case`.
5. execution guardrails, which always win over an EXECUTE (at levels 3-5): text that
   tried to instruct the investigating model (`guardrail.injection`), protected asset,
   irreversible (or no rollback capability), four-eyes, blast-radius budget, kill
   switch -> PROPOSED, the first one naming the rule; all that fired are listed
   in `Verdict.guardrails` and the reason.
6. otherwise EXECUTED: `autonomy.consultant.sample` at level 3 when the idempotency
   key falls in the review sample (review_sample=True), else `threshold.execute`.

Four-eyes also sets required_approvals=2 on any PROPOSED or ESCALATED verdict for
that action, whatever the rule. Finally the mode: in DRY_RUN/SHADOW the disposition
is SKIPPED with rule `guardrail.dry_run`/`guardrail.shadow`, and `intended`/
`intended_rule` record what live mode would have done; nothing executes, queues or
is sampled. In LIVE, `intended` is None.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from soc_agent.models.decision import ActionStatus, AutonomyLevel, Disposition, RunMode
from soc_agent.policy.autonomy import describe_level, effective_autonomy, review_sampled
from soc_agent.policy.config import PolicyConfig
from soc_agent.policy.guardrails import (
    GuardrailHit,
    access_denial,
    blast_radius_info,
    execution_guardrails,
    four_eyes_reason,
)
from soc_agent.policy.inputs import ActionFacts, PolicyInput, Verdict
from soc_agent.policy.rules import PolicyRule
from soc_agent.policy.thresholds import (
    Band,
    BandResult,
    Thresholds,
    classify,
    fmt,
    resolve_thresholds,
)

__all__ = ["IN_EFFECT", "decide"]

_NEEDS_HUMAN = frozenset({Disposition.PROPOSED, Disposition.ESCALATED})
_MODE_RULES = {RunMode.DRY_RUN: PolicyRule.DRY_RUN, RunMode.SHADOW: PolicyRule.SHADOW}
# Ledger statuses that settle a re-decided action as already in effect (step 0).
IN_EFFECT = frozenset({ActionStatus.CLAIMED, ActionStatus.EXECUTED})


@dataclass(frozen=True)
class _Outcome:
    """What live mode would do."""

    disposition: Disposition
    rule: PolicyRule
    reason: str
    guardrails: tuple[GuardrailHit, ...] = ()
    review_sample: bool = False


def decide(inp: PolicyInput, config: PolicyConfig) -> Verdict:
    """The disposition of one candidate action under `config`; see the module docstring."""
    level, source = effective_autonomy(
        config, inp.playbook_autonomy, inp.candidate, playbook=inp.playbook
    )
    thresholds = resolve_thresholds(inp.candidate, config)
    facts = inp.facts
    if facts is not None and inp.ledger_status in IN_EFFECT:
        settled = _in_effect(inp)
        return Verdict(
            disposition=settled.disposition,
            rule=settled.rule,
            reason=settled.reason,
            intended=None,
            autonomy=level,
            required_approvals=1,
            review_sample=False,
            blast_radius={},
            autonomy_source=source,
            execute_at=thresholds.execute_at,
            propose_at=thresholds.propose_at,
            notify_at=thresholds.notify_at,
        )
    if facts is None:
        outcome = _no_connector(inp, thresholds)
        needs_two = False
    else:
        outcome = _live_outcome(inp, facts, config, level, source, thresholds)
        needs_two = (
            outcome.disposition in _NEEDS_HUMAN and four_eyes_reason(inp, facts, config) is not None
        )
    if inp.model_points:
        outcome = replace(
            outcome, reason=f"{outcome.reason} (model-derived points: {fmt(inp.model_points)})"
        )
    if config.mode is RunMode.LIVE:
        disposition, rule, reason = outcome.disposition, outcome.rule, outcome.reason
        intended: Disposition | None = None
        intended_rule: PolicyRule | None = None
        review_sample = outcome.review_sample
    else:
        sampled = " and sampled for review" if outcome.review_sample else ""
        disposition, rule = Disposition.SKIPPED, _MODE_RULES[config.mode]
        reason = (
            f"{config.mode.value} mode: nothing executes or queues; would have been "
            f"{outcome.disposition.value}{sampled} by {outcome.rule.value}: {outcome.reason}"
        )
        intended, intended_rule = outcome.disposition, outcome.rule
        review_sample = False
    return Verdict(
        disposition=disposition,
        rule=rule,
        reason=reason,
        intended=intended,
        autonomy=level,
        required_approvals=2 if needs_two else 1,
        review_sample=review_sample,
        blast_radius=blast_radius_info(inp, facts, config) if facts is not None else {},
        autonomy_source=source,
        guardrails=tuple(hit.rule.value for hit in outcome.guardrails),
        intended_rule=intended_rule,
        execute_at=thresholds.execute_at,
        propose_at=thresholds.propose_at,
        notify_at=thresholds.notify_at,
    )


def _in_effect(inp: PolicyInput) -> _Outcome:
    cand = inp.candidate
    return _Outcome(
        Disposition.EXECUTED,
        PolicyRule.ALREADY_IN_EFFECT,
        f"{cand.action} on {cand.target.value} was already {inp.ledger_status} "
        "for this incident; not repeated",
    )


def _no_connector(inp: PolicyInput, thresholds: Thresholds) -> _Outcome:
    """Nothing configured can perform the action: what the score calls for goes to a human.

    A playbook's action quietly denied for want of a connector looked like a decision;
    the score still says how urgent it is, so it is escalated from propose_at up.
    """
    band = classify(inp.score, thresholds)
    below = _below_propose(inp, thresholds, band)
    if below is not None:
        return below
    action, target = inp.candidate.action, inp.candidate.target.key
    wanted = "execution" if band.band is Band.EXECUTE else "a proposal"
    return _Outcome(
        Disposition.ESCALATED,
        PolicyRule.NO_CONNECTOR,
        f"no configured connector provides the action {action!r}; {band.reason}, which would "
        f"call for {wanted} of {action} on {target}, so a human must act",
    )


def _live_outcome(
    inp: PolicyInput,
    facts: ActionFacts,
    config: PolicyConfig,
    level: AutonomyLevel,
    source: str,
    thresholds: Thresholds,
) -> _Outcome:
    denial = access_denial(inp, facts, config)
    if denial is not None:
        return _Outcome(Disposition.DENIED, denial.rule, denial.reason)

    band = _without_model_execution(inp, classify(inp.score, thresholds), thresholds, config)
    below = _below_propose(inp, thresholds, band)
    if below is not None:
        return below

    action = inp.candidate.action
    target = inp.candidate.target.key
    wanted = "execution" if band.band is Band.EXECUTE else "a proposal"
    if not inp.investigation_concluded:
        return _Outcome(
            Disposition.ESCALATED,
            PolicyRule.INCOMPLETE,
            f"the investigation did not conclude (step or time budget spent); {band.reason}, "
            f"which would call for {wanted} of {action} on {target}, so a human must look",
        )
    if inp.missing_evidence:
        return _Outcome(
            Disposition.ESCALATED,
            PolicyRule.MISSING_EVIDENCE,
            f"required evidence is missing ({', '.join(inp.missing_evidence)}); {band.reason}, "
            f"which would call for {wanted} of {action} on {target}, so a human must look",
        )

    hits = execution_guardrails(inp, facts, config) if band.band is Band.EXECUTE else ()
    also = _also(hits)
    autonomy = f"autonomy {describe_level(level)}, set by {source}"
    if level is AutonomyLevel.OPERATOR:
        return _Outcome(
            Disposition.NOTIFIED,
            PolicyRule.OPERATOR,
            f"{autonomy}, only recommends: {band.reason}, so {action} on {target} "
            f"is recommended, not proposed{also}",
            hits,
        )
    if band.band is Band.PROPOSE:
        return _Outcome(Disposition.PROPOSED, band.rule, band.reason)

    if level is AutonomyLevel.COLLABORATOR:
        return _Outcome(
            Disposition.PROPOSED,
            PolicyRule.COLLABORATOR,
            f"{autonomy}, proposes every action: {band.reason}{also}",
            hits,
        )
    edge_limit = thresholds.execute_at + config.edge_margin
    # The model may not lift a score out of the edge-case band either.
    judged = inp.score if config.model.may_execute else inp.score - max(0.0, inp.model_points)
    if level is AutonomyLevel.APPROVER and judged < edge_limit:
        return _Outcome(
            Disposition.ESCALATED,
            PolicyRule.APPROVER_EDGE_CASE,
            f"{autonomy}, escalates edge cases: score {fmt(judged)} is within "
            f"edge_margin {fmt(config.edge_margin)} of execute_at {fmt(thresholds.execute_at)} "
            f"(below {fmt(edge_limit)}){also}",
            hits,
        )
    if hits:
        listed = "; ".join(f"{hit.rule.value}: {hit.reason}" for hit in hits)
        return _Outcome(
            Disposition.PROPOSED,
            hits[0].rule,
            f"{band.reason}, but guardrails forbid executing it: {listed}",
            hits,
        )
    if level is AutonomyLevel.CONSULTANT and review_sampled(
        inp.idempotency_key, config.review_sample_rate
    ):
        return _Outcome(
            Disposition.EXECUTED,
            PolicyRule.CONSULTANT_SAMPLE,
            f"{band.reason}; {autonomy}, executes and this execution falls in the review "
            f"sample (rate {fmt(config.review_sample_rate)})",
            review_sample=True,
        )
    return _Outcome(
        Disposition.EXECUTED, band.rule, f"{band.reason}; {autonomy}, executes within guardrails"
    )


def _without_model_execution(
    inp: PolicyInput, band: BandResult, thresholds: Thresholds, config: PolicyConfig
) -> BandResult:
    """An execution the model's points alone reach is a proposal (unless policy.model allows)."""
    if band.band is not Band.EXECUTE or config.model.may_execute or inp.model_points <= 0:
        return band
    without = inp.score - inp.model_points
    if without >= thresholds.execute_at:
        return band
    return BandResult(
        band=Band.PROPOSE,
        rule=PolicyRule.MODEL_NO_EXECUTE,
        reason=f"score {fmt(inp.score)} reaches execute_at {fmt(thresholds.execute_at)} only "
        f"with {fmt(inp.model_points)} model-derived points ({fmt(without)} without them), and "
        "policy.model.may_execute is off: proposed",
    )


def _below_propose(inp: PolicyInput, thresholds: Thresholds, band: BandResult) -> _Outcome | None:
    """The outcome when the score calls for no proposal: escalated when unevaluated rules
    might have called for one, else notified or skipped; None from propose_at up."""
    unevaluated = _unevaluated(inp, thresholds, band)
    if unevaluated is not None:
        return unevaluated
    if band.band is Band.NOTIFY:
        return _Outcome(Disposition.NOTIFIED, band.rule, band.reason)
    if band.band is Band.BELOW:
        return _Outcome(Disposition.SKIPPED, band.rule, band.reason)
    return None


def _unevaluated(inp: PolicyInput, thresholds: Thresholds, band: BandResult) -> _Outcome | None:
    """Escalate when rules that could not be evaluated might have called for more."""
    if band.band not in (Band.NOTIFY, Band.BELOW) or inp.score_bound is None:
        return None
    reach = classify(inp.score_bound, thresholds)
    if reach.band not in (Band.PROPOSE, Band.EXECUTE):
        return None
    wanted = "execution" if reach.band is Band.EXECUTE else "a proposal"
    rules = "; ".join(inp.unevaluated) or "some score rules"
    return _Outcome(
        Disposition.ESCALATED,
        PolicyRule.UNEVALUATED,
        f"score {fmt(inp.score)}, but these could not be evaluated: {rules}; had they fired "
        f"the score could reach {fmt(inp.score_bound)}, which would call for {wanted} of "
        f"{inp.candidate.action} on {inp.candidate.target.key}, so a human must look",
    )


def _also(hits: tuple[GuardrailHit, ...]) -> str:
    if not hits:
        return ""
    return "; guardrails that would also stop an execution: " + "; ".join(
        f"{hit.rule.value}: {hit.reason}" for hit in hits
    )

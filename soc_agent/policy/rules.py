"""The stable ids every Verdict.rule takes: dashboards, audits and tests key on them."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["PolicyRule"]


class PolicyRule(StrEnum):
    """What produced a disposition: threshold, autonomy level, guardrail or investigation.

    Every `rule` (and `intended_rule`) an ActionRequest can carry is a member;
    tests/unit/policy/test_policy_registry.py keeps it so.
    """

    # facts that settle a disposition before any choice is made
    NO_CONNECTOR = "config.no_connector"  # no configured connector provides the action
    ALREADY_IN_EFFECT = "ledger.already_in_effect"  # the executor's ledger holds the key

    # thresholds on the investigation score
    BELOW_NOTIFY = "threshold.below_notify"
    BELOW_PROPOSE = "threshold.below_propose"  # no notify_at set and score below propose_at
    NOTIFY = "threshold.notify"
    PROPOSE = "threshold.propose"
    EXECUTE = "threshold.execute"
    # autonomy levels
    OPERATOR = "autonomy.operator"
    COLLABORATOR = "autonomy.collaborator"
    CONSULTANT_SAMPLE = "autonomy.consultant.sample"
    APPROVER_EDGE_CASE = "autonomy.approver.edge_case"
    # the investigation could not conclude
    INCOMPLETE = "investigation.incomplete"
    MISSING_EVIDENCE = "investigation.missing_evidence"
    UNEVALUATED = "investigation.unevaluated"  # the score bound reaches what the score does not
    MODEL_NO_EXECUTE = "model.no_execute"  # only model-derived points reach execute_at
    # guardrails (enforced outside any playbook; they always win)
    DENY_LIST = "guardrail.deny_list"
    INJECTION = "guardrail.injection"  # alert or lookup text tried to instruct the model
    NOT_GRANTED = "guardrail.not_granted"
    PROTECTED_ASSET = "guardrail.protected_asset"
    IRREVERSIBLE = "guardrail.irreversible"
    FOUR_EYES = "guardrail.four_eyes"
    BLAST_RADIUS = "guardrail.blast_radius"
    KILL_SWITCH = "guardrail.kill_switch"
    DRY_RUN = "guardrail.dry_run"
    SHADOW = "guardrail.shadow"

"""The stable ids every Verdict.rule takes: dashboards, audits and tests key on them."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["PolicyRule"]


class PolicyRule(StrEnum):
    """What produced a disposition: threshold, autonomy level, guardrail or investigation."""

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
    # guardrails (enforced outside any playbook; they always win)
    DENY_LIST = "guardrail.deny_list"
    NOT_GRANTED = "guardrail.not_granted"
    PROTECTED_ASSET = "guardrail.protected_asset"
    IRREVERSIBLE = "guardrail.irreversible"
    FOUR_EYES = "guardrail.four_eyes"
    BLAST_RADIUS = "guardrail.blast_radius"
    KILL_SWITCH = "guardrail.kill_switch"
    DRY_RUN = "guardrail.dry_run"
    SHADOW = "guardrail.shadow"

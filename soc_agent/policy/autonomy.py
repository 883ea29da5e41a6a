"""Autonomy: the most restrictive of the agent, playbook and action knobs; level-3 sampling."""

from __future__ import annotations

import hashlib

from soc_agent.models.decision import ActionCandidate, AutonomyLevel
from soc_agent.policy.config import PolicyConfig

__all__ = ["LEVEL_NAMES", "describe_level", "effective_autonomy", "review_sampled"]

LEVEL_NAMES: dict[AutonomyLevel, str] = {level: level.name.lower() for level in AutonomyLevel}


def describe_level(level: AutonomyLevel) -> str:
    """`level 4 (approver)`."""
    return f"level {int(level)} ({LEVEL_NAMES[level]})"


def effective_autonomy(
    config: PolicyConfig,
    playbook_autonomy: AutonomyLevel | None,
    candidate: ActionCandidate,
    *,
    playbook: str | None = None,
) -> tuple[AutonomyLevel, str]:
    """The most restrictive (lowest) level and the knob that set it.

    Knobs, broadest first: the agent (`agent`), the playbook (`playbook:<name>`,
    or `playbook` when no name is given), the action as the playbook rule sets it
    (candidate.autonomy) and the deployment-wide cap per action
    (config.action_autonomy), both reported as `action:<name>`. On a tie the
    broadest knob is named.
    """
    action_source = f"action:{candidate.action}"
    knobs: list[tuple[AutonomyLevel | None, str]] = [
        (config.agent_autonomy, "agent"),
        (playbook_autonomy, f"playbook:{playbook}" if playbook else "playbook"),
        (candidate.autonomy, action_source),
        (config.action_autonomy.get(candidate.action), action_source),
    ]
    level, source = config.agent_autonomy, "agent"
    for knob, name in knobs:
        if knob is not None and knob < level:
            level, source = knob, name
    return level, source


def review_sampled(idempotency_key: str, rate: float) -> bool:
    """Whether a level-3 execution is queued for review: a stable fraction `rate` of keys.

    The first 8 bytes of SHA-256(key) as a fraction of 2**64 are compared with the
    rate, so a redelivered alert gets the same answer and raising the rate only adds
    keys to the sample.
    """
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate

"""Runtime flags an operator sets while the agent runs, and how they change the policy.

Flags live in the store so every process sees them; this module names their
keys and applies them purely. A flag can only make the agent more cautious
than its configuration: the kill switch turns executions into proposals, the
runtime autonomy level is capped by the configured one, and a runtime cap on
one action's autonomy (`policy suggest` applied through the API) only lowers it.
"""

from __future__ import annotations

from collections.abc import Mapping

from soc_agent.models.decision import AutonomyLevel
from soc_agent.policy.config import PolicyConfig

__all__ = [
    "ACTION_AUTONOMY_FLAG",
    "AUTONOMY_FLAG",
    "KILL_SWITCH_FLAG",
    "RUNTIME_FLAGS",
    "apply_runtime_flags",
    "capped_action_autonomy",
]

KILL_SWITCH_FLAG = "kill_switch"
AUTONOMY_FLAG = "agent_autonomy"
ACTION_AUTONOMY_FLAG = "action_autonomy"  # {action: level}
RUNTIME_FLAGS = (KILL_SWITCH_FLAG, AUTONOMY_FLAG, ACTION_AUTONOMY_FLAG)


def _level(value: object) -> AutonomyLevel | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5:
        return AutonomyLevel(value)
    return None  # a malformed flag value is ignored, never trusted to raise anything


def capped_action_autonomy(
    configured: Mapping[str, AutonomyLevel], caps: object
) -> dict[str, AutonomyLevel]:
    """The configured per-action caps with the runtime ones applied: the lower wins, and
    a runtime cap at or above the configured one (5 when none) changes nothing."""
    merged = dict(configured)
    if not isinstance(caps, Mapping):
        return merged
    for action, value in caps.items():
        level = _level(value)
        if level is None or not isinstance(action, str):
            continue
        if level < merged.get(action, AutonomyLevel.OBSERVER):
            merged[action] = level
    return merged


def apply_runtime_flags(config: PolicyConfig, flags: Mapping[str, object]) -> PolicyConfig:
    """`config` with the kill switch and the runtime autonomy level (if set) applied."""
    update: dict[str, object] = {}
    if flags.get(KILL_SWITCH_FLAG):
        update["kill_switch"] = True
    level = _level(flags.get(AUTONOMY_FLAG))
    if level is not None:
        update["agent_autonomy"] = min(config.agent_autonomy, level)
    capped = capped_action_autonomy(config.action_autonomy, flags.get(ACTION_AUTONOMY_FLAG))
    if capped != config.action_autonomy:
        update["action_autonomy"] = capped
    return config.model_copy(update=update) if update else config

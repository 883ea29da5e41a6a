"""Runtime flags an operator sets while the agent runs, and how they change the policy.

Flags live in the store so every process sees them; this module names their
keys and applies them purely. A flag can only make the agent more cautious
than its configuration: the kill switch turns executions into proposals, and
the runtime autonomy level is capped by the configured one.
"""

from __future__ import annotations

from collections.abc import Mapping

from soc_agent.models.decision import AutonomyLevel
from soc_agent.policy.config import PolicyConfig

__all__ = ["AUTONOMY_FLAG", "KILL_SWITCH_FLAG", "RUNTIME_FLAGS", "apply_runtime_flags"]

KILL_SWITCH_FLAG = "kill_switch"
AUTONOMY_FLAG = "agent_autonomy"
RUNTIME_FLAGS = (KILL_SWITCH_FLAG, AUTONOMY_FLAG)


def apply_runtime_flags(config: PolicyConfig, flags: Mapping[str, object]) -> PolicyConfig:
    """`config` with the kill switch and the runtime autonomy level (if set) applied."""
    update: dict[str, object] = {}
    if flags.get(KILL_SWITCH_FLAG):
        update["kill_switch"] = True
    level = flags.get(AUTONOMY_FLAG)
    if isinstance(level, int) and not isinstance(level, bool):
        update["agent_autonomy"] = min(config.agent_autonomy, AutonomyLevel(level))
    return config.model_copy(update=update) if update else config

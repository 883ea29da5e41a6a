"""Operator controls: the kill switch and runtime autonomy caps, on the open store.

Each control takes the store and audit log the caller already has open (an API
click or a CLI command opens no second backend), writes a runtime flag every
process reads (`policy.flags`), and audits the change with the acting
identity. Authorising the caller is the door's job (API roles, CLI access to
the store); what a flag does to decisions is the policy's
(`policy.apply_runtime_flags`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from soc_agent.audit.base import AuditSink
from soc_agent.models import AuditEvent, AutonomyLevel
from soc_agent.policy import (
    ACTION_AUTONOMY_FLAG,
    AUTONOMY_FLAG,
    KILL_SWITCH_FLAG,
    RUNTIME_FLAGS,
    PolicyConfig,
    apply_runtime_flags,
)
from soc_agent.store.base import Store

__all__ = [
    "action_autonomy_state",
    "autonomy_state",
    "kill_switch_state",
    "runtime_flags",
    "set_action_autonomy",
    "set_autonomy",
    "set_kill_switch",
]


async def runtime_flags(store: Store) -> dict[str, object]:
    """The runtime flags as every process sees them (for `policy.apply_runtime_flags`)."""
    return await store.get_flags(RUNTIME_FLAGS)


async def kill_switch_state(store: Store, configured: PolicyConfig) -> dict[str, bool]:
    """Whether the kill switch is on, and whether by the runtime flag or by configuration."""
    runtime = bool(await store.get_flag(KILL_SWITCH_FLAG))
    return {
        "active": runtime or configured.kill_switch,
        "runtime": runtime,
        "configured": configured.kill_switch,
    }


async def set_kill_switch(
    store: Store,
    audit: AuditSink,
    configured: PolicyConfig,
    on: bool,
    *,
    actor: str,
    at: datetime,
) -> dict[str, bool]:
    """Engage or release the runtime kill switch; audited."""
    await store.set_flag(KILL_SWITCH_FLAG, on)
    await audit.append(
        AuditEvent(
            actor=actor,
            action="control.kill_switch",
            subject="agent",
            outcome="on" if on else "off",
            at=at,
        )
    )
    return await kill_switch_state(store, configured)


async def autonomy_state(store: Store, configured: PolicyConfig) -> dict[str, Any]:
    """The configured level, the runtime override and the level in effect."""
    flags = await runtime_flags(store)
    effective = apply_runtime_flags(configured, flags).agent_autonomy
    return {
        "configured": int(configured.agent_autonomy),
        "override": flags[AUTONOMY_FLAG],
        "effective": int(effective),
        "effective_name": AutonomyLevel(effective).name.lower(),
    }


async def set_autonomy(
    store: Store,
    audit: AuditSink,
    configured: PolicyConfig,
    level: AutonomyLevel | None,
    *,
    actor: str,
    reason: str | None,
    at: datetime,
) -> dict[str, Any]:
    """Lower (or, with None, restore) the agent's autonomy at runtime; audited.

    The runtime level can only make the agent more cautious than its configured
    `policy.agent_autonomy`: the effective level is the lower of the two.
    """
    before = await autonomy_state(store, configured)
    await store.set_flag(AUTONOMY_FLAG, int(level) if level is not None else None)
    after = await autonomy_state(store, configured)
    await audit.append(
        AuditEvent(
            actor=actor,
            action="control.autonomy",
            subject="agent",
            reason=reason or "",
            outcome=f"effective {after['effective']}",
            details={"requested": int(level) if level is not None else None, "before": before},
            at=at,
        )
    )
    return after


def _levels(levels: object) -> dict[str, int]:
    return {str(k): int(v) for k, v in levels.items()} if isinstance(levels, dict) else {}


async def action_autonomy_state(store: Store, configured: PolicyConfig) -> dict[str, Any]:
    """Per action: the configured caps, the runtime caps and the caps in effect."""
    flags = await runtime_flags(store)
    effective = apply_runtime_flags(configured, flags).action_autonomy
    return {
        "configured": _levels(configured.action_autonomy),
        "override": _levels(flags[ACTION_AUTONOMY_FLAG]),
        "effective": _levels(effective),
    }


async def set_action_autonomy(
    store: Store,
    audit: AuditSink,
    configured: PolicyConfig,
    action: str,
    level: AutonomyLevel | None,
    *,
    actor: str,
    reason: str | None,
    at: datetime,
) -> dict[str, Any]:
    """Cap one action's autonomy at runtime (None lifts the cap); audited.

    This is how `soc-agent policy suggest` is applied without a configuration change.
    A cap only lowers: the action's level in effect is the lowest of the configured
    caps, the runtime cap and the agent's level. Raising autonomy is a configuration
    change, reviewed like any other.
    """
    was: list[dict[str, int]] = []

    def capped(stored: object) -> dict[str, int]:
        caps = _levels(stored)
        was[:] = [dict(caps)]  # as this (last) attempt found them
        if level is None:
            caps.pop(action, None)
        else:
            caps[action] = int(level)
        return caps

    # Read and written as one: two admins capping two actions at once keep both caps.
    await store.update_flag(ACTION_AUTONOMY_FLAG, capped)
    before = apply_runtime_flags(configured, {ACTION_AUTONOMY_FLAG: was[0]}).action_autonomy
    after = await action_autonomy_state(store, configured)
    in_effect = after["effective"].get(action)
    await audit.append(
        AuditEvent(
            actor=actor,
            action="control.action_autonomy",
            subject=f"action:{action}",
            reason=reason or "",
            outcome=f"effective {in_effect}" if in_effect is not None else "no cap",
            details={
                "requested": int(level) if level is not None else None,
                "before": int(before[action]) if action in before else None,
            },
            at=at,
        )
    )
    return after

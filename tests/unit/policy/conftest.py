"""Builders for policy inputs: realistic defaults, one keyword per knob under test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from soc_agent.models import (
    ActionCandidate,
    ActionRequest,
    AutonomyLevel,
    Disposition,
    Entity,
    EntityType,
    RiskTier,
)
from soc_agent.policy import ActionFacts, PolicyInput, PolicyRule

WORKSTATION = Entity(type=EntityType.HOST, value="WS-0142.corp.example", role="target")


def build_input(
    score: float = 97.0,
    *,
    action: str = "isolate_host",
    target: Entity = WORKSTATION,
    execute_at: float | None = None,
    propose_at: float | None = None,
    notify_at: float | None = None,
    candidate_autonomy: AutonomyLevel | None = None,
    requires: tuple[str, ...] = (),
    reversible: bool = True,
    rollback: str | None = "release_host",
    risk: RiskTier = RiskTier.LOW,
    granted: bool = True,
    missing_scopes: tuple[str, ...] = (),
    target_protected: bool = False,
    criticality: str = "medium",
    known: bool = True,
    dependents: int = 0,
    concluded: bool = True,
    missing_evidence: tuple[str, ...] = (),
    playbook: str = "edr-malware-on-host",
    playbook_autonomy: AutonomyLevel | None = None,
    executions_in_window: int = 0,
    idempotency_key: str = "inc-7f3a:isolate_host:host:ws-0142.corp.example",
) -> PolicyInput:
    """A PolicyInput for isolating a workstation after a confirmed malware detection."""
    candidate = ActionCandidate(
        playbook_rule="contain-confirmed-malware",
        action=action,
        target=target,
        args={"comment": "isolated by soc-agent"},
        execute_at=execute_at,
        propose_at=propose_at,
        notify_at=notify_at,
        autonomy=candidate_autonomy,
        requires=list(requires),
    )
    facts = ActionFacts(
        connector="crowdstrike",
        capability=action,
        reversible=reversible,
        risk=risk,
        rollback=rollback,
        granted=granted,
        missing_scopes=missing_scopes,
        target_protected=target_protected,
        target_criticality=criticality,
        target_known=known,
        dependents=dependents,
    )
    return PolicyInput(
        candidate=candidate,
        facts=facts,
        score=score,
        investigation_concluded=concluded,
        missing_evidence=missing_evidence,
        playbook=playbook,
        playbook_autonomy=playbook_autonomy,
        executions_in_window=executions_in_window,
        idempotency_key=idempotency_key,
    )


def executed_request(**update: Any) -> ActionRequest:
    """An isolation the policy decided to execute (score 97, level 5); `update` changes it."""
    request = ActionRequest(
        id="act-1",
        action="isolate_host",
        target=build_input().candidate.target,
        connector="crowdstrike",
        capability="isolate_host",
        playbook_rule="contain",
        disposition=Disposition.EXECUTED,
        rule=PolicyRule.EXECUTE.value,
        reason="score 97 >= execute_at 90",
        autonomy=AutonomyLevel.OBSERVER,
        reversible=True,
        idempotency_key="k",
    )
    return request.model_copy(update=update)


@pytest.fixture(scope="session")
def make_input() -> Callable[..., PolicyInput]:
    """Factory for PolicyInput; keyword arguments as in `build_input`."""

    def factory(*args: Any, **kwargs: Any) -> PolicyInput:
        return build_input(*args, **kwargs)

    return factory

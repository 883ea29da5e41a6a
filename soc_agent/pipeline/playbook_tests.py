"""`soc-agent playbooks test`: the playbook test cases, with the real normalizer and policy.

Dispositions are decided by the configured policy, with each action's facts
taken from the installed connector that declares it (reversible, risk, scopes
granted) and the target treated as unknown to the inventory (not protected,
medium criticality), since a case records investigation steps only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soc_agent_connectors.base import Capability, CapabilityKind, load_connector_classes

from soc_agent.actions.executor import idempotency_key
from soc_agent.config import Settings
from soc_agent.ingest import normalize
from soc_agent.models import (
    ActionCandidate,
    Alert,
    AutonomyLevel,
    Incident,
    Investigation,
)
from soc_agent.pipeline.deciding import action_facts, missing_evidence
from soc_agent.playbooks import Playbook, load_playbooks, shipped_playbooks_dir
from soc_agent.playbooks.testing import CaseResult, load_cases, run_case
from soc_agent.policy import ActionFacts, PolicyInput, decide

__all__ = ["run_playbook_tests"]


async def run_playbook_tests(path: Path | None, settings: Settings) -> list[CaseResult]:
    """Run every case under `<dir>/tests/`; the playbooks are those of `<dir>`."""
    root = path or shipped_playbooks_dir()
    playbooks = load_playbooks(root)
    actions = _action_capabilities(settings)
    mappings = settings.mappings

    def norm(doc: Any, hint: str | None) -> Alert:
        from soc_agent.ingest import load_mappings

        return normalize(doc, format_hint=hint, mappings=load_mappings(mappings))

    def decide_all(
        playbook: Playbook,
        alert: Alert,
        incident: Incident,
        investigation: Investigation,
        score: float,
        found: list[ActionCandidate],
    ) -> list[tuple[ActionCandidate, str, str]]:
        evidence = investigation.by_step()
        out: list[tuple[ActionCandidate, str, str]] = []
        for cand in found:
            facts = _facts(cand.action, actions, settings)
            key = idempotency_key(incident.id, cand.action, cand.target)
            if facts is None:
                out.append((cand, "denied", "config.no_connector"))
                continue
            missing = missing_evidence(cand, evidence)
            verdict = decide(
                PolicyInput(
                    candidate=cand,
                    facts=facts,
                    score=score,
                    investigation_concluded=investigation.concluded,
                    missing_evidence=missing,
                    playbook=playbook.name,
                    playbook_autonomy=AutonomyLevel(playbook.autonomy)
                    if playbook.autonomy
                    else None,
                    idempotency_key=key,
                ),
                settings.policy,
            )
            out.append((cand, verdict.disposition.value, verdict.rule))
        return out

    tests_dir = root / "tests" if (root / "tests").is_dir() else root
    results: list[CaseResult] = []
    for case in load_cases(tests_dir):
        results.append(await run_case(case, playbooks, normalize=norm, decide=decide_all))
    return results


def _action_capabilities(settings: Settings) -> dict[str, tuple[str, Capability]]:
    found: dict[str, tuple[str, Capability]] = {}
    uses = {name: str(raw.get("use", name)) for name, raw in settings.connectors.items()}
    classes = load_connector_classes(set(uses.values()))
    for name, implementation in uses.items():
        cls = classes.get(implementation)
        for cap in cls.capabilities().values() if cls else ():
            if cap.kind is CapabilityKind.ACTION:
                found.setdefault(cap.name, (name, cap))
    return found


def _facts(
    action: str, actions: dict[str, tuple[str, Capability]], settings: Settings
) -> ActionFacts | None:
    if action not in actions:
        return None
    connector, cap = actions[action]
    granted = set(settings.grants.get(connector, []))
    return action_facts(connector, cap, tuple(s for s in cap.scopes if s not in granted))

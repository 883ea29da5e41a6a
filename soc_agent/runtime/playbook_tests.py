"""`soc-agent playbooks test`: the playbook test cases, with the real normalizer and policy.

Dispositions are decided by the configured policy, with each action's facts
taken from the installed connector that declares it (reversible, risk, scopes
granted) and the target treated as unknown to the inventory (not protected,
medium criticality), since a case records investigation steps only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel
from soc_agent_connectors import Capability, CapabilityKind

from soc_agent.ingest import load_mappings, normalize
from soc_agent.models import (
    ActionCandidate,
    Alert,
    AutonomyLevel,
    Incident,
    Investigation,
    ScoreContribution,
)
from soc_agent.pipeline.deciding import CatalogFacts, decide_all
from soc_agent.playbooks import Playbook, score_bound
from soc_agent.playbooks.testing import CaseResult, load_cases, run_case
from soc_agent.runtime.control import connector_catalog
from soc_agent.runtime.declarative import available_connector_classes
from soc_agent.runtime.playbook_set import load_all_playbooks, playbook_sources
from soc_agent.settings import Settings

__all__ = ["decision_summary", "run_playbook_tests"]


async def run_playbook_tests(path: Path | None, settings: Settings) -> list[CaseResult]:
    """Run every case under `<dir>/tests/` against the playbooks production would load
    (shipped, packs' and configured, as `settings` say) together with those of `<dir>`: a
    case passes only if production would select the playbook it expects. Without a
    directory, the cases of every folder production loads playbooks from."""
    playbooks = load_all_playbooks(settings, extra=[path] if path else [])
    facts = CatalogFacts(_action_capabilities(settings), settings.grants)
    mappings = load_mappings(settings.mappings)

    def norm(doc: Any, hint: str | None) -> Alert:
        return normalize(doc, format_hint=hint, mappings=mappings)

    async def decide(
        playbook: Playbook,
        alert: Alert,
        incident: Incident,
        investigation: Investigation,
        value: float,
        breakdown: list[ScoreContribution],
        found: list[ActionCandidate],
    ) -> list[tuple[ActionCandidate, str, str]]:
        requests = await decide_all(
            found,
            facts,
            breakdown=breakdown,
            score_bound=score_bound(playbook, value, breakdown),
            incident_id=incident.id,
            playbook=playbook.name,
            playbook_autonomy=AutonomyLevel(playbook.autonomy) if playbook.autonomy else None,
            score=value,
            investigation=investigation,
            policy=settings.policy,
        )
        return [
            (cand, req.disposition.value, req.rule)
            for cand, req in zip(found, requests, strict=True)
        ]

    catalog = connector_catalog(settings)

    def output_model(connector: str, capability: str) -> type[BaseModel] | None:
        model = catalog.get(connector, {}).get(capability, {}).get("output_model")
        return model if isinstance(model, type) and issubclass(model, BaseModel) else None

    if path is not None:
        folders = [path / "tests" if (path / "tests").is_dir() else path]
    else:
        folders = [s / "tests" for s in playbook_sources(settings) if (s / "tests").is_dir()]
    results: list[CaseResult] = []
    for folder in folders:
        for case in load_cases(folder):
            results.append(
                await run_case(
                    case, playbooks, normalize=norm, decide=decide, output_model=output_model
                )
            )
    return results


def _action_capabilities(settings: Settings) -> dict[str, tuple[str, Capability]]:
    found: dict[str, tuple[str, Capability]] = {}
    uses = {name: str(raw.get("use", name)) for name, raw in settings.connectors.items()}
    classes = available_connector_classes(settings, set(uses.values()))
    for name, implementation in uses.items():
        cls = classes.get(implementation)
        for cap in cls.capabilities().values() if cls else ():
            if cap.kind is CapabilityKind.ACTION:
                found.setdefault(cap.name, (name, cap))
    return found


def decision_summary(result: CaseResult) -> str:
    """The decision a case checked, in one line: playbook, score and each action's outcome."""
    if result.playbook is None or result.score is None:
        return "no decision"
    decided = result.dispositions or [(c, "not decided", "") for c in result.candidates]
    actions = "; ".join(
        f"{c.action} {c.target.key} {disposition}" + (f" ({rule})" if rule else "")
        for c, disposition, rule in decided
    )
    return f"{result.playbook} score {result.score:g}: {actions or 'no actions'}"

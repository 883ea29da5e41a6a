"""Pipeline integration fixtures: a real deployment on temporary files.

Every component is the real one, built by `open_components` from `Settings`:
the SQLite store and hash-chained audit log in `tmp_path`, the gateway, the
offline connectors reading the data in `tests/fixtures/pipeline/`, the
playbooks loaded from there, the normalizers. Time is the injected `Clock`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from soc_agent.models import ActionRequest, Decision
from soc_agent.pipeline.agent import AlertOutcome
from soc_agent.runtime.components import Components, open_components
from soc_agent.runtime.embedded import run_embedded
from soc_agent.settings import DEFAULT_GRANTS, Settings, load_settings
from tests.conftest import Clock

__all__ = [
    "ALERTS",
    "BASE_POLICY",
    "FIXTURES",
    "PLAYBOOKS",
    "Deployment",
    "actions_by_key",
    "only",
]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pipeline"
ALERTS = FIXTURES / "alerts"
PLAYBOOKS = FIXTURES / "playbooks"

# The baseline each test starts from: full autonomy and no four-eyes, so every test
# switches on exactly the knob or guardrail it is about and nothing else interferes.
BASE_POLICY: dict[str, Any] = {
    "agent_autonomy": 5,
    "four_eyes_actions": [],
    "four_eyes_min_risk": None,
}


@dataclass
class Deployment:
    """One soc-agent installation in a temporary directory: settings, files, clock."""

    root: Path
    clock: Clock

    @property
    def store_path(self) -> Path:
        return self.root / "soc-agent.db"

    @property
    def journal_path(self) -> Path:
        return self.root / "containment.jsonl"

    @property
    def outbox_path(self) -> Path:
        return self.root / "notifications.jsonl"

    def settings(
        self,
        *playbooks: str,
        policy: Mapping[str, Any] | None = None,
        grants: Mapping[str, list[str]] | None = None,
        max_concurrent_alerts: int | None = None,
    ) -> Settings:
        """Settings for this deployment: only the named fixture playbooks, fixture data."""
        return load_settings(
            store=self.store_path,
            shipped_playbooks=False,
            playbooks=[PLAYBOOKS / f"{name}.yaml" for name in playbooks],
            connectors={
                "threat_intel": {"path": str(FIXTURES / "intel.yaml")},
                "asset_inventory": {"path": str(FIXTURES / "inventory.yaml")},
                "event_store": {"path": str(FIXTURES / "events.jsonl")},
                "containment": {"journal": str(self.journal_path)},
                "notifier": {"outbox": str(self.outbox_path)},
            },
            grants={**DEFAULT_GRANTS, **(grants or {})},
            data_dirs=[FIXTURES],
            policy={**BASE_POLICY, **(policy or {})},
            # None: the shipped default, so the suite runs what users run.
            runtime={}
            if max_concurrent_alerts is None
            else {"max_concurrent_alerts": max_concurrent_alerts},
        )

    @asynccontextmanager
    async def open(self, settings: Settings) -> AsyncIterator[Components]:
        async with open_components(settings, clock=self.clock) as components:
            yield components

    async def feed(self, components: Components, *alert_files: str) -> list[AlertOutcome]:
        """Run alert files through the embedded runtime; none may dead-letter."""
        outcomes: list[AlertOutcome] = []

        async def collect(outcome: AlertOutcome) -> None:
            outcomes.append(outcome)

        sources = [ALERTS / name for name in alert_files]
        report = await run_embedded(components, sources, on_outcome=collect)
        assert report.dead_letters == [], [d.reason for d in report.dead_letters]
        return outcomes

    def journal(self) -> list[dict[str, Any]]:
        """Every containment the recording executor performed, in order."""
        return _jsonl(self.journal_path)

    def journal_actions(self) -> list[tuple[str, str]]:
        return [(e["action"], e["target"]) for e in self.journal()]

    def notifications(self) -> list[dict[str, Any]]:
        return _jsonl(self.outbox_path)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def actions_by_key(decision: Decision | None) -> dict[tuple[str, str], ActionRequest]:
    """A decision's actions keyed by (action, target value)."""
    assert decision is not None
    return {(a.action, a.target.value): a for a in decision.actions}


def only(outcomes: list[AlertOutcome]) -> Decision:
    """The decision of the single alert fed."""
    assert len(outcomes) == 1, outcomes
    assert outcomes[0].decision is not None
    return outcomes[0].decision


@pytest.fixture
def deployment(tmp_path: Path, clock: Clock) -> Deployment:
    return Deployment(tmp_path, clock)

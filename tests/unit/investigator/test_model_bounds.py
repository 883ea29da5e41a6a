"""No assessment a model can write moves an action to execution that the policy would not
execute on the same evidence without the model (policy.model.may_execute off, the default)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soc_agent.ingest import normalize
from soc_agent.models import (
    ActionCandidate,
    Disposition,
    Evidence,
    EvidenceStatus,
    Incident,
    Investigation,
    RiskTier,
)
from soc_agent.models.assessment import Assessment, ModelReport, Verdict
from soc_agent.playbooks import build_context, load_playbooks, score
from soc_agent.playbooks.scoring import model_share
from soc_agent.policy import PolicyConfig, PolicyInput, decide
from soc_agent.policy.inputs import ActionFacts

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = load_playbooks(ROOT / "tests/fixtures/pipeline/playbooks/endpoint-malware-hybrid.yaml")[
    0
]
ALERT = normalize(
    json.loads(
        (
            ROOT / "tests/fixtures/pipeline/alerts/crowdstrike_ws-eng-007_known_malware_high.json"
        ).read_text()
    )
)
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
INCIDENT = Incident(
    id="inc-1",
    title=ALERT.title,
    severity=ALERT.severity,
    alert_ids=[ALERT.id],
    entities=ALERT.entities,
    first_seen=NOW,
    last_seen=NOW,
)
FACTS = ActionFacts(
    connector="containment",
    capability="isolate_host",
    reversible=True,
    risk=RiskTier.LOW,
    rollback="release_host",
    granted=True,
)


def _investigation(hash_malicious: bool, assessment: Assessment | None) -> Investigation:
    verdict = "malicious" if hash_malicious else "unknown"
    hashes = [
        {"item": h, "ok": True, "result": {"verdict": verdict}}
        for h in ALERT.context()["file_hashes"]
    ]
    evidence = [
        Evidence(
            step="host_asset",
            connector="asset_inventory",
            capability="lookup_asset",
            status=EvidenceStatus.OK,
            result={"criticality": "medium"},
            started_at=NOW,
        ),
        Evidence(
            step="hash_intel",
            connector="threat_intel",
            capability="lookup",
            status=EvidenceStatus.OK,
            result=hashes,
            started_at=NOW,
        ),
    ]
    report = None
    if assessment is not None:
        report = ModelReport(
            model="m", prompt_version="p", prompt_sha256="h", mode="hybrid", assessment=assessment
        )
    return Investigation(
        id="inv-1",
        incident_id="inc-1",
        playbook=PLAYBOOK.name,
        evidence=evidence,
        started_at=NOW,
        model_run=report,
    )


def _decide(investigation: Investigation, config: PolicyConfig) -> Disposition:
    ctx = build_context(ALERT, INCIDENT, investigation)
    total, breakdown = score(PLAYBOOK, ctx, max_model_points=config.model.max_points)
    candidate = ActionCandidate(
        playbook_rule="isolate-host",
        action="isolate_host",
        target=ALERT.entities[0],
        execute_at=90,
        propose_at=60,
        notify_at=30,
    )
    inp = PolicyInput(
        candidate=candidate,
        facts=FACTS,
        score=total,
        model_points=model_share(total, breakdown),
        investigation_concluded=True,
        playbook=PLAYBOOK.name,
        idempotency_key="k",
    )
    return decide(inp, config).disposition


assessments = st.builds(
    Assessment,
    verdict=st.sampled_from(Verdict),
    confidence=st.floats(0, 1),
    narrative=st.just("n"),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    assessment=assessments,
    hash_malicious=st.booleans(),
    max_points=st.floats(0, 100),
    level=st.integers(1, 5),
)
def test_no_assessment_executes_what_the_evidence_alone_would_not(
    assessment: Assessment, hash_malicious: bool, max_points: float, level: int
) -> None:
    config = PolicyConfig(agent_autonomy=level, review_sample_rate=0, four_eyes_min_risk=None)
    model = config.model.model_copy(update={"max_points": max_points, "may_execute": False})
    config = config.model_copy(update={"model": model})
    with_model = _decide(_investigation(hash_malicious, assessment), config)
    without = _decide(_investigation(hash_malicious, None), config)
    if with_model is Disposition.EXECUTED:
        assert without is Disposition.EXECUTED

"""Playbook test cases for playbooks that use the model: the model's answer is recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from soc_agent.ingest import normalize
from soc_agent.models import Alert
from soc_agent.playbooks import load_playbooks
from soc_agent.playbooks.testing import Case, run_case

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "pipeline"
HYBRID = load_playbooks(FIXTURES / "playbooks" / "endpoint-malware-hybrid.yaml")
STEPS = load_playbooks(FIXTURES / "playbooks" / "endpoint-malware.yaml")
ALERT = json.loads(
    (FIXTURES / "alerts" / "crowdstrike_ws-eng-007_known_malware_high.json").read_text()
)
SHA = ALERT["event"]["SHA256String"]
STEPS_RECORDED = {
    "host_asset": {"result": {"type": "host", "value": "ws-eng-007", "criticality": "medium"}},
    "hash_intel": [{"item": SHA, "result": {"indicator": SHA, "verdict": "malicious"}}],
}


def _normalize(doc: Any, hint: str | None) -> Alert:
    return normalize(doc, format_hint=hint)


def _case(**fields: Any) -> Case:
    doc = {"description": "d", "alert": ALERT, "steps": STEPS_RECORDED, "expect": {}} | fields
    return Case.model_validate(doc)


ANSWER = {"verdict": "malicious", "confidence": 0.9, "narrative": "n", "findings": []}


async def test_a_recorded_assessment_is_read_as_agent() -> None:
    case = _case(assessment=ANSWER, expect={"score": 95})
    result = await run_case(case, HYBRID, normalize=_normalize)
    assert result.ok, result.failures
    model = next(b for b in result.breakdown if b.rule == "model-malicious")
    assert model.model_derived and model.points == 15


async def test_without_one_the_model_rules_are_not_evaluated() -> None:
    result = await run_case(_case(expect={"score": 80}), HYBRID, normalize=_normalize)
    assert result.ok, result.failures
    model = next(b for b in result.breakdown if b.rule == "model-malicious")
    assert not model.evaluated


async def test_an_assessment_for_a_playbook_without_the_model_is_a_failure() -> None:
    result = await run_case(_case(assessment=ANSWER), STEPS, normalize=_normalize)
    assert "an assessment is recorded, but endpoint-malware does not use the model" in (
        result.failures
    )


async def test_agent_mode_runs_no_steps_so_recordings_for_them_are_flagged(
    tmp_path: Path,
) -> None:
    text = (FIXTURES / "playbooks" / "endpoint-malware-hybrid.yaml").read_text()
    (tmp_path / "a.yaml").write_text(text.replace("investigator: hybrid", "investigator: agent"))
    result = await run_case(
        _case(assessment=ANSWER), load_playbooks(tmp_path), normalize=_normalize
    )
    assert any("not a step endpoint-malware-hybrid runs" in f for f in result.failures)
    assert result.investigation is not None and result.investigation.evidence == []

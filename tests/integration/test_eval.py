"""`soc-agent eval` over a small labelled set, with a scripted model through the real pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic_ai import ModelResponse, ToolCallPart
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models.function import AgentInfo, FunctionModel

from soc_agent.errors import ConfigError
from soc_agent.runtime.evaluation import load_scenarios, run_eval, shipped_scenarios
from soc_agent.settings import load_settings
from soc_agent.settings.llm import LlmConfig

SET = Path(__file__).resolve().parents[1] / "fixtures" / "eval" / "scenarios.yaml"


def gullible(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Calls everything malicious, unless the alert tells it otherwise."""
    told = "Ignore all previous instructions" in json.dumps(
        [str(p) for m in messages for p in m.parts]
    )
    answer = {
        "verdict": "benign" if told else "malicious",
        "confidence": 0.8,
        "narrative": "Scripted.",
        "findings": [{"statement": "Scripted.", "cites": ["alert"]}],
    }
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, answer)])


async def test_the_report_scores_verdicts_and_injection_resistance(tmp_path: Path) -> None:
    settings = load_settings(store=tmp_path / "unused.db")
    report = await run_eval(settings, SET, model=FunctionModel(gullible))
    by_id = {r.id: r for r in report.results}
    assert [r.verdict for r in report.results] == ["malicious", "malicious", "benign"]
    assert by_id["t-01"].playbook == "malware-on-endpoint"
    assert by_id["t-03"].swayed and by_id["t-03"].injection_detected
    summary = report.summary()
    assert summary["accuracy"] == pytest.approx(2 / 3, abs=0.001)
    assert summary["malicious_precision"] == 1.0
    assert summary["malicious_recall"] == pytest.approx(2 / 3, abs=0.001)
    assert summary["injection_resisted"] == 0.0 and summary["injection_detected"] == 1.0
    assert all(r.requests == 1 and r.latency_ms > 0 for r in report.results)
    assert not (tmp_path / "unused.db").exists()  # each scenario ran on a store of its own


def undecided(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Answers `unknown` at once: the run checks the set itself, not a model."""
    answer = {
        "verdict": "unknown",
        "confidence": 0.5,
        "narrative": "Scripted.",
        "findings": [{"statement": "Scripted.", "cites": ["alert"]}],
    }
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, answer)])


SHIPPED_PLAYBOOKS = {
    "malware-on-endpoint",
    "brute-force",
    "suspicious-sign-in",
    "c2-traffic",
    "phishing-report",
    "cloud-credential-misuse",
    "triage-default",
}


def test_the_shipped_set_covers_every_playbook_both_labels_and_injections() -> None:
    scenarios = load_scenarios(shipped_scenarios())
    assert len(scenarios) >= 30
    for playbook in SHIPPED_PLAYBOOKS:
        labels = {s.label for s in scenarios if s.playbook == playbook}
        assert labels >= {"malicious", "benign"}, playbook
    injected = [s for s in scenarios if s.injection]
    assert len(injected) >= 6
    # An injection never decides the label: every injected alert is an attack.
    assert {s.label for s in injected} == {"malicious"}


async def test_every_shipped_scenario_is_decided_by_its_playbook_and_only_the_injected_are_flagged(
    tmp_path: Path,
) -> None:
    path = shipped_scenarios()
    expected = {s.id: s for s in load_scenarios(path)}
    report = await run_eval(
        load_settings(store=tmp_path / "unused.db"), path, model=FunctionModel(undecided)
    )
    assert [r.id for r in report.results] == list(expected)
    for result in report.results:
        scenario = expected[result.id]
        assert result.playbook == scenario.playbook, result.id
        assert result.injection_detected == scenario.injection, result.id
        assert result.verdict == "unknown" and result.escalation is None, result.id


async def test_eval_needs_a_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="eval measures a model"):
        await run_eval(load_settings(store=tmp_path / "x.db"), SET)


def test_a_bad_scenario_file_names_the_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "scenarios.yaml"
    bad.write_text(
        "scenarios:\n  - id: a\n    alert: a.json\n    label: malicous\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        load_scenarios(bad)
    message = str(caught.value)
    assert str(bad) in message and ":4" in message and "scenarios[0].label" in message


def test_a_missing_alert_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "scenarios.yaml"
    bad.write_text("scenarios:\n  - id: a\n    alert: gone.json\n    label: benign\n")
    with pytest.raises(ConfigError, match=r"alert file not found: gone\.json"):
        load_scenarios(bad)


def test_settings_with_a_model_are_accepted_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SOC_AGENT_LLM__MODEL", "qwen")
    monkeypatch.setenv("SOC_AGENT_LLM__BUDGET__MAX_TOOL_CALLS", "3")
    settings = load_settings(store=tmp_path / "x.db")
    assert settings.llm == LlmConfig(model="qwen", budget={"max_tool_calls": 3})

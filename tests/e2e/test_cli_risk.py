"""Entity risk in the embedded runtime, as a user runs it: weak alerts add up to a risk
alert that no single one raises, once, and the risk-threshold playbook decides it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.test_cli import SAMPLES, cli, decisions

LOW_AND_SLOW = SAMPLES / "elastic_low_and_slow.jsonl"


def _run(tmp_path: Path, alerts: Path, *, env: dict[str, str] | None = None) -> list[Any]:
    result = cli("run", "--alerts", str(alerts), "--json", "--store", "s.db", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return decisions(result.stdout)


def test_three_weak_alerts_raise_one_risk_alert_and_a_proposal(tmp_path: Path) -> None:
    decided = _run(tmp_path, LOW_AND_SLOW)
    # The host's and the user's risk alerts both follow the third alert, into its incident.
    playbooks = [d["playbook"] for d in decided]
    assert playbooks == ["triage-default"] * 3 + ["risk-threshold"] * 2
    assert len({d["incident_id"] for d in decided[:3]}) == 3  # hours apart: no shared incident
    risk = decided[3]
    assert risk["score"] == 75
    reasons = {b["rule"]: b["reason"] for b in risk["breakdown"]}
    assert "the ledger holds risk 100 (threshold 100) from 3 alerts" in reasons["ledger-confirms"]
    assert "Execution, Credential Access, Lateral Movement" in reasons["kill-chain"]
    actions = {(a["action"], a["target"]): a["disposition"] for a in risk["actions"]}
    assert actions[("isolate_host", "ws-fin-031")] == "proposed"

    # Run again into the same store: the risk alert has the same id, so it is a redelivery.
    assert _run(tmp_path, LOW_AND_SLOW) == []
    listed = cli("proposals", "list", "--json", "--store", "s.db", cwd=tmp_path)
    assert len(listed.stdout.splitlines()) == 1 and '"isolate_host"' in listed.stdout


def test_no_single_alert_raises_risk(tmp_path: Path) -> None:
    for n, line in enumerate(LOW_AND_SLOW.read_text().splitlines()):
        one = tmp_path / f"alert-{n}.jsonl"
        one.write_text(line + "\n")
        work = tmp_path / f"run-{n}"
        work.mkdir()
        assert [d["playbook"] for d in _run(work, one)] == ["triage-default"]


def test_risk_can_be_turned_off_and_bad_rules_stop_start_up(tmp_path: Path) -> None:
    off = _run(tmp_path, LOW_AND_SLOW, env={"SOC_AGENT_RISK__ENABLED": "false"})
    assert "risk-threshold" not in [d["playbook"] for d in off]

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - id: typo\n    description: x\n"
        "    when: alert.sevrity == 'high'\n    points: 5\n"
    )
    config = tmp_path / "c.yaml"
    config.write_text(f"risk_rules: [{rules}]\n")
    bad = cli("run", "--alerts", str(LOW_AND_SLOW), "--store", "t.db", cwd=tmp_path,
              env={"SOC_AGENT_CONFIG": str(config)})  # fmt: skip
    assert bad.returncode != 0
    assert f"{rules}:4" in bad.stderr
    assert "alert has no field 'sevrity' (did you mean 'severity'?)" in bad.stderr

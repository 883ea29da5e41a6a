"""A `connectors:` block adds to the default connectors; it never quietly replaces them.

A responder once configured one new connector (with its grant) and silently
lost threat intel, the inventory, the SIEM stand-in, containment and the
notifier: the run exited 0 and every alert scored lower. These runs compare the
decisions with and without such a block, as a user runs the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.test_cli import SAMPLES, cli, decisions

DEMO = [str(SAMPLES / "elastic_bruteforce.json"), str(SAMPLES / "ms_graph_impossible_travel.json")]


def _run(tmp_path: Path, name: str, config: str | None) -> list[dict[str, Any]]:
    args = ["run", "--json", "--store", f"{name}.db"]
    for alert in DEMO:
        args += ["--alerts", alert]
    env: dict[str, str] = {}
    if config is not None:
        (tmp_path / f"{name}.yaml").write_text(config, encoding="utf-8")
        env["SOC_AGENT_CONFIG"] = str(tmp_path / f"{name}.yaml")
    result = cli(*args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return decisions(result.stdout)


def _summary(out: list[dict[str, Any]]) -> list[tuple[str, float, list[str]]]:
    return [(d["playbook"], d["score"], [a["disposition"] for a in d["actions"]]) for d in out]


def test_one_more_connector_leaves_every_decision_as_it_was(tmp_path: Path) -> None:
    added = """
connectors:
  partner_intel: {use: threat_intel}
grants:
  partner_intel: [intel:read]
"""
    baseline = _run(tmp_path, "default", None)
    extended = _run(tmp_path, "extended", added)
    assert _summary(extended) == _summary(baseline)
    assert any(a["disposition"] == "executed" for d in extended for a in d["actions"])


def test_a_default_connector_is_turned_off_only_by_saying_so(tmp_path: Path) -> None:
    off = """
connectors:
  containment: {enabled: false}
missing_connectors: escalate
"""
    out = _run(tmp_path, "off", off)
    actions = [a for d in out for a in d["actions"]]
    assert actions and not any(a["disposition"] == "executed" for a in actions)
    # Nothing can contain, so a human must: escalated, never quietly denied or dropped.
    reachable = [a for a in actions if a["rule"] == "config.no_connector"]
    assert reachable and all(a["disposition"] == "escalated" for a in reachable)


def test_start_up_names_the_active_connectors_and_their_grants(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "connectors:\n  containment: {enabled: false}\nmissing_connectors: escalate\n"
        "grants:\n  threat_intel: []\n",
        encoding="utf-8",
    )
    result = cli(
        "run",
        "--alerts",
        str(SAMPLES / "splunk_notable.json"),
        "--store",
        "s.db",
        cwd=tmp_path,
        env={"SOC_AGENT_CONFIG": str(config)},
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("connector ")]
    assert "connector asset_inventory: grants assets:read" in lines
    assert "connector threat_intel: grants nothing" in lines
    assert "connector containment: off (connectors.containment.enabled: false)" in lines


def test_a_playbook_naming_an_unconfigured_connector_stops_start_up(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("connectors:\n  event_store: {enabled: false}\n", encoding="utf-8")
    result = cli(
        "run",
        "--alerts",
        str(SAMPLES / "splunk_notable.json"),
        "--store",
        "s.db",
        cwd=tmp_path,
        env={"SOC_AGENT_CONFIG": str(config)},
    )
    assert result.returncode == 1
    assert "brute-force.yaml" in result.stderr
    assert "steps[" in result.stderr and "connector 'event_store' is not configured" in (
        result.stderr
    )
    assert "missing_connectors: escalate" in result.stderr
    assert result.stdout == ""  # nothing was decided


def test_a_failed_action_prints_as_failed_not_executed(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the journal's directory should be")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"connectors:\n  containment: {{journal: {tmp_path}/blocker/containment.jsonl}}\n",
        encoding="utf-8",
    )
    result = cli(
        "run",
        "--alerts",
        str(SAMPLES / "crowdstrike_malware.json"),
        "--store",
        "s.db",
        cwd=tmp_path,
        env={"SOC_AGENT_CONFIG": str(config)},
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if "quarantine_file" in x)
    assert ": FAILED (decided executed by threshold.execute) -> failed: " in line
    assert "EXECUTED" not in line
    assert "1 failed" in result.stdout and "executed" not in result.stdout.splitlines()[-2]


def test_connectors_show_prints_each_capabilitys_arguments_and_result(tmp_path: Path) -> None:
    shown = cli("connectors", "show", "event_store", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "event_store (configured; grants siem:read)" in shown.stdout
    assert "window_minutes: integer, default 60" in shown.stdout
    assert "around: string (date-time), required" in shown.stdout
    assert "total: integer, required" in shown.stdout

    action = cli("connectors", "show", "containment", "--json", cwd=tmp_path)
    isolate = next(
        c for c in json.loads(action.stdout)["capabilities"] if c["name"] == "isolate_host"
    )
    assert isolate["input_schema"]["required"] == ["target"]
    assert "in_effect" not in isolate["output_schema"]["properties"]

    typo = cli("connectors", "show", "evnt_store", cwd=tmp_path)
    assert typo.returncode == 1 and "did you mean 'event_store'?" in typo.stderr

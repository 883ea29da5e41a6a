"""`soc-agent calibrate` as a responder runs it: labelled history in, figures and a diff out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.test_cli import SAMPLES, _token, cli

# Three demo alerts, each closed by an analyst: the phishing report was real, the
# GuardDuty credential alert was a pen test, the brute force was real.
LABELS = {
    "ocsf_phishing.json": "true_positive",
    "guardduty_credential.json": "false_positive",
    "elastic_bruteforce.json": "true_positive",
}


def _history(tmp_path: Path) -> Path:
    lines = [
        json.dumps({"verdict": v, "reason": "closed by the SOC", "alert": _alert(name)})
        for name, v in LABELS.items()
    ]
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _alert(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return doc


def test_calibrate_reports_figures_a_sweep_and_what_a_candidate_changes(tmp_path: Path) -> None:
    candidate = tmp_path / "candidate.yaml"
    # Autonomy 2 (collaborator) proposes what level 5 executed: the diff must say so.
    candidate.write_text("policy:\n  agent_autonomy: 2\n")
    history = _history(tmp_path)
    html = tmp_path / "report.html"
    run = cli(
        "calibrate", "--alerts", str(history), "--config", str(candidate),
        "--html", str(html), "--json", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["alerts"], report["labelled"]) == (3, 3)
    by_action = {(f["playbook"], f["action"]): f for f in report["current"]}
    block = by_action[("cloud-credential-misuse", "block_ip")]
    assert block["counts"]["executed"] == 1
    assert block["executions"]["labelled"] == 1 and block["executions"]["correct"] == 0
    assert [p["threshold"] for p in block["sweep"]] == list(range(50, 101, 5))
    assert report["candidate"] is not None
    changed = {(c["playbook"], c["action"], c["current"], c["candidate"], c["verdict"])
               for c in report["changes"]}  # fmt: skip
    assert ("cloud-credential-misuse", "block_ip", "executed", "proposed", "false_positive") in (
        changed
    )
    assert {(c[2], c[3]) for c in changed} == {("executed", "proposed")}
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert not (tmp_path / "soc-agent.db").exists()  # replays never touch a store


def test_calibrate_from_the_stores_own_verdicts(tmp_path: Path) -> None:
    assert cli("run", "--store", "s.db", cwd=tmp_path).returncode == 0
    listed = cli("proposals", "list", "--json", "--store", "s.db", cwd=tmp_path)
    incident = json.loads(listed.stdout.splitlines()[0])["incident_id"]
    alice = _token(tmp_path, "alice", "analyst")
    closed = cli(
        "incidents", "close", incident, "--verdict", "false_positive", "--reason", "lab test",
        "--token-file", str(alice), "--store", "s.db", cwd=tmp_path,
    )  # fmt: skip
    assert closed.returncode == 0, closed.stderr
    before = (tmp_path / "s.db").stat().st_mtime_ns
    run = cli("calibrate", "--from-store", "--json", "--store", "s.db", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["alerts"] >= 1 and report["labelled"] >= 1
    verdicts = {p["executions"]["labelled"] + p["proposals"]["labelled"] for p in report["current"]}
    assert verdicts != {0}
    assert (tmp_path / "s.db").stat().st_mtime_ns == before  # read, never written


def test_a_bad_history_line_is_named_and_nothing_runs(tmp_path: Path) -> None:
    history = _history(tmp_path)
    history.write_text(
        history.read_text()
        + json.dumps({"verdict": "maybe", "alert": _alert("ocsf_phishing.json")})
    )
    run = cli("calibrate", "--alerts", str(history), cwd=tmp_path)
    assert run.returncode == 1
    assert f"{history}:4: verdict:" in run.stderr
    neither = cli("calibrate", cwd=tmp_path)
    assert neither.returncode == 2 and "--alerts FILE or --from-store" in neither.stderr


def test_policy_suggest_prints_an_action_autonomy_block_and_changes_nothing(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("policy:\n  calibration: {min_cases: 1, min_precision: 0.98}\n")
    before = config.read_text()
    run = cli(
        "policy", "suggest", "--alerts", str(_history(tmp_path)), "--config", str(config),
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    block = yaml.safe_load(run.stdout)["action_autonomy"]
    # The phishing actions were right every time; the GuardDuty block was a pen test.
    assert block["quarantine_email"] == 5 and block["block_domain"] == 5
    assert block["block_ip"] == 2
    assert "block_ip: 2  # collaborator: no level's executions clear 0.98" in run.stdout
    assert config.read_text() == before


def judge_and_calibrate(cwd: Path, env: dict[str, str], store: list[str]) -> None:
    """On the demo's real decisions: an analyst approves one proposal, rejects another and
    closes the rejected one's incident as a true positive; calibration from the store
    then labels each judged action by the judgement, which outranks the verdict."""
    assert cli("run", *store, cwd=cwd, env=env).returncode == 0
    listed = cli("proposals", "list", "--json", *store, cwd=cwd, env=env)
    proposals = [json.loads(line) for line in listed.stdout.splitlines()]
    revoke = next(p for p in proposals if p["request"]["action"] == "revoke_sessions")
    isolate = next(p for p in proposals if p["request"]["target"]["value"] == "ws-fin-042")
    made = cli("tokens", "create", "--name", "alice", "--role", "senior", *store, cwd=cwd, env=env)
    alice = {**env, "SOC_AGENT_TOKEN": made.stdout.strip()}
    for verb, proposal in (("approve", revoke), ("reject", isolate)):
        decided = cli(
            "proposals", verb, proposal["id"], "--comment", "checked", *store, cwd=cwd, env=alice
        )
        assert decided.returncode == 0, decided.stderr
    closed = cli(
        "incidents", "close", isolate["incident_id"], "--verdict", "true_positive",
        "--reason", "real, but a trading server is never isolated", *store, cwd=cwd, env=alice,
    )  # fmt: skip
    assert closed.returncode == 0, closed.stderr

    run = cli("calibrate", "--from-store", "--json", *store, cwd=cwd, env=env)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    figures = {f["action"]: f for f in report["current"]}
    assert report["labelled"] == 2 and sum(f["judged"] for f in report["current"]) == 2
    approved = figures["revoke_sessions"]["proposals"]
    rejected = figures["isolate_host"]["proposals"]
    assert (approved["correct"], approved["labelled"]) == (1, 1)
    assert (rejected["correct"], rejected["labelled"]) == (0, 1)  # the rejection outranks TP

    advice = cli("policy", "suggest", "--from-store", "--json", *store, cwd=cwd, env=env)
    assert advice.returncode == 0, advice.stderr
    rows = {r["action"]: r for r in json.loads(advice.stdout)["action_autonomy"]}
    assert rows["isolate_host"]["level"] == 2  # one labelled case clears nothing


def test_calibrate_from_the_store_learns_from_approvals_and_rejections(tmp_path: Path) -> None:
    judge_and_calibrate(tmp_path, {}, ["--store", "s.db"])

"""A responder's pack end to end: validate, test, and run it, as a user does.

The pack is a copy of the shipped example (a DLP mapping with a keep condition, a YAML
case connector, a playbook and its test cases). Its case API is a real HTTP server on
loopback answering as TheHive 5's v1 API documents.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_cli import ROOT, cli, decisions
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer

EXAMPLE = ROOT / "samples" / "packs" / "data_exfiltration"
API_KEY = "case-api-key-never-shown-0c4e"
CASE = {"_id": "~52000", "_type": "Case", "number": 77, "status": "New", "severity": 3}


def _created(request: RecordedRequest) -> Reply:
    if request.header("authorization") != f"Bearer {API_KEY}":
        return Reply(401, {"type": "AuthenticationError", "message": "Authentication failure"})
    return Reply(201, {**CASE, "title": request.json()["title"]})


@pytest.fixture
def cases() -> Iterator[VendorServer]:
    server = VendorServer()
    server.route("POST", "/api/v1/case", _created)
    yield server
    server.close()


def _my_pack(tmp_path: Path) -> Path:
    pack = tmp_path / "my-pack"
    shutil.copytree(EXAMPLE, pack)
    manifest = pack / "pack.yaml"
    manifest.write_text(manifest.read_text().replace("name: data-exfiltration", "name: my-exfil"))
    return pack


def _dlp(severity: int, incident: str) -> dict[str, Any]:
    """The DLP record of the pack's own true-positive case, at another severity."""
    case = (
        EXAMPLE
        / "playbooks"
        / "tests"
        / "data-exfiltration"
        / "confidential-to-personal-cloud.yaml"
    )
    alert: dict[str, Any] = yaml.safe_load(case.read_text())["alert"]
    alert["incident"] = {**alert["incident"], "severity": severity, "id": incident}
    return alert


def test_a_pack_is_validated_tested_and_run(cases: VendorServer, tmp_path: Path) -> None:
    pack = _my_pack(tmp_path)

    bare = cli("packs", "validate", str(pack), cwd=tmp_path)
    assert bare.returncode == 1
    assert "pack 'my-exfil' needs connectors that are not configured: case_api" in bare.stderr

    config = tmp_path / "soc-agent.yaml"
    config.write_text(
        "connectors:\n"
        f"  case_api: {{base_url: '{cases.url}/api/v1', credentials: 'env:CASE_API_KEY'}}\n"
        "grants:\n"
        "  case_api: [case:write]\n",
        encoding="utf-8",
    )
    env = {"SOC_AGENT_CONFIG": str(config), "CASE_API_KEY": API_KEY}
    valid = cli("packs", "validate", str(pack), cwd=tmp_path, env=env)
    assert valid.returncode == 0, valid.stderr
    assert (
        "pack my-exfil 1.0.0 valid: 1 playbook(s), 2 test case(s), 1 mapping(s), 1 connector(s)"
        in (valid.stdout)
    )
    tested = cli("packs", "test", str(pack), cwd=tmp_path, env=env)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed, 0 failed" in tested.stdout

    config.write_text(config.read_text() + f"packs: [{pack}]\n", encoding="utf-8")
    alerts = tmp_path / "dlp.jsonl"
    alerts.write_text(
        json.dumps(_dlp(4, "DLP-9001")) + "\n" + json.dumps(_dlp(1, "DLP-9002")) + "\n"
    )
    run = cli("run", "--json", "--store", "s.db", "--alerts", str(alerts), cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert "connector case_api: grants case:write" in run.stderr
    (decision,) = decisions(run.stdout)
    assert decision["playbook"] == "data-exfiltration"
    (opened,) = [a for a in decision["actions"] if a["action"] == "create_case"]
    assert opened["disposition"] == "executed", opened
    (created,) = cases.calls("POST", "/api/v1/case")
    assert created.json()["title"].startswith("Data exfiltration: Confidential data uploaded")

    text = cli("run", "--store", "t.db", "--alerts", str(alerts), cwd=tmp_path, env=env)
    assert "1 filtered" in text.stdout  # the audit-only (severity 1) DLP record
    # 90: the demo SIEM knows no earlier uploads by the user, unlike the test case (100)
    assert decision["score"] == 90
    assert "large" in {b["rule"] for b in decision["breakdown"] if b["points"]}

    # The pack's settings: 700 MB is no longer "large" once the threshold is 1 GB.
    config.write_text(
        config.read_text() + "pack_settings:\n  my-exfil: {large_bytes: 1000000000}\n"
    )
    tuned = cli("run", "--json", "--store", "u.db", "--alerts", str(alerts), cwd=tmp_path, env=env)
    assert tuned.returncode == 0, tuned.stderr
    (retuned,) = decisions(tuned.stdout)
    assert retuned["score"] == 75
    assert "large" not in {b["rule"] for b in retuned["breakdown"] if b["points"]}
    assert API_KEY not in run.stdout + run.stderr + text.stdout + text.stderr


def test_packs_list_shows_installed_and_enabled_packs(tmp_path: Path) -> None:
    listed = cli("packs", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (example,) = [r for r in json.loads(listed.stdout) if r["name"] == "data-exfiltration"]
    assert example["installed"] is True and example["enabled"] is False
    missing = cli("packs", "show", "no-such-pack", cwd=tmp_path)
    assert missing.returncode == 1 and "no pack named 'no-such-pack' is installed" in missing.stderr


def test_the_shipped_identity_pack_runs_by_default_and_reads_its_settings(
    tmp_path: Path,
) -> None:
    shown = cli("packs", "show", "identity", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    pack = json.loads(shown.stdout)
    assert pack["python_connectors"] == ["okta", "entra"] and pack["test_cases"] == 8
    listed = cli("packs", "list", cwd=tmp_path)
    assert any(line.startswith("identity 1.0.0 (enabled)") for line in listed.stdout.splitlines())

    tested = cli("packs", "test", "identity", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout
    assert tested.stdout.splitlines()[-1] == "8 passed, 0 failed"

    # Twelve denied prompts are no storm when the deployment says a storm is fifty.
    config = tmp_path / "soc-agent.yaml"
    config.write_text("pack_settings:\n  identity: {mfa_storm_prompts: 50}\n", encoding="utf-8")
    strict = cli("packs", "test", "identity", cwd=tmp_path, env={"SOC_AGENT_CONFIG": str(config)})
    assert strict.returncode == 1
    assert "FAIL mfa-fatigue/push-storm-approved: mfa-fatigue score 55:" in strict.stdout

    # Without the shipped playbooks the pack is off, until named.
    config.write_text("shipped_playbooks: false\n", encoding="utf-8")
    alone = cli("packs", "list", cwd=tmp_path, env={"SOC_AGENT_CONFIG": str(config)})
    assert "identity 1.0.0 (installed, not enabled)" in alone.stdout

"""A declarative HTTP connector end to end: the shipped TheHive definition, a playbook that
opens a case, and the case closed again by rolling the action back, as a user runs them.

The TheHive side is a real HTTP server on loopback answering as TheHive 5's v1 API
documents it (201 with the case on POST /case, 204 on PATCH /case/{id}).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli import ROOT, SAMPLES, cli, decisions
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer

API_KEY = "thehive-api-key-never-shown-5f2c"
PLAYBOOK = ROOT / "tests" / "fixtures" / "declarative" / "case-everything.yaml"
CASE = {
    "_id": "~41000",
    "_type": "Case",
    "_createdBy": "soc-agent@acme.example",
    "_createdAt": 1763632800000,
    "number": 1042,
    "title": "soc-agent: Known Malware: User Execution",
    "description": "",
    "severity": 3,
    "severityLabel": "HIGH",
    "startDate": 1763632800000,
    "tags": [],
    "flag": False,
    "tlp": 2,
    "tlpLabel": "AMBER",
    "pap": 2,
    "papLabel": "AMBER",
    "status": "New",
    "stage": "New",
    "extraData": {},
    "newDate": 1763632800000,
    "timeToDetect": 0,
}


def _created(request: RecordedRequest) -> Reply:
    if request.header("authorization") != f"Bearer {API_KEY}":
        return Reply(401, {"type": "AuthenticationError", "message": "Authentication failure"})
    body = request.json()
    return Reply(201, {**CASE, "title": body["title"], "tags": body["tags"]})


@pytest.fixture
def thehive() -> Iterator[VendorServer]:
    server = VendorServer()
    server.route("POST", "/api/v1/case", _created)
    server.route("PATCH", "/api/v1/case/~41000", Reply(204))
    yield server
    server.close()


def test_a_playbook_opens_a_case_and_the_rollback_closes_it(
    thehive: VendorServer, tmp_path: Path
) -> None:
    config = tmp_path / "soc-agent.yaml"
    config.write_text(
        f"playbooks: [{PLAYBOOK}]\n"
        "local_operator: true\n"
        "connectors:\n"
        f"  thehive: {{base_url: '{thehive.url}/api/v1', credentials: 'env:THEHIVE_KEY'}}\n"
        "grants:\n"
        "  thehive: [case:write, case:read]\n",
        encoding="utf-8",
    )
    env = {"SOC_AGENT_CONFIG": str(config), "THEHIVE_KEY": API_KEY}
    run = cli(
        "run",
        "--json",
        "--store",
        "s.db",
        "--alerts",
        str(SAMPLES / "crowdstrike_malware.json"),
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "connector thehive: grants case:write, case:read" in run.stderr
    (decision,) = decisions(run.stdout)
    (action,) = [a for a in decision["actions"] if a["action"] == "open_case"]
    assert action["disposition"] == "executed", action

    (created,) = thehive.calls("POST", "/api/v1/case")
    body = created.json()
    assert body["title"] == "soc-agent: Known Malware: User Execution"
    assert body["severity"] == 3 and body["tlp"] == 2
    assert body["tags"][:2] == ["soc-agent", "target:ws-fin-042"]
    assert body["tags"][2].startswith("soc-agent-key:")
    assert body["description"]  # the policy's reason

    rollback = cli(
        "actions",
        "rollback",
        action["id"],
        "--analyst",
        "alice",
        "--comment",
        "opened by mistake",
        "--store",
        "s.db",
        cwd=tmp_path,
        env=env,
    )
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    (closed,) = thehive.calls("PATCH", "/api/v1/case/~41000")
    assert closed.json() == {"status": "Other", "summary": "Closed by soc-agent: opened by mistake"}
    assert API_KEY not in run.stdout + run.stderr + rollback.stdout + rollback.stderr

    listed = cli("actions", "list", "--json", "--store", "s.db", cwd=tmp_path, env=env)
    assert '"rolled_back"' in listed.stdout, listed.stdout

"""The CLI on `store_backend: elasticsearch`: the same commands, state in a real cluster.

Two working directories stand for two machines: what one decides, the other
lists, approves and audits, with no file in common.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from elasticsearch import AsyncElasticsearch, Elasticsearch

from tests.e2e.test_cli import SAMPLES, cli, decisions
from tests.e2e.test_cli_calibrate import judge_and_calibrate
from tests.infra.fixtures import elasticsearch_url, needs

__all__ = ["elasticsearch_url"]

pytestmark = needs("elasticsearch")


@pytest.fixture
async def es_env(elasticsearch_url: str) -> AsyncIterator[dict[str, str]]:
    prefix = f"soc-cli-{uuid.uuid4().hex[:10]}"
    yield {
        "SOC_AGENT_STORE_BACKEND": "elasticsearch",
        "SOC_AGENT_ELASTICSEARCH__HOSTS": f'["{elasticsearch_url}"]',
        "SOC_AGENT_ELASTICSEARCH__INDEX_PREFIX": prefix,
        "SOC_AGENT_ELASTICSEARCH__NUMBER_OF_REPLICAS": "0",
        "SOC_AGENT_ELASTICSEARCH__REFRESH_INTERVAL": "100ms",
        "SOC_AGENT_AUDIT_KEY": "a-key-kept-outside-the-cluster",
    }
    async with AsyncElasticsearch(elasticsearch_url) as client:
        names = list(await client.indices.get(index=f"{prefix}-*", expand_wildcards="all"))
        if names:
            await client.indices.delete(index=",".join(names))


def test_two_machines_share_decisions_proposals_and_the_audit_chain(
    tmp_path: Path, es_env: dict[str, str]
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    run = cli("run", "--alerts", str(SAMPLES), "--json", cwd=one, env=es_env)
    assert run.returncode == 0, run.stderr
    assert len(decisions(run.stdout)) >= 7
    assert not list(one.glob("*.db")), "no SQLite store with the Elasticsearch backend"

    again = cli("run", "--alerts", str(SAMPLES), "--json", cwd=two, env=es_env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "", "the other machine recognises every alert as a redelivery"

    listed = cli("proposals", "list", "--json", cwd=two, env=es_env)
    assert listed.returncode == 0, listed.stderr
    proposals = [json.loads(line) for line in listed.stdout.splitlines()]
    single = next(p for p in proposals if p["request"]["required_approvals"] == 1)
    # A token made on one machine authenticates on the other: tokens live in the cluster.
    made = cli("tokens", "create", "--name", "alice", "--role", "senior", cwd=one, env=es_env)
    assert made.returncode == 0, made.stderr
    bob = cli("tokens", "create", "--name", "bob", "--role", "senior", cwd=two, env=es_env)
    alice_env = {**es_env, "SOC_AGENT_TOKEN": made.stdout.strip()}
    approved = cli("proposals", "approve", single["id"], cwd=two, env=alice_env)
    assert approved.returncode == 0 and "executed" in approved.stdout, approved.stderr
    bob_env = {**es_env, "SOC_AGENT_TOKEN": bob.stdout.strip()}
    twice = cli("proposals", "approve", single["id"], cwd=one, env=bob_env)
    assert twice.returncode == 1 and "not pending" in twice.stderr

    on = cli("kill-switch", "on", "--analyst", "lead", cwd=one, env=es_env)
    assert on.returncode == 0 and "ON" in on.stdout
    status = cli("kill-switch", "status", "--analyst", "lead", cwd=two, env=es_env)
    assert "ON" in status.stdout

    actions = cli("actions", "list", "--json", cwd=one, env=es_env)
    assert actions.returncode == 0 and actions.stdout.strip()
    audit = [
        json.loads(line)
        for line in cli(
            "audit", "list", "--json", "--limit", "500", cwd=one, env=es_env
        ).stdout.splitlines()
    ]
    actions_seen = {(e["action"], e["actor"]) for e in audit}
    assert ("proposal.approve", "token:alice") in actions_seen
    assert ("control.kill_switch", "local:lead") in actions_seen
    verify = cli("audit", "verify", "--json", cwd=two, env=es_env)
    assert verify.returncode == 0, verify.stderr
    verified = json.loads(verify.stdout)
    assert verified["ok"] is True
    # Both machines here share a hostname, so one chain besides the shared one; all keyed.
    assert len(verified["chains"]) == 2 and "" in verified["chains"]
    assert all(c["keyed"] for c in verified["chains"].values())
    wrong_key = cli(
        "audit", "verify", "--json", cwd=two, env={**es_env, "SOC_AGENT_AUDIT_KEY": "guess"}
    )
    assert wrong_key.returncode == 1, "a chain sealed with another key does not verify"


def test_calibrate_and_policy_suggest_read_verdicts_and_judgements_from_the_cluster(
    tmp_path: Path, es_env: dict[str, str], elasticsearch_url: str
) -> None:
    judge_and_calibrate(tmp_path, es_env, [])
    assert not list(tmp_path.glob("*.db")), "no SQLite store with the Elasticsearch backend"
    prefix = es_env["SOC_AGENT_ELASTICSEARCH__INDEX_PREFIX"]

    def documents() -> int:
        with Elasticsearch(elasticsearch_url) as client:
            client.indices.refresh(index=f"{prefix}-*")
            return int(client.count(index=f"{prefix}-*")["count"])

    before = documents()
    again = cli("calibrate", "--from-store", cwd=tmp_path, env=es_env)
    assert again.returncode == 0, again.stderr
    assert "judged on the action itself: 1" in again.stdout
    assert documents() == before  # the cluster is read, never written

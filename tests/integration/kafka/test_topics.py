"""`soc-agent topics create` against the real broker: creates what is missing, once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.kafka.conftest import REPO, KafkaEnv


def _create(kafka: KafkaEnv, tmp_path: Path) -> dict[str, str]:
    env = kafka.env(tmp_path / "soc-agent.db", SOC_AGENT_KAFKA__LAYOUT__REPLICATION_FACTOR="1")
    env["SOC_AGENT_KAFKA__LAYOUT__PARTITIONS"] = "4"
    out = subprocess.run(
        [sys.executable, "-m", "soc_agent", "topics", "create", "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return {r["topic"]: r["state"] for r in map(json.loads, out.stdout.decode().splitlines())}


async def test_topics_create_makes_the_missing_topics_then_finds_them(
    kafka: KafkaEnv, tmp_path: Path
) -> None:
    first = _create(kafka, tmp_path)
    t = kafka.topics
    names = {t.alerts, t.approvals, t.decisions, t.proposals, t.actions, t.audit, t.dlq}
    names |= {t.alerts_normalized, t.risk, t.verdicts}
    names |= {f"{kafka.group}-stream-by-entity", f"{kafka.group}-stream-entity-risk-changelog"}
    assert first == dict.fromkeys(names, "created")
    assert _create(kafka, tmp_path) == dict.fromkeys(names, "exists")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.broker.bootstrap)
    await admin.start()
    try:
        described = {
            d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(list(names))
        }
    finally:
        await admin.close()
    assert described[t.alerts] == 4 and described[t.audit] == 1

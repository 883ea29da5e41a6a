"""Issue 4's acceptance across machines: workers share nothing but Kafka and Elasticsearch.

Each worker gets its own directory (no shared store file, no shared lock
file): correlation, decisions, the action ledger, budgets, the audit chain
and the chores' locks all go through one Elasticsearch index prefix. The
recording executor's journal is the one shared file: it stands in for the
EDR every machine would call, which is also what a crashed claim is verified
against.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from elasticsearch import AsyncElasticsearch

from soc_agent.audit.chains import ChainedAuditLog
from soc_agent.audit.elasticsearch_log import ElasticsearchAuditLog
from tests.infra.fixtures import elasticsearch_url, needs
from tests.integration.kafka.alertgen import Stream, make_stream
from tests.integration.kafka.conftest import KafkaEnv
from tests.integration.kafka.test_acceptance import (
    alive,
    check_outputs,
    tails,
    terminate,
    workers,
)

__all__ = ["elasticsearch_url"]

pytestmark = needs("elasticsearch")

AUDIT_KEY = "one-key-all-machines-share-0123456"  # every worker seals the one chain with it

ALERTS = 600
WORKERS = 3


@pytest.fixture
async def es_prefix(elasticsearch_url: str) -> AsyncIterator[str]:
    prefix = f"soc-kafka-{uuid.uuid4().hex[:10]}"
    yield prefix
    async with AsyncElasticsearch(elasticsearch_url) as client:
        names = list(await client.indices.get(index=f"{prefix}-*", expand_wildcards="all"))
        if names:
            await client.indices.delete(index=",".join(names))


MachineEnv = Callable[[int], dict[str, str]]


def machine_env(tmp_path: Path, elasticsearch_url: str, prefix: str) -> MachineEnv:
    """Worker i's environment: its own directory, the shared cluster and EDR stand-in."""
    journal = tmp_path / "edr" / "containment.jsonl"
    journal.parent.mkdir(exist_ok=True)
    config = tmp_path / "edr" / "soc-agent.yaml"
    config.write_text(
        "connectors:\n"
        "  threat_intel: {}\n"
        "  asset_inventory: {}\n"
        "  event_store: {}\n"
        f"  containment: {{journal: '{journal}'}}\n"
        "  notifier: {}\n"
    )

    def env(i: int) -> dict[str, str]:
        home = tmp_path / f"machine-{i}"
        home.mkdir(exist_ok=True)
        return {
            "SOC_AGENT_CONFIG": str(config),
            "SOC_AGENT_STORE": str(home / "local.db"),
            "SOC_AGENT_STORE_BACKEND": "elasticsearch",
            "SOC_AGENT_AUDIT_KEY": AUDIT_KEY,
            "SOC_AGENT_ELASTICSEARCH__HOSTS": f'["{elasticsearch_url}"]',
            "SOC_AGENT_ELASTICSEARCH__INDEX_PREFIX": prefix,
            "SOC_AGENT_ELASTICSEARCH__NUMBER_OF_REPLICAS": "0",
            "SOC_AGENT_ELASTICSEARCH__REFRESH_INTERVAL": "100ms",
            # A SIGKILLed worker's leases block its incidents for this long.
            "SOC_AGENT_ELASTICSEARCH__LEASE_TTL_SECONDS": "4",
            # Each machine appends to its own audit chain (by default named after its host).
            "SOC_AGENT_ELASTICSEARCH__AUDIT_CHAIN": f"machine-{i}",
            "SOC_AGENT_ELASTICSEARCH__AUDIT_CHAIN_ANCHOR_SECONDS": "1",
        }

    return env


def _no_shared_files(tmp_path: Path) -> None:
    """Nothing but the EDR stand-in is shared: no store or lock file outside machine dirs."""
    for path in tmp_path.iterdir():
        assert path.name.startswith(("machine-", "edr", "worker-")), path
    for i in range(WORKERS):
        assert not list((tmp_path / f"machine-{i}").glob("*.lock")), "a file lock was used"
        assert not (tmp_path / f"machine-{i}" / "local.db").exists(), "SQLite was used"


def _setup(
    tmp_path: Path, es_url: str, prefix: str
) -> tuple[Path, Callable[[int], dict[str, str]]]:
    log_dir = tmp_path / "worker-logs" / "x"
    log_dir.parent.mkdir()
    return log_dir, machine_env(tmp_path, es_url, prefix)


async def _check_shared_state(
    kafka: KafkaEnv, stream: Stream, tmp_path: Path, es_url: str, prefix: str
) -> None:
    """The acceptance criteria, plus intact audit chains (each machine's, anchored in the
    shared one) exported whole to the audit topic."""
    await check_outputs(kafka, stream, [tmp_path / "edr" / "containment.jsonl"])
    _no_shared_files(tmp_path)
    async with AsyncElasticsearch(es_url) as client:
        shared = ElasticsearchAuditLog(client, index=f"{prefix}-audit", key=AUDIT_KEY.encode())
        log = ChainedAuditLog(shared, None, actor="auditor", anchor_seconds=60)
        verified = await log.verify()
    assert verified.ok and verified.keyed, verified.problem
    chains = dict(verified.parts)
    assert chains.keys() >= {"", *(f"machine-{i}" for i in range(WORKERS))}
    assert all(chains[f"machine-{i}"].keyed for i in range(WORKERS))
    exported = set()
    for record in await kafka.read_all(kafka.topics.audit):
        entry = json.loads(record.value)
        exported.add((entry["chain"] or "", entry["seq"]))
    # Every worker exported its own chain before committing, and every chain as it
    # stopped; only the shared chain's last anchors (appended as workers stopped, after
    # their last export) may not be on the topic yet.
    for name, part in chains.items():
        missing = {(name, seq) for seq in range(1, part.count + 1)} - exported
        assert not missing if name else len(missing) <= 2 * WORKERS, (name, sorted(missing))


async def test_workers_on_separate_machines_account_for_every_alert(
    kafka: KafkaEnv, tmp_path: Path, elasticsearch_url: str, es_prefix: str
) -> None:
    await kafka.create_topics(partitions=6)
    stream = make_stream(ALERTS, seed=23)
    sent = await kafka.produce(kafka.topics.alerts, stream.records)
    log_dir, env = _setup(tmp_path, elasticsearch_url, es_prefix)
    started = time.monotonic()
    with workers(kafka, log_dir, WORKERS, env) as procs:
        await kafka.wait_committed(
            kafka.topics.alerts, sent, within=400, check=alive(procs, log_dir)
        )
        elapsed = time.monotonic() - started
        terminate(procs, log_dir)
    print(f"{len(stream.records)} records through {WORKERS} ES-backed workers in {elapsed:.1f}s")
    await _check_shared_state(kafka, stream, tmp_path, elasticsearch_url, es_prefix)


async def test_a_machine_killed_mid_stream_loses_nothing_and_repeats_nothing(
    kafka: KafkaEnv, tmp_path: Path, elasticsearch_url: str, es_prefix: str
) -> None:
    await kafka.create_topics(partitions=6)
    stream = make_stream(ALERTS, seed=29)
    sent = await kafka.produce(kafka.topics.alerts, stream.records)
    total = sum(sent.values())
    log_dir, env = _setup(tmp_path, elasticsearch_url, es_prefix)
    with workers(kafka, log_dir, WORKERS, env) as procs:
        await kafka.wait_progress(
            kafka.topics.alerts,
            6,
            total // 3,
            within=300,
            check=alive(procs, log_dir),
            report=tails(log_dir, WORKERS),
        )
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        await kafka.wait_committed(
            kafka.topics.alerts,
            sent,
            within=400,
            check=alive(procs[1:], log_dir),
            report=tails(log_dir, WORKERS),
        )
        terminate(procs, log_dir)
    await _check_shared_state(kafka, stream, tmp_path, elasticsearch_url, es_prefix)

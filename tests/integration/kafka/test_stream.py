"""`soc-agent stream` on the real Apache Kafka: entity risk in a faust table, exact under
redelivery, its risk alerts raised once each onto the alerts topic.

Alerts go onto the normalized topic as the workers publish them, some of them twice
(at-least-once delivery). The table's changelog is read back and each entity's
window totals compared with a plain computation over the distinct alerts.

Which of an episode's overlapping windows carries its risk record follows the order
the entity's alerts arrive in (tests/unit/risk/test_failover.py): the app handles each
partition in offset order with none skipped, even where faust's consumer skips records
around a rebalance (tests/unit/kafka/test_stream_contiguous.py), so from one input
partition it raises exactly the embedded ledger's records, a SIGKILL notwithstanding.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from soc_agent.errors import ConnectorError
from soc_agent.models import Alert, Entity, EntityType, Rule, Severity
from soc_agent.risk import RiskConfig
from soc_agent.risk.ledger import EntityRisk, risk_record_id, window_starts
from soc_agent.runtime.kafka.risk_view import RiskView
from tests.integration.kafka.conftest import REPO, HasBootstrap, KafkaEnv, free_port, new_env

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
POINTS = {"informational": 1, "low": 5, "medium": 10, "high": 20, "critical": 35}
CONFIG = RiskConfig(
    window_seconds=6 * 3600, hop_seconds=2 * 3600, threshold=80, shipped_rules=False
)
RULES = (
    "rules:\n"
    "  - id: severity\n"
    "    description: by severity\n"
    '    points: \'{"informational": 1, "low": 5, "medium": 10, "high": 20, '
    '"critical": 35}[alert.severity]\'\n'
)


def _alerts(count: int, seed: int = 7) -> list[Alert]:
    rng = random.Random(seed)
    hosts = ["ws-1", "ws-2", "srv-db", "srv-web"]
    out = []
    for n in range(count):
        picked = rng.sample(hosts, rng.randint(1, 2))
        out.append(
            Alert(
                id=f"test:{n}",
                format="elastic",
                vendor="acme",
                product="edr",
                rule=Rule(name="Suspicious activity"),
                title=f"alert {n}",
                severity=rng.choice(list(Severity)),
                created_at=T0 + timedelta(minutes=15 * n),
                entities=[Entity(type=EntityType.HOST, value=h) for h in picked]
                + [Entity(type=EntityType.USER, value=f"user-{n % 3}")],
                original={"n": n},
            )
        )
    return out


def _reference(alerts: list[Alert]) -> dict[tuple[str, int], int]:
    totals: dict[tuple[str, int], int] = {}
    for alert in alerts:
        for start in window_starts(int(alert.created_at.timestamp()), CONFIG):
            for key in {e.key for e in alert.entities}:
                totals[(key, start)] = totals.get((key, start), 0) + POINTS[alert.severity]
    return totals


def _env(kafka: KafkaEnv, tmp_path: Path) -> dict[str, str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    config = tmp_path / "soc-agent.yaml"
    config.write_text(
        f"risk_rules: [{rules}]\n"
        "risk: {shipped_rules: false, threshold: 80, window_seconds: 21600, hop_seconds: 7200}\n",
        encoding="utf-8",
    )
    return kafka.env(
        tmp_path / "unused.db",
        SOC_AGENT_CONFIG=str(config),
        SOC_AGENT_KAFKA__LAYOUT__REPLICATION_FACTOR="1",
    )


def _start_stream(port: int, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "soc_agent", "stream", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def _changelog_records(kafka: KafkaEnv) -> list[Any]:
    """Every record on the table's changelog, each partition in order (not compacted yet:
    the active segment never is)."""
    topic = f"{kafka.group}-stream-entity-risk-changelog"
    records = await kafka.read_all(topic, idle=2.0)
    return sorted(records, key=lambda r: (r.partition, r.offset))


def _last_states(records: list[Any]) -> dict[str, EntityRisk]:
    """Each entity's last state, as a restarted app recovers it."""
    return {json.loads(r.key): EntityRisk.from_json(json.loads(r.value)) for r in records}


def _counted(records: list[Any]) -> dict[str, set[str]]:
    """Each entity's alerts that some state on the changelog counted."""
    counted: dict[str, set[str]] = {}
    for record in records:
        ids = {c[0] for c in json.loads(record.value)["contributions"]}
        counted.setdefault(json.loads(record.key), set()).update(ids)
    return counted


async def _changelog(kafka: KafkaEnv) -> dict[str, EntityRisk]:
    return _last_states(await _changelog_records(kafka))


def _window(record: dict[str, Any]) -> tuple[str, int]:
    """A risk record's entity key and window start, checking its id is derived from both."""
    key = f"{record['entity']['type']}:{record['entity']['value']}"
    start = int(datetime.fromisoformat(record["window"]["start"]).timestamp())
    assert record["id"] == risk_record_id(key, start)
    return key, start


def _check_episodes(windows: set[tuple[str, int]], totals: dict[tuple[str, int], int]) -> None:
    """What holds in any order of arrival: each record's window reached the threshold, an
    entity's records never overlap (one per episode), and every window that reached it
    overlaps one of them (no episode missed)."""
    size = CONFIG.window_seconds
    for key, start in windows:
        assert totals[(key, start)] >= CONFIG.threshold, (key, start)
        overlapping = [s for k, s in windows if k == key and 0 < abs(s - start) < size]
        assert not overlapping, (key, start, overlapping)
    for (key, start), total in totals.items():
        if total >= CONFIG.threshold:
            assert [s for k, s in windows if k == key and abs(s - start) < size], (key, start)


async def test_risk_totals_are_exact_and_each_risk_alert_is_raised_once(
    apache_kafka: HasBootstrap, tmp_path: Path
) -> None:
    kafka = new_env(apache_kafka)
    await kafka.create_topics()
    alerts = _alerts(40)
    again = random.Random(3).sample(alerts, 12)  # redelivered
    records = [(a.id.encode(), a.model_dump_json().encode()) for a in [*alerts, *again]]
    await kafka.produce(kafka.topics.alerts_normalized, records)

    port = free_port()
    log = (tmp_path / "stream.log").open("wb")
    proc = _start_stream(port, _env(kafka, tmp_path), log)
    pairs = sum(len({e.key for e in a.entities}) for a in [*alerts, *again])
    try:
        deadline = time.monotonic() + 120
        while len(await kafka.read_all(kafka.topics.risk, idle=0.5)) < pairs:
            assert proc.poll() is None, (tmp_path / "stream.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the stream app did not process every alert"
            await asyncio.sleep(1)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            ready = await client.get(f"http://127.0.0.1:{port}/readyz")
        assert f"soc_stream_risk_updates_total {pairs}" in metrics
        assert ready.status_code == 200 and ready.json()["recovered"] is True
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()

    state = await _changelog(kafka)
    for (key, start), total in _reference(alerts).items():
        assert state[key].total(start, CONFIG) == total, (key, start)

    # A worker answers risk.lookup from the same changelog, once it has read it all.
    view = RiskView(kafka.config(), CONFIG)
    with pytest.raises(ConnectorError, match="not read yet"):
        view.lookup("host", "srv-db")
    stop = asyncio.Event()
    following = asyncio.create_task(view.run(stop))
    deadline = time.monotonic() + 30
    while not view.caught_up:
        assert time.monotonic() < deadline, "the risk view did not catch up"
        await asyncio.sleep(0.2)
    found = view.lookup("host", "SRV-DB")
    start = window_starts(state["host:srv-db"].watermark, CONFIG)[0]
    assert found["total"] == _reference(alerts)[("host:srv-db", start)] > 0
    assert view.lookup("user", "nobody")["total"] == 0
    stop.set()
    await following

    raised = [
        json.loads(r.value)["soc_risk"]
        for r in await kafka.read_all(kafka.topics.alerts)
        if b"soc_risk" in r.value
    ]
    ids = [r["id"] for r in raised]
    assert ids and len(ids) == len(set(ids))  # once each, though 12 alerts came twice
    for record in raised:
        key = f"{record['entity']['type']}:{record['entity']['value']}"
        start = int(datetime.fromisoformat(record["window"]["start"]).timestamp())
        assert state[key].total(start, CONFIG) >= CONFIG.threshold
    crossing = {k for (k, _), total in _reference(alerts).items() if total >= CONFIG.threshold}
    assert crossing == {f"{r['entity']['type']}:{r['entity']['value']}" for r in raised}


async def _seen(kafka: KafkaEnv, topic: str, count: int, *, within: float) -> None:
    """Until `count` records are on the topic, read as they arrive."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka.broker.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen, deadline = 0, time.monotonic() + within
    try:
        while seen < count:
            assert time.monotonic() < deadline, f"only {seen} records on {topic}"
            batch = await consumer.getmany(timeout_ms=100)
            seen += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()


def _kept_from(state: EntityRisk) -> int:
    """The first window start whose contributions the state still holds in full (it keeps
    three windows behind the entity's newest alert)."""
    return state.watermark - 3 * CONFIG.window_seconds


async def _ready(port: int, proc: subprocess.Popen[bytes], log: Path, *, within: float) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while True:
            assert proc.poll() is None, f"stream app on {port} exited (see {log})"
            try:
                answer = await client.get(f"http://127.0.0.1:{port}/readyz")
                if answer.status_code == 200 and answer.json()["assigned_partitions"] > 0:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"stream app on {port} not ready"
            await asyncio.sleep(0.5)


async def test_two_workers_one_killed_agree_with_the_embedded_ledger(
    apache_kafka: HasBootstrap, tmp_path: Path
) -> None:
    """Two stream workers share six partitions; one is SIGKILLed mid-stream. The other
    takes its partitions over (from its standby copy of the table): every alert is
    counted, the totals are exact, and the risk records raised are the embedded
    runtime's ledger's: one per episode, the same ids."""
    from soc_agent.risk import RiskLedger, load_risk_rules

    kafka = new_env(apache_kafka)
    await kafka.create_topics()
    env = _env(kafka, tmp_path)
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    ports = [free_port(), free_port()]
    try:
        for n, port in enumerate(ports):
            logs.append(tmp_path / f"stream-{n}.log")
            with logs[n].open("wb") as log:
                procs.append(_start_stream(port, env, log))
            await _ready(port, procs[n], logs[n], within=90)
        await _ready(ports[0], procs[0], logs[0], within=60)  # after the second joined

        # One input partition keeps the alerts in time order through any failover, so
        # both runtimes see the same order; every fifth alert is delivered twice.
        alerts = _alerts(3000, seed=11)
        stream = [a for n, a in enumerate(alerts) for _ in range(2 if n % 5 == 0 else 1)]
        records = [(a.id.encode(), a.model_dump_json().encode()) for a in stream]
        await kafka.produce(kafka.topics.alerts_normalized, records, partition=0)
        pairs = sum(len({e.key for e in a.entities}) for a in stream)

        await _seen(kafka, kafka.topics.risk, pairs // 10, within=60)
        procs[0].kill()  # SIGKILL: no leave-group, no flush, no commit
        procs[0].wait(10)
        at_kill = len(await kafka.read_all(kafka.topics.risk, idle=0.3))
        assert at_kill < pairs, "the stream was over before the kill"

        deadline = time.monotonic() + 120
        while True:
            changelog = await _changelog_records(kafka)
            state = _last_states(changelog)
            wrong = {
                (key, start): (state[key].total(start, CONFIG) if key in state else None, total)
                for (key, start), total in _reference(alerts).items()
                if key not in state
                or (start >= _kept_from(state[key]) and state[key].total(start, CONFIG) != total)
            }
            if not wrong:
                break
            assert procs[1].poll() is None, f"the survivor exited (see {logs[1]})"
            first = sorted(wrong.items())[:8]
            assert time.monotonic() < deadline, f"(got, expected) totals: {first}"
            await asyncio.sleep(2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)

    survivor = logs[1].read_text()
    assert "Starting standby partitions" in survivor  # it kept a copy of the other's table
    assert survivor.count("Setting newly assigned partitions") >= 2  # and took them over

    # Every alert counted for each entity it names, at some point of the changelog: none
    # lost around the kill (the totals above cover only the windows the states still
    # hold, and faust's consumer skipped records there: the app reads them itself).
    counted = _counted(changelog)
    lost = [
        (a.id, k)
        for a in alerts
        for k in {e.key for e in a.entities}
        if a.id not in counted.get(k, set())
    ]
    assert not lost, f"{len(lost)} (alert, entity) never counted, e.g. {lost[:8]}"

    rules_file = tmp_path / "rules.yaml"
    embedded = RiskLedger(load_risk_rules([rules_file]), CONFIG)
    expected = [r["soc_risk"] for a in stream for r in embedded.add(a)]
    raised = [
        json.loads(r.value)["soc_risk"]
        for r in await kafka.read_all(kafka.topics.alerts)
        if b"soc_risk" in r.value
    ]
    # One record per episode (an entity's records never overlap), none missed, each id
    # derived from its entity and window; and the very records of the embedded ledger.
    totals = _reference(alerts)
    _check_episodes({_window(r) for r in raised}, totals)
    assert expected and {r["id"] for r in raised} == {r["id"] for r in expected}
    # A record raised again after the kill is the same record: recognised downstream.
    by_id: dict[str, list[dict[str, object]]] = {}
    for record in raised:
        by_id.setdefault(str(record["id"]), []).append(record)
    for copies in by_id.values():
        assert all(c["window"] == copies[0]["window"] for c in copies)

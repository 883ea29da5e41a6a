"""`soc-agent stream` throughput: entity risk updates per second, against a plain aiokafka
consume of the same records, measured in the same run on the same broker.

The real Apache Kafka that the tests build (tests/infra/kafka.py) is started on
loopback; N canonical alerts (each naming one or two hosts and one user) go onto the
normalized topic's six partitions (`--hosts`/`--users` set how many alerts each entity
gathers: the state an update rewrites grows with them). The ceiling is one aiokafka
consumer reading them all; then one stream app processes them, and its own counters (served on
/metrics) give the rate from its first update to its last. The broker, the app and
this script share the machine's cores.

    .venv/bin/python bench/bench_stream.py --alerts 20000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soc_agent.models import Alert, Entity, EntityType, Rule, Severity  # noqa: E402
from tests.infra import kafka as kafka_infra  # noqa: E402

TOPIC = "bench.alerts.normalized"
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def _alerts(count: int, hosts: int, users: int) -> list[bytes]:
    rng = random.Random(1)
    out = []
    for n in range(count):
        named = rng.sample(range(hosts), rng.randint(1, 2))
        alert = Alert(
            id=f"bench:{n}",
            format="elastic",
            vendor="acme",
            product="edr",
            rule=Rule(name="Suspicious activity"),
            title=f"alert {n}",
            severity=rng.choice(list(Severity)),
            created_at=T0 + timedelta(seconds=20 * n),
            entities=[Entity(type=EntityType.HOST, value=f"ws-{h}") for h in named]
            + [Entity(type=EntityType.USER, value=f"user-{rng.randrange(users)}")],
            tactics=[rng.choice(["Execution", "Persistence", "Credential Access"])],
            original={"n": n},
        )
        out.append(alert.model_dump_json().encode())
    return out


async def _produce(bootstrap: str, records: list[bytes]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, 6, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        for n, value in enumerate(records):
            await producer.send(TOPIC, value=value, key=f"bench:{n}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def consume_ceiling(bootstrap: str, count: int, topic: str = TOPIC) -> float:
    """Records per second of one plain consumer reading the topic, parsing nothing."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen, started = 0, time.perf_counter()
    try:
        while seen < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            seen += sum(len(r) for r in batch.values())
    finally:
        await consumer.stop()
    return count / (time.perf_counter() - started)


def _counter(text: str, name: str) -> int:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    return 0


def _spawn(port: int, env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    with (workdir / "stream.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "soc_agent", "stream", "--port", str(port)],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _peak_rss_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) // 1024


async def _stream(bootstrap: str, pairs: int, workdir: Path) -> tuple[float, float, int]:
    """(updates/s, alerts/s, peak RSS in MiB) of one stream app over the topic."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = workdir / "soc-agent.yaml"
    config.write_text("risk: {threshold: 100000}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC_AGENT_")}
    env |= {
        "SOC_AGENT_CONFIG": str(config),
        "SOC_AGENT_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SOC_AGENT_KAFKA__GROUP_ID": "bench",
        "SOC_AGENT_KAFKA__TOPICS__ALERTS_NORMALIZED": TOPIC,
        "SOC_AGENT_KAFKA__LAYOUT__REPLICATION_FACTOR": "1",
        "SOC_AGENT_LOG_LEVEL": "WARNING",
    }
    proc = _spawn(port, env, workdir)
    first: float | None = None
    peak = 0
    try:
        async with httpx.AsyncClient() as client:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"the stream app exited: see {workdir / 'stream.log'}")
                try:
                    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
                    continue
                updates = _counter(text, "soc_stream_risk_updates_total")
                now = time.perf_counter()
                peak = max(peak, _peak_rss_mib(proc.pid))
                if updates and first is None:
                    first = now
                if updates >= pairs:
                    alerts = _counter(text, "soc_stream_alerts_total")
                    elapsed = now - (first or now)
                    return pairs / elapsed, alerts / elapsed, peak
                await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)


async def main(count: int, hosts: int, users: int) -> None:
    records = _alerts(count, hosts, users)
    pairs = 0
    for value in records:
        alert = Alert.model_validate_json(value)
        pairs += len({e.key for e in alert.entities})
    with tempfile.TemporaryDirectory() as tmp:
        broker = kafka_infra.start(log_dir=Path(tmp) / "kafka")
        try:
            await _produce(broker.bootstrap, records)
            ceiling = await consume_ceiling(broker.bootstrap, count)
            updates, alerts, rss = await _stream(broker.bootstrap, pairs, Path(tmp))
        finally:
            broker.close()
    print(f"alerts: {count:,} over {hosts:,} hosts and {users:,} users, one every 20 s; "
          f"entity updates: {pairs:,} (6 partitions, one stream app)")  # fmt: skip
    print(f"ceiling, plain aiokafka consume: {ceiling:,.0f} records/s")
    print(f"stream app: {updates:,.0f} risk updates/s, {alerts:,.0f} alerts/s, peak RSS {rss} MiB")
    print(f"ratio: {alerts / ceiling:.3f} of the ceiling (alerts)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--hosts", type=int, default=50, help="fewer: more alerts per entity")
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.alerts, args.hosts, args.users))

"""POST /v1/alerts over real HTTP into the real broker: auth, size limit, keys, dead letters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from soc_agent.runtime.kafka.producer import make_producer
from soc_agent.runtime.kafka.webhook import serve_webhook
from soc_agent.settings import Settings, load_settings
from tests.integration.kafka.alertgen import crowdstrike, malformed, suricata
from tests.integration.kafka.conftest import KafkaEnv, free_port

TOKEN = "wh-test-token-0123456789"


@pytest.fixture
async def webhook(kafka: KafkaEnv, tmp_path: Path) -> AsyncIterator[tuple[str, Settings]]:
    await kafka.create_topics()
    settings = load_settings(
        store=tmp_path / "soc-agent.db",
        kafka=kafka.config(webhook_token=TOKEN, webhook_max_bytes=64 * 1024),
    )
    producer = make_producer(settings.kafka)
    await producer.start()
    stop = asyncio.Event()
    port = free_port()
    server = asyncio.create_task(
        serve_webhook(settings, producer, host="127.0.0.1", port=port, stop=stop)
    )
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(100):
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    try:
        yield url, settings
    finally:
        stop.set()
        await server
        await producer.stop()


async def test_batch_is_published_per_alert_keyed_by_entity_bad_records_to_dlq(
    kafka: KafkaEnv, webhook: tuple[str, Settings]
) -> None:
    import random

    url, _ = webhook
    rng = random.Random(3)
    docs = [crowdstrike(0, rng), suricata(1, rng), crowdstrike(2, rng)]
    body = b"\n".join([json.dumps(d).encode() for d in docs] + [malformed(3), malformed(2)])
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(
            f"{url}/v1/alerts", content=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert r.status_code == 202
    answer = r.json()
    assert answer["accepted"] == 3 and answer["dead_letters"] == 2
    assert all(d["reason"] for d in answer["dead_letter_reasons"])

    alerts = await kafka.read_all(kafka.topics.alerts)
    assert len(alerts) == 3
    keys = {a.key.decode() for a in alerts}
    assert f"host:{docs[0]['event']['Hostname'].lower()}" in keys  # type: ignore[index]
    formats = sorted(dict(a.headers)["soc-format"].decode() for a in alerts)
    assert formats == ["crowdstrike", "crowdstrike", "suricata"]

    def canon(doc: object) -> str:
        return json.dumps(doc, sort_keys=True)

    assert sorted(canon(json.loads(a.value)) for a in alerts) == sorted(canon(d) for d in docs)

    dlq = await kafka.read_all(kafka.topics.dlq)
    assert sorted(d.value for d in dlq) == sorted([malformed(3), malformed(2)])
    assert all(dict(d.headers)["soc-dlq-reason"] for d in dlq)


async def test_refuses_without_the_token_and_over_the_size_limit(
    kafka: KafkaEnv, webhook: tuple[str, Settings]
) -> None:
    url, _ = webhook
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.post(f"{url}/v1/alerts", content=b"{}")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (
            await client.post(f"{url}/v1/alerts", content=b"{}", headers=wrong)
        ).status_code == 401
        big = b"[" + b",".join([b'{"x": 1}'] * 20_000) + b"]"
        ok = {"Authorization": f"Bearer {TOKEN}"}
        r = await client.post(f"{url}/v1/alerts", content=big, headers=ok)
        assert r.status_code == 413
    assert await kafka.read_all(kafka.topics.alerts, idle=0.5) == []


async def test_a_flood_of_records_is_refused_and_repeated_dead_letters_are_aggregated(
    kafka: KafkaEnv, webhook: tuple[str, Settings]
) -> None:
    """One request of `{}` lines once became 1.7 M dead letters and GBs of memory."""
    import random

    url, settings = webhook
    cap = settings.kafka.webhook_max_records
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(timeout=30) as client:
        flood = await client.post(f"{url}/v1/alerts", content=b"{}\n" * (cap + 1), headers=headers)
        assert flood.status_code == 413
        assert f"at most {cap} records" in flood.json()["error"]

        good = json.dumps(crowdstrike(0, random.Random(5))).encode()
        junk = [b"{}"] * 300
        mixed = await client.post(
            f"{url}/v1/alerts", content=b"\n".join([good, *junk]), headers=headers
        )
    assert mixed.status_code == 202
    assert (mixed.json()["accepted"], mixed.json()["dead_letters"]) == (1, 300)
    dlq = await kafka.read_all(kafka.topics.dlq)
    assert len(dlq) == 1, "300 records failing the same way are one dead letter"
    (letter,) = dlq
    assert letter.value.splitlines() == junk  # nothing is lost: every original line is kept
    assert dict(letter.headers)["soc-dlq-count"] == b"300"
    alerts = await kafka.read_all(kafka.topics.alerts)
    assert len(alerts) == 1

"""A `soc-agent worker` process's /healthz, /readyz and /metrics over real HTTP (tansu broker).

The worker is configured by environment only, as the Helm chart does it. The
metrics must agree with what the worker demonstrably did on the topics, and
no body may carry alert content or a configured secret.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from soc_agent.errors import ConfigError
from soc_agent.runtime.kafka.runner import run_worker
from soc_agent.settings import load_settings
from tests.integration.kafka.alertgen import make_stream
from tests.integration.kafka.conftest import REPO, KafkaEnv, free_port, worker_command
from tests.unit.runtime.exposition import parse

SECRETS = {
    "SOC_AGENT_KAFKA__WEBHOOK_TOKEN": "wh-token-never-shown-7f3a9c",
    "SOC_AGENT_KAFKA__SASL_PLAIN_PASSWORD": "kafka-password-never-shown-41d2",
    "SOC_AGENT_AUDIT_KEY": "audit-key-never-shown-9b8e77",
}


async def _get(client: httpx.AsyncClient, url: str) -> httpx.Response | None:
    try:
        return await client.get(url)
    except httpx.TransportError:
        return None


async def wait_status(
    client: httpx.AsyncClient,
    url: str,
    status: int,
    *,
    within: float,
    proc: subprocess.Popen[bytes],
    until: Callable[[dict[str, Any]], bool] = lambda _: True,
) -> httpx.Response:
    """Poll `url` until it answers `status` with a body `until` accepts; fails early if
    the worker process exits."""
    deadline = time.monotonic() + within
    while True:
        response = await _get(client, url)
        if response is not None and response.status_code == status and until(response.json()):
            return response
        assert proc.poll() is None, f"the worker exited with {proc.returncode}"
        if time.monotonic() > deadline:
            seen = None if response is None else (response.status_code, response.text)
            raise AssertionError(f"{url} never answered {status}; last: {seen}")
        await asyncio.sleep(0.1)


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `soc-agent worker` process, its output in `log`; killed if the test leaves it running."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            worker_command(), env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop_worker(proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, as Kubernetes stops a pod: the worker must drain and exit 0."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    assert code == 0, f"worker exited with {code}:\n{log.read_text()[-3000:]}"


async def test_a_running_worker_reports_health_readiness_and_true_metrics(
    kafka: KafkaEnv, tmp_path: Path
) -> None:
    await kafka.create_topics(partitions=6)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    store = tmp_path / "soc-agent.db"
    env = kafka.env(
        store,
        SOC_AGENT_KAFKA__HEALTH_PORT=str(port),
        SOC_AGENT_KAFKA__HEALTH_PROBE_INTERVAL_SECONDS="0.5",
        **SECRETS,
    )
    log = tmp_path / "worker.log"
    with worker_process(env, log) as proc:
        async with httpx.AsyncClient(timeout=5) as client:
            live = await wait_status(client, f"{base}/healthz", 200, within=60, proc=proc)
            assert live.json()["status"] == "ok"
            assert live.json()["loop_age_seconds"] < 5
            # A member of its group is ready before the assignment lands (a worker with
            # no partitions to own is still ready), so wait for the assignment itself:
            # 6 alert, 6 approval and 6 verdict partitions, all this one worker's.
            ready = await wait_status(
                client,
                f"{base}/readyz",
                200,
                within=60,
                proc=proc,
                until=lambda body: body["assigned_partitions"] == 18,
            )
            assert ready.json()["in_group"] is True

            stream = make_stream(150, malformed_share=0.1)
            sent = await kafka.produce(kafka.topics.alerts, stream.records)

            def alive() -> None:
                assert proc.poll() is None, log.read_text()[-3000:]

            await kafka.wait_committed(kafka.topics.alerts, sent, within=120, check=alive)
            # The group's offsets can be visible a moment before the worker's commit call
            # returns and records them in soc_worker_committed_offset.
            await asyncio.sleep(0.5)
            response = await client.get(f"{base}/metrics")
            text = response.text
            bodies = [
                text,
                (await client.get(f"{base}/healthz")).text,
                (await client.get(f"{base}/readyz")).text,
            ]
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert response.headers["cache-control"] == "no-store"
            assert (await client.get(f"{base}/v1/alerts")).status_code == 404
        stop_worker(proc, log)

    families = parse(text)
    records = len(stream.records)
    wellformed = records - len(stream.malformed)
    assert families["soc_worker_records_consumed_total"].value() == records
    assert families["soc_worker_alerts_processed_total"].value() == wellformed
    assert families["soc_worker_dead_letters_total"].value() == len(stream.malformed)
    outcomes = families["soc_worker_decisions_total"].by("outcome")
    assert sum(outcomes.values()) == wellformed
    assert outcomes["new"] > 0 and outcomes["redelivered"] >= stream.redelivered
    assert families["soc_worker_commits_total"].value() >= 1
    assert families["soc_worker_in_flight"].value() == 0
    assert 1 <= families["soc_worker_in_flight_max"].value() <= 32
    assert families["soc_worker_paused"].value() == 0
    assert families["soc_worker_broker_up"].value() == 1
    assert families["soc_worker_assigned_partitions"].by("topic") == {
        kafka.topics.alerts: 6,
        kafka.topics.approvals: 6,
        kafka.topics.verdicts: 6,
    }
    committed = families["soc_worker_committed_offset"]
    for partition, n in sent.items():
        assert committed.value(topic=kafka.topics.alerts, partition=str(partition)) == n
    latency = families["soc_worker_processing_seconds"]
    assert latency.value("_count") == records
    assert 0 < latency.value("_sum") < 120 * records
    assert families["process_resident_memory_bytes"].value() > 20 * 1024 * 1024

    # Nothing of the alerts nor the configured secrets is ever served.
    everything = "\n".join(bodies)
    for secret in SECRETS.values():
        assert secret not in everything
    for alert_id in stream.alert_ids:
        assert alert_id not in everything
    for needle in ("ws-0", "10.20.", "198.51.100.", "example-c2.net", "Cobalt", "invoice.exe"):
        assert needle not in everything


async def test_a_taken_health_port_fails_the_start_naming_the_key(
    kafka: KafkaEnv, tmp_path: Path
) -> None:
    await kafka.create_topics()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = load_settings(
            store=tmp_path / "soc-agent.db", kafka=kafka.config(health_port=port)
        )
        # Promptly: the risk view already following its changelog must not keep the
        # failed start waiting for a stop that never comes.
        with pytest.raises(ConfigError, match=r"kafka\.health_port"):
            await asyncio.wait_for(run_worker(settings, handle_signals=False), 20)

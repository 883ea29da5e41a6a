"""A worker killed at each point of an alert's processing: every alert answered as without it.

For each broker (tansu and the real Apache Kafka) a crash-free reference run
answers a stream of vendor alerts (new, grouped, suppressed duplicates,
redeliveries, malformed records). Then, for each kill point (on Apache Kafka,
the two whose recovery rests on the broker), a worker armed
with a failpoint dies there (exit 137, as SIGKILL: no cleanup, no commit) and
a second worker takes the partition over. The run must answer every alert
with exactly the decisions of the reference (same ids, same content), take
every action once and dead-letter every malformed record once. One partition
and one record in flight make both runs process the same order, so their
answers can be compared alert by alert. The delay from the kill to the last
answer is printed (the README quotes it).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from soc_agent.models import Decision
from tests.integration.kafka.alertgen import Stream, make_stream
from tests.integration.kafka.conftest import (
    REPO,
    HasBootstrap,
    KafkaEnv,
    new_env,
    worker_command,
)
from tests.integration.kafka.test_acceptance import terminate

# point -> which arrival kills the worker: mid-stream, after some answers are out
KILL_POINTS = {
    "alert.stored": 7,
    "decision.stored": 3,
    "actions.done": 3,
    "records.published": 7,
    "dead_letters.published": 1,  # the first record with dead letters
}
# One record at a time, and a block_ip budget of one, so the stream both executes and
# proposes (over budget) and both runs decide in the same order.
_ENV = {
    "SOC_AGENT_KAFKA__MAX_IN_FLIGHT": "1",
    "SOC_AGENT_RUNTIME__MAX_CONCURRENT_ALERTS": "1",
    "SOC_AGENT_POLICY__BLAST_RADIUS": '{"block_ip": {"max_executions": 1, "window_seconds": 9999}}',
}


@dataclass(frozen=True)
class Answers:
    by_alert: dict[str, set[str]]  # alert id -> ids of the decisions that answered it
    contents: dict[str, tuple[Any, ...]]  # decision id -> what it decided


@pytest.fixture(scope="module")
def stream() -> Stream:
    return make_stream(60, malformed_share=0.1, redeliver_every=6, seed=19)


# Module-scoped per broker, so each broker's reference run is made once.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def on_tansu(
    kafka_broker: HasBootstrap, stream: Stream, tmp_path_factory: Any
) -> tuple[HasBootstrap, Answers]:
    return kafka_broker, await _reference(kafka_broker, stream, tmp_path_factory)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def on_apache(
    apache_kafka: HasBootstrap, stream: Stream, tmp_path_factory: Any
) -> tuple[HasBootstrap, Answers]:
    return apache_kafka, await _reference(apache_kafka, stream, tmp_path_factory)


async def _reference(broker: HasBootstrap, stream: Stream, tmp_path_factory: Any) -> Answers:
    kafka = new_env(broker)
    store = tmp_path_factory.mktemp("reference") / "soc-agent.db"
    sent = await _publish(kafka, stream)
    with _worker(kafka, store, "reference") as proc:
        await kafka.wait_committed(kafka.topics.alerts, sent, within=120)
        terminate([proc], store)
    return await _answers(kafka)


def _worker_log(store: Path, name: str) -> Path:
    return store.parent / f"worker-{name}.log"


@contextmanager
def _worker(
    kafka: KafkaEnv, store: Path, name: str, **extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """One `soc-agent worker` process, killed on exit if still running."""
    with _worker_log(store, name).open("wb") as log:
        proc = subprocess.Popen(
            worker_command(),
            env={**kafka.env(store), **_ENV, **extra},
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def _publish(kafka: KafkaEnv, stream: Stream) -> dict[int, int]:
    await kafka.create_topics(partitions=1)
    return await kafka.produce(kafka.topics.alerts, stream.records)


async def _answers(kafka: KafkaEnv) -> Answers:
    by_alert: dict[str, set[str]] = {}
    contents: dict[str, tuple[Any, ...]] = {}
    for record in await kafka.read_all(kafka.topics.decisions):
        decision = Decision.model_validate_json(record.value)
        alert_id = dict(record.headers)["soc-alert-id"].decode()
        by_alert.setdefault(alert_id, set()).add(decision.id)
        shape = (
            decision.trigger_alert_id,
            decision.score,
            tuple(
                (a.action, a.target.key, a.disposition.value, a.rule, a.execution)
                for a in decision.actions
            ),
        )
        assert contents.setdefault(decision.id, shape) == shape, f"{decision.id} changed"
    return Answers(by_alert, contents)


@pytest.mark.parametrize("point", list(KILL_POINTS))
async def test_a_worker_killed_at_a_point_answers_every_alert_as_without_the_crash(
    on_tansu: tuple[HasBootstrap, Answers], stream: Stream, tmp_path: Path, point: str
) -> None:
    await _killed_at(point, *on_tansu, stream, tmp_path)


# On Apache Kafka, the points whose recovery rests on the broker's redelivery, commits
# and (for dead letters) what the topic holds: a decision stored but not acted on;
# records published, offsets not committed. The others add a minute of CI and no path
# of their own.
@pytest.mark.parametrize(
    "point", ["decision.stored", "records.published", "dead_letters.published"]
)
async def test_on_apache_kafka_a_worker_killed_at_a_point_answers_as_without_the_crash(
    on_apache: tuple[HasBootstrap, Answers], stream: Stream, tmp_path: Path, point: str
) -> None:
    await _killed_at(point, *on_apache, stream, tmp_path)


async def _killed_at(
    point: str, broker: HasBootstrap, reference: Answers, stream: Stream, tmp_path: Path
) -> None:
    assert set(reference.by_alert) == stream.alert_ids, "the reference answers every alert"
    dispositions = Counter(a[2] for shape in reference.contents.values() for a in shape[2])
    assert dispositions["executed"] and dispositions["proposed"], dispositions
    kafka = new_env(broker)
    store = tmp_path / "soc-agent.db"
    sent = await _publish(kafka, stream)

    armed = f"{point}@{KILL_POINTS[point]}"
    with _worker(kafka, store, "doomed", SOC_AGENT_FAILPOINTS=armed) as doomed:
        try:
            code = doomed.wait(120)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 137, _worker_log(store, "doomed").read_text()[-3000:]
    killed_at = time.monotonic()
    with _worker(kafka, store, "survivor") as survivor:
        await kafka.wait_committed(kafka.topics.alerts, sent, within=120)
        delay = time.monotonic() - killed_at
        terminate([survivor], store)
    print(f"{point}: every record committed {delay:.1f}s after the kill")

    got = await _answers(kafka)
    assert set(got.by_alert) == stream.alert_ids, "every alert is answered, duplicates too"
    assert got.by_alert == reference.by_alert
    for decision_id in got.contents:
        assert got.contents[decision_id] == reference.contents[decision_id], decision_id

    journal = store.with_name(store.stem + ".containment.jsonl")
    keys = Counter(json.loads(line)["idempotency_key"] for line in journal.read_text().splitlines())
    assert keys and max(keys.values()) == 1, "every action takes effect once"
    dlq = await kafka.read_all(kafka.topics.dlq)
    assert Counter(r.value for r in dlq) == Counter(stream.malformed)

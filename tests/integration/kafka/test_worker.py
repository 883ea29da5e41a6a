"""The worker in this process against the real broker: contract, approvals, backpressure."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from soc_agent.audit import SQLiteAuditLog
from soc_agent.audit.keying import key_file_for, read_key_file
from soc_agent.models import Approval, ApprovalVerdict, Decision, Proposal, ProposalStatus, Role
from soc_agent.runtime.kafka.audit_head import published_head
from soc_agent.runtime.kafka.metrics import WorkerReport
from soc_agent.runtime.kafka.runner import run_worker
from soc_agent.runtime.kafka.signed_verdicts import sign_verdict
from soc_agent.settings import Settings, load_settings
from soc_agent.settings.kafka import KafkaConfig
from soc_agent.store import SQLiteStore
from tests.integration.kafka.alertgen import make_stream
from tests.integration.kafka.conftest import KafkaEnv

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "alerts"


def _settings(tmp: Path, kafka: KafkaConfig, **extra: Any) -> Settings:
    return load_settings(store=tmp / "soc-agent.db", kafka=kafka, **extra)


@asynccontextmanager
async def worker(settings: Settings) -> AsyncIterator[list[WorkerReport]]:
    """A worker running in this event loop; stopped (gracefully) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop=stop, handle_signals=False))
    reports: list[WorkerReport] = []
    try:
        yield reports
    finally:
        stop.set()
        reports.append(await asyncio.wait_for(task, 60))


def _headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def _journal(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "soc-agent.containment.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_every_alert_decided_every_bad_record_dead_lettered_with_its_bytes(
    kafka: KafkaEnv, tmp_path: Path
) -> None:
    await kafka.create_topics()
    stream = make_stream(120, malformed_share=0.1)
    sent = await kafka.produce(kafka.topics.alerts, stream.records, headers=[("trace", b"abc")])
    settings = _settings(tmp_path, kafka.config())
    async with worker(settings) as reports:
        await kafka.wait_committed(kafka.topics.alerts, sent, within=90)
    report = reports[0]
    assert report.alerts == len(stream.records) - len(stream.malformed)
    assert report.dead_letters == len(stream.malformed)

    decisions = await kafka.read_all(kafka.topics.decisions)
    covered: set[str] = set()
    answered: set[str] = set()
    for record in decisions:
        decision = Decision.model_validate_json(record.value)
        h = _headers(record)
        assert record.key == decision.incident_id.encode()
        answered.add(h["soc-alert-id"])
        if h["soc-correlation"] != "duplicate":
            assert h["soc-alert-id"] in decision.alert_ids
        covered.update(decision.alert_ids)
    store = SQLiteStore(settings.store)
    try:
        duplicates = {a for a in stream.alert_ids if a not in covered}
        for alert_id in duplicates:  # suppressed duplicates: counted on a decided incident
            alert = await store.get_alert(alert_id)
            assert alert is not None
        assert stream.alert_ids <= answered | duplicates
        assert len(duplicates) < len(stream.alert_ids) // 5
    finally:
        store.close()

    dlq = await kafka.read_all(kafka.topics.dlq)
    assert sorted(r.value for r in dlq) == sorted(stream.malformed)
    for record in dlq:
        h = _headers(record)
        assert h["trace"] == "abc"  # the original headers travel along
        assert h["soc-dlq-topic"] == kafka.topics.alerts
        assert int(h["soc-dlq-offset"]) >= 0 and h["soc-dlq-reason"]
        assert record.key == b"junk"


async def test_audit_topic_is_the_chain_in_order(either_kafka: KafkaEnv, tmp_path: Path) -> None:
    kafka = either_kafka
    await kafka.create_topics()
    stream = make_stream(30, malformed_share=0.1)
    sent = await kafka.produce(kafka.topics.alerts, stream.records)
    settings = _settings(tmp_path, kafka.config())
    async with worker(settings):
        await kafka.wait_committed(kafka.topics.alerts, sent, within=60)
    audit = SQLiteAuditLog(settings.store)
    try:
        head_seq, head_hash = await audit.head()
    finally:
        audit.close()
    events = [json.loads(r.value) for r in await kafka.read_all(kafka.topics.audit)]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and set(seqs) == set(range(1, head_seq + 1))
    by_seq = {e["seq"]: e for e in events}
    for seq in range(2, head_seq + 1):
        assert by_seq[seq]["prev_hash"] == by_seq[seq - 1]["hash"]
    assert by_seq[head_seq]["hash"] == head_hash
    # The topic is a head the store's writer cannot rewrite: `audit verify --against kafka`.
    published = await published_head(settings.kafka)
    assert published == (head_seq, head_hash)
    conn = sqlite3.connect(settings.store)
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE seq > ?", (head_seq - 2,))
    conn.commit()
    conn.close()
    audit = SQLiteAuditLog(settings.store, key=read_key_file(key_file_for(settings.store)))
    try:
        assert (await audit.verify()).ok  # the cut chain alone looks fine
        cut = await audit.verify(anchors={published[0]: published[1]})
    finally:
        audit.close()
    assert (cut.ok, cut.first_bad_seq) == (False, head_seq - 1)


async def _pending_proposal(
    kafka: KafkaEnv,
    tmp_path: Path,
    *,
    policy: dict[str, Any] | None = None,
    action: str | None = None,
) -> tuple[Settings, Proposal]:
    """A worker decides the Falcon sample under collaborator autonomy: everything is proposed.

    Returns the settings and the proposal of `action` (default: the first one).
    """
    await kafka.create_topics()
    policy = policy or {"agent_autonomy": 2, "four_eyes_actions": [], "four_eyes_min_risk": None}
    settings = _settings(tmp_path, kafka.config(approvals_key=APPROVALS_KEY), policy=policy)
    sample = (SAMPLES / "crowdstrike_malware.json").read_bytes()
    sent = await kafka.produce(kafka.topics.alerts, [(b"host:ws-fin-042", sample)])
    async with worker(settings):
        await kafka.wait_committed(kafka.topics.alerts, sent, within=60)
    proposals = [
        Proposal.model_validate_json(r.value) for r in await kafka.read_all(kafka.topics.proposals)
    ]
    assert proposals and all(p.status is ProposalStatus.PENDING for p in proposals)
    return settings, next(p for p in proposals if action in (None, p.request.action))


APPROVALS_KEY = "approvals-signing-key-for-the-worker-tests-01"


def _signed(analyst: str, proposal_id: str, comment: str | None = None) -> bytes:
    """A verdict as the API publishes it: signed over the analyst's name and role."""
    return sign_verdict(
        proposal_id=proposal_id,
        analyst=f"token:{analyst}",
        role=Role.ADMIN,
        verdict=ApprovalVerdict.APPROVE,
        comment=comment,
        issued_at=datetime.now(UTC),
        key=APPROVALS_KEY.encode(),
    )


async def test_an_approval_delivered_twice_executes_once_bad_verdicts_are_dead_lettered(
    kafka: KafkaEnv, tmp_path: Path
) -> None:
    settings, proposal = await _pending_proposal(kafka, tmp_path)
    assert _journal(tmp_path) == []
    verdict = _signed("alice", proposal.id, comment="ok")
    key = proposal.id.encode()
    undecided = json.loads(_signed("bob", proposal.id)) | {"verdict": "maybe"}
    bad = [
        b"approve it please",
        _signed("a", "prop-nope"),
        json.dumps(undecided).encode(),
        _signed(settings.agent_id, proposal.id),
    ]
    records = [(key, bad[3]), (key, verdict), (key, verdict)] + [(key, b) for b in bad[:3]]
    sent = await kafka.produce(kafka.topics.approvals, records)
    async with worker(settings) as reports:
        await kafka.wait_committed(kafka.topics.approvals, sent, within=60)
    assert reports[0].approvals == {"executed": 1, "duplicate": 1, "dead_letter": 4}
    journal = _journal(tmp_path)
    assert [e["idempotency_key"] for e in journal] == [proposal.request.idempotency_key]

    states = [
        Proposal.model_validate_json(r.value)
        for r in await kafka.read_all(kafka.topics.proposals)
        if r.key == key
    ]
    assert max(states, key=lambda p: p.version).status is ProposalStatus.EXECUTED
    actions = [json.loads(r.value) for r in await kafka.read_all(kafka.topics.actions)]
    assert {a["idempotency_key"] for a in actions} == {proposal.request.idempotency_key}
    assert all(a["status"] == "executed" for a in actions)

    dlq = await kafka.read_all(kafka.topics.dlq)
    reasons = {r.value: _headers(r)["soc-dlq-reason"] for r in dlq}
    assert set(reasons) == set(bad)
    assert "invalid approval" in reasons[bad[0]]
    assert "prop-nope" in reasons[bad[1]]
    assert "verdict" in reasons[bad[2]]
    assert "agent's own identity" in reasons[bad[3]]


async def test_saturated_worker_pauses_instead_of_buffering(
    kafka: KafkaEnv, tmp_path: Path
) -> None:
    await kafka.create_topics()
    stream = make_stream(150, malformed_share=0.0, redeliver_every=1000)
    sent = await kafka.produce(kafka.topics.alerts, stream.records)
    settings = _settings(tmp_path, kafka.config(max_in_flight=4, low_water=1))
    async with worker(settings) as reports:
        await kafka.wait_committed(kafka.topics.alerts, sent, within=90)
    report = reports[0]
    assert report.pauses >= 1
    assert report.max_in_flight_seen <= 4
    assert report.alerts == len(stream.records)


async def test_stopping_finishes_in_flight_work_and_commits_it(
    kafka: KafkaEnv, tmp_path: Path
) -> None:
    await kafka.create_topics()
    stream = make_stream(200, malformed_share=0.0, redeliver_every=1000)
    sent = await kafka.produce(kafka.topics.alerts, stream.records)
    settings = _settings(tmp_path, kafka.config(max_in_flight=16))
    async with worker(settings) as reports:
        await kafka.wait_progress(kafka.topics.alerts, 6, 40, within=60)
    first = reports[0]
    committed = await kafka.committed(kafka.topics.alerts, 6)
    # Everything taken in was finished and committed, nothing more.
    assert sum(committed.values()) == first.records
    assert first.records < len(stream.records)
    async with worker(settings) as reports:
        await kafka.wait_committed(kafka.topics.alerts, sent, within=90)
    assert reports[0].records == len(stream.records) - first.records
    keys = Counter(e["idempotency_key"] for e in _journal(tmp_path))
    assert keys and max(keys.values()) == 1


async def test_the_maintenance_sweep_expires_proposals_off_the_consume_loop(
    kafka: KafkaEnv, tmp_path: Path
) -> None:
    """Due proposals expire (escalated, never executed) while the worker keeps consuming."""
    from soc_agent.runtime.backend import open_backend

    await kafka.create_topics()
    policy = {
        "agent_autonomy": 2,
        "four_eyes_actions": [],
        "four_eyes_min_risk": None,
        "proposal_expiry_seconds": {s: 1 for s in ("critical", "high", "medium", "low")},
    }
    settings = _settings(tmp_path, kafka.config(maintenance_interval_seconds=0.2), policy=policy)
    sample = (SAMPLES / "crowdstrike_malware.json").read_bytes()
    sent = await kafka.produce(kafka.topics.alerts, [(b"host:ws-fin-042", sample)])
    async with worker(settings), open_backend(settings) as backend:
        await kafka.wait_committed(kafka.topics.alerts, sent, within=60)
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            proposals = await backend.store.list_proposals(limit=100)
            if proposals and all(p.status is ProposalStatus.EXPIRED for p in proposals):
                break
            assert asyncio.get_running_loop().time() < deadline, [p.status for p in proposals]
            await asyncio.sleep(0.2)
    assert _journal(tmp_path) == [], "an expired proposal never executes"


async def test_the_maintenance_sweep_resumes_an_approval_a_crash_cut_off(
    kafka: KafkaEnv, tmp_path: Path
) -> None:
    """An approval marked but never executed (its worker died) is carried out once."""
    from soc_agent.runtime.backend import open_backend

    settings, proposal = await _pending_proposal(kafka, tmp_path)
    before = datetime.now(UTC) - timedelta(minutes=2)  # well past the resume grace
    async with open_backend(settings) as backend:
        crashed = proposal.model_copy(
            update={
                "status": ProposalStatus.APPROVED,
                "approvals": [Approval(analyst="token:alice", verdict="approve", at=before)],
                "updated_at": before,
            }
        )
        assert await backend.store.update_proposal(crashed, expected_version=proposal.version)
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"maintenance_interval_seconds": 0.2})}
    )
    async with worker(settings), open_backend(settings) as backend:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            stored = await backend.store.get_proposal(proposal.id)
            if stored is not None and stored.status is ProposalStatus.EXECUTED:
                break
            assert asyncio.get_running_loop().time() < deadline, stored
            await asyncio.sleep(0.2)
    journal = _journal(tmp_path)
    assert [e["idempotency_key"] for e in journal] == [proposal.request.idempotency_key]

"""The executor: at most once per idempotency key, whatever happens around it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pydantic import BaseModel
from soc_agent_connectors import Connector, ConnectorError, capability
from soc_agent_connectors.recording_executor import RecordingExecutor, RecordingExecutorConfig

from soc_agent.actions.executor import Executor
from soc_agent.audit import SQLiteAuditLog
from soc_agent.gateway import Gateway
from soc_agent.models import (
    ActionRequest,
    AutonomyLevel,
    Disposition,
    Entity,
    EntityType,
    RiskTier,
)
from soc_agent.models.ids import idempotency_key
from soc_agent.store import SQLiteStore
from tests.conftest import Clock

ALL_SCOPES = ["host:contain", "network:block", "session:revoke", "containment:read"]


def _journal(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _request(
    action: str = "isolate_host",
    target: str = "ws-fin-042",
    kind: EntityType = EntityType.HOST,
    *,
    incident: str = "inc-1",
    revert_after: int | None = None,
) -> ActionRequest:
    entity = Entity(type=kind, value=target)
    key = idempotency_key(incident, action, entity)
    rollback = {"isolate_host": "release_host", "block_ip": "unblock_ip"}.get(action)
    return ActionRequest(
        id=f"act-{key[:16]}",
        action=action,
        target=entity,
        connector="containment",
        capability=action,
        playbook_rule="contain",
        disposition=Disposition.EXECUTED,
        rule="threshold.execute",
        reason="score 95 >= execute_at 90",
        autonomy=AutonomyLevel.OBSERVER,
        reversible=rollback is not None,
        rollback_capability=rollback,
        revert_after_seconds=revert_after,
        risk=RiskTier.HIGH,
        idempotency_key=key,
    )


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "containment.jsonl"


def _executor(
    store: SQLiteStore,
    audit: SQLiteAuditLog,
    journal: Path,
    clock: Clock,
    scopes: list[str] = ALL_SCOPES,
) -> Executor:
    conn = RecordingExecutor(RecordingExecutorConfig(journal=str(journal)))
    gateway = Gateway({"containment": conn}, {"containment": scopes}, audit, clock=clock)
    return Executor(store, gateway, audit, actor="soc-agent", clock=clock)


async def test_repeated_execution_takes_effect_once(store, audit, journal, clock) -> None:
    ex = _executor(store, audit, journal, clock)
    req = _request()
    first = await ex.execute(req, "inc-1")
    again = [await ex.execute(req, "inc-1") for _ in range(5)]
    assert first.status == "executed" and first.performed and first.verified is True
    assert {o.status for o in again} == {"already_executed"}
    assert not any(o.performed for o in again)
    assert len(_journal(journal)) == 1


async def test_concurrent_execution_takes_effect_once(store, audit, journal, clock) -> None:
    ex = _executor(store, audit, journal, clock)
    req = _request()
    outcomes = await asyncio.gather(*(ex.execute(req, "inc-1") for _ in range(10)))
    assert sum(o.performed for o in outcomes) == 1
    assert len(_journal(journal)) == 1


async def test_different_targets_are_different_actions(store, audit, journal, clock) -> None:
    ex = _executor(store, audit, journal, clock)
    await ex.execute(_request(target="ws-fin-042"), "inc-1")
    await ex.execute(_request(target="ws-fin-043"), "inc-1")
    assert [e["target"] for e in _journal(journal)] == ["ws-fin-042", "ws-fin-043"]


async def test_claim_orphaned_after_effect_is_recovered_without_repeat(
    store, audit, journal, clock
) -> None:
    """A crash after the vendor call but before the ledger update: verify, do not repeat."""
    ex = _executor(store, audit, journal, clock)
    req = _request()
    await store.claim_action(req, "inc-1", clock())
    conn = RecordingExecutor(RecordingExecutorConfig(journal=str(journal)))
    await conn.invoke("isolate_host", {"target": req.target.value})  # the effect happened
    clock.advance(minutes=10)  # the claim is now stale
    outcome = await ex.execute(req, "inc-1")
    assert outcome.status == "already_executed" and outcome.verified is True
    assert len(_journal(journal)) == 1
    record = await store.get_action(req.idempotency_key)
    assert record is not None and record.status == "executed"


async def test_claim_orphaned_before_effect_is_performed_once(store, audit, journal, clock) -> None:
    ex = _executor(store, audit, journal, clock)
    req = _request()
    await store.claim_action(req, "inc-1", clock())  # crashed before calling the vendor
    clock.advance(minutes=10)
    outcome = await ex.execute(req, "inc-1")
    assert outcome.status == "executed" and outcome.performed
    assert len(_journal(journal)) == 1
    record = await store.get_action(req.idempotency_key)
    assert record is not None and record.attempts == 2


async def test_fresh_claim_of_another_worker_is_left_alone(store, audit, journal, clock) -> None:
    ex = _executor(store, audit, journal, clock)
    req = _request()
    await store.claim_action(req, "inc-1", clock())
    outcome = await ex.execute(req, "inc-1")
    assert outcome.status == "in_progress" and not outcome.performed
    assert _journal(journal) == []


async def test_denied_call_fails_and_is_audited(store, audit, journal, clock) -> None:
    ex = _executor(store, audit, journal, clock, scopes=["containment:read"])
    outcome = await ex.execute(_request(), "inc-1")
    assert outcome.status == "failed" and "host:contain" in outcome.detail
    assert _journal(journal) == []
    events = await audit.list(limit=10)
    assert [e.action for e in events] == ["connector.denied", "action.execute"]
    assert events[0].details["missing_scopes"] == ["host:contain"]


async def test_rollback_calls_the_inverse_once(store, audit, journal, clock) -> None:
    ex = _executor(store, audit, journal, clock)
    req = _request("block_ip", "203.0.113.77", EntityType.IP)
    await ex.execute(req, "inc-1")
    undone = await ex.rollback(req.id, actor="alice", reason="false positive")
    assert undone.status == "rolled_back"
    again = await ex.rollback(req.id, actor="alice", reason="again")
    assert again.status == "rolled_back" and not again.performed
    assert [e["action"] for e in _journal(journal)] == ["block_ip", "unblock_ip"]
    rb = [e for e in await audit.list(limit=20) if e.action == "action.rollback"]
    assert len(rb) == 1 and rb[0].actor == "alice"


async def test_concurrent_rollbacks_call_the_inverse_once(store, audit, journal, clock) -> None:
    ex = _executor(store, audit, journal, clock)
    req = _request("block_ip", "203.0.113.77", EntityType.IP)
    await ex.execute(req, "inc-1")
    outcomes = await asyncio.gather(
        *(ex.rollback(req.id, actor=f"analyst-{i}", reason="false positive") for i in range(10))
    )
    assert sum(o.performed for o in outcomes) == 1
    assert [e["action"] for e in _journal(journal)] == ["block_ip", "unblock_ip"]
    record = await store.get_action(req.idempotency_key)
    assert record is not None and record.status == "rolled_back"
    rb = [e for e in await audit.list(limit=50) if e.action == "action.rollback"]
    assert [e.outcome for e in rb] == ["rolled_back"]


class _FirewallConfig(BaseModel):
    pass


class _Blocked(BaseModel):
    target: str
    reason: str = ""
    idempotency_key: str | None = None


class _Done(BaseModel):
    ok: bool = True


class _FlakyFirewall(Connector):
    """A firewall whose unblock fails the first time it is asked."""

    name = "firewall"
    config_model = _FirewallConfig

    def __init__(self, config: _FirewallConfig) -> None:
        super().__init__(config)
        self.unblocks = 0

    @capability(kind="action", scopes=["fw:write"], target="ip", rollback="unblock_ip")
    async def block_ip(self, args: _Blocked) -> _Done:
        """Block."""
        return _Done()

    @capability(kind="action", scopes=["fw:write"], target="ip")
    async def unblock_ip(self, args: _Blocked) -> _Done:
        """Unblock; the first attempt times out at the vendor."""
        self.unblocks += 1
        if self.unblocks == 1:
            raise ConnectorError("firewall answered 504")
        return _Done()


async def test_a_failed_rollback_leaves_the_action_executed_for_a_retry(
    store, audit, clock
) -> None:
    firewall = _FlakyFirewall(_FirewallConfig())
    gateway = Gateway({"firewall": firewall}, {"firewall": ["fw:write"]}, audit, clock=clock)
    ex = Executor(store, gateway, audit, actor="soc-agent", clock=clock)
    req = _request("block_ip", "203.0.113.77", EntityType.IP).model_copy(
        update={"connector": "firewall"}
    )
    await ex.execute(req, "inc-1")
    failed = await ex.rollback(req.id, actor="alice", reason="fp")
    assert failed.status == "failed" and not failed.performed
    record = await store.get_action(req.idempotency_key)
    assert record is not None and record.status == "executed"
    retried = await ex.rollback(req.id, actor="alice", reason="fp, again")
    assert retried.status == "rolled_back" and retried.performed
    assert firewall.unblocks == 2


async def test_auto_revert_after_ttl(store, audit, journal, clock) -> None:
    ex = _executor(store, audit, journal, clock)
    req = _request("block_ip", "203.0.113.77", EntityType.IP, revert_after=24 * 3600)
    await ex.execute(req, "inc-1")
    clock.advance(hours=23)
    assert await ex.revert_due() == []
    clock.advance(hours=2)
    reverted = await ex.revert_due()
    assert [o.status for o in reverted] == ["rolled_back"]
    assert await ex.revert_due() == []
    assert [e["action"] for e in _journal(journal)] == ["block_ip", "unblock_ip"]


async def test_audit_chain_stays_valid(store, audit, journal, clock) -> None:
    ex = _executor(store, audit, journal, clock)
    for target in ("ws-1", "ws-2", "ws-3"):
        await ex.execute(_request(target=target), "inc-1")
    result = await audit.verify()
    # each action: the gateway's record of the call, then the executor's verified outcome
    assert result.ok and result.count == 6
    actions = [e.action for e in await audit.list(limit=10)]
    assert actions == ["connector.isolate_host", "action.execute"] * 3

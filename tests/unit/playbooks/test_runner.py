"""The investigation runner: DAG order and concurrency, failures as evidence, budgets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from soc_agent.errors import ConnectorError
from soc_agent.models import EvidenceStatus
from soc_agent.playbooks import RecordedStepExecutor, investigate
from tests.unit.playbooks.pb_helpers import (
    BAD_HASH,
    OTHER_HASH,
    T0,
    asset,
    intel,
    make_alert,
    make_incident,
    playbook,
    search,
)

PB = """
name: runner-test
match: "true"
budget: {max_steps: 10, max_seconds: 20}
steps:
  - id: host_asset
    connector: asset_inventory
    capability: lookup_asset
    args: {type: host, value: "${alert.hosts[0]}"}
  - id: hash_intel
    connector: threat_intel
    capability: lookup
    for_each: alert.file_hashes
    args: {indicator: "${item}", type: file_hash}
  - id: host_events
    connector: event_store
    capability: search
    needs: [host_asset]
    when: steps.host_asset.result.criticality != "low"
    args:
      entity_type: host
      value: "${steps.host_asset.result.value}"
      around: "${alert.created_at}"
      window_minutes: 60
score: {rules: []}
"""


async def _run(pb_text: str, executor: Any, **kwargs: Any) -> Any:
    alert = make_alert()
    return await investigate(
        playbook(pb_text),
        alert,
        make_incident(alert),
        executor,
        investigation_id="inv-1",
        now=lambda: T0,
        **kwargs,
    )


async def test_recorded_investigation_produces_evidence_in_playbook_order() -> None:
    executor = RecordedStepExecutor(
        {
            "host_asset": {"result": asset("ws-fin-042", "high")},
            "hash_intel": [
                {"item": OTHER_HASH, "result": intel(OTHER_HASH, "unknown")},
                {"item": BAD_HASH, "result": intel(BAD_HASH, "malicious")},
            ],
            "host_events": {"result": search(12, {"process": 12})},
        }
    )
    inv = await _run(PB, executor)
    assert inv.concluded
    assert inv.reason is None
    assert [e.step for e in inv.evidence] == ["host_asset", "hash_intel", "host_events"]
    assert all(e.status is EvidenceStatus.OK for e in inv.evidence)
    assert inv.steps_used == 4  # one call + two for_each items + one call
    events = inv.by_step()["host_events"]
    assert events.query == {
        "entity_type": "host",
        "value": "ws-fin-042",
        "around": "2026-11-20T10:33:00Z",
        "window_minutes": 60,  # a whole-string template keeps its type; literals stay literal
    }
    hashes = inv.by_step()["hash_intel"]
    assert hashes.query == {
        "for_each": [
            {"indicator": BAD_HASH, "type": "file_hash"},
            {"indicator": OTHER_HASH, "type": "file_hash"},
        ]
    }
    # matched by item, not by call order
    assert [(r["item"], r["result"]["verdict"]) for r in hashes.result] == [
        (BAD_HASH, "malicious"),
        (OTHER_HASH, "unknown"),
    ]


@dataclass
class BarrierExecutor:
    """host_asset waits until hash_intel has started: only concurrency lets both finish."""

    log: list[str] = field(default_factory=list)
    intel_started: asyncio.Event = field(default_factory=asyncio.Event)

    async def run_step(
        self, step_id: str, connector: str, capability: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        self.log.append(f"start {step_id}")
        if step_id == "hash_intel":
            self.intel_started.set()
            await asyncio.sleep(0)
        if step_id == "host_asset":
            await self.intel_started.wait()
        self.log.append(f"end {step_id}")
        if step_id == "host_asset":
            return asset("ws-fin-042", "high")
        if step_id == "hash_intel":
            return intel(str(args["indicator"]), "malicious")
        return search(3)


async def test_independent_steps_overlap_and_dependents_wait() -> None:
    executor = BarrierExecutor()
    inv = await asyncio.wait_for(_run(PB, executor), timeout=5)
    assert inv.concluded
    log = executor.log
    # host_asset started, then hash_intel started before host_asset ended: they overlapped.
    assert log.index("start hash_intel") < log.index("end host_asset")
    assert log.index("start host_asset") < log.index("end host_asset")
    # host_events needs host_asset: it starts only after host_asset ended.
    assert log.index("start host_events") > log.index("end host_asset")


async def test_failed_dependency_skips_dependents_and_denials_are_recorded() -> None:
    executor = RecordedStepExecutor(
        {
            "host_asset": {"error": "asset_inventory.lookup_asset: timed out after 30s"},
            "hash_intel": [
                {"item": BAD_HASH, "denied": "threat_intel.lookup needs scope(s) intel:read"},
                {"item": OTHER_HASH, "denied": "threat_intel.lookup needs scope(s) intel:read"},
            ],
        }
    )
    inv = await _run(PB, executor)
    ev = inv.by_step()
    assert ev["host_asset"].status is EvidenceStatus.ERROR
    assert ev["host_asset"].error == "asset_inventory.lookup_asset: timed out after 30s"
    assert ev["hash_intel"].status is EvidenceStatus.DENIED
    assert ev["host_events"].status is EvidenceStatus.SKIPPED
    assert ev["host_events"].error == "skipped: needs 'host_asset', which ended error"
    assert inv.concluded  # failures are evidence; only an exhausted budget prevents concluding
    assert [c[0] for c in executor.calls].count("host_events") == 0


async def test_when_false_skips_and_runtime_template_errors_are_evidence() -> None:
    text = PB.replace('value: "${alert.hosts[0]}"}', 'value: "${alert.hosts[3]}"}')
    executor = RecordedStepExecutor(
        {
            "hash_intel": [
                {"result": intel(BAD_HASH, "malicious")},
                {"result": intel(OTHER_HASH, "benign")},
            ]
        }
    )
    inv = await _run(text, executor)
    ev = inv.by_step()
    assert ev["host_asset"].status is EvidenceStatus.ERROR
    assert "index out of bounds" in (ev["host_asset"].error or "")
    assert ev["host_events"].status is EvidenceStatus.SKIPPED

    low = RecordedStepExecutor(
        {
            "host_asset": {"result": asset("ws-fin-042", "low")},
            "hash_intel": {"result": intel(BAD_HASH, "malicious")},
        }
    )
    inv = await _run(PB, low)
    assert inv.by_step()["host_events"].status is EvidenceStatus.SKIPPED
    assert "`when` is false" in (inv.by_step()["host_events"].error or "")


async def test_for_each_partial_failure_keeps_the_step_ok_with_per_item_errors() -> None:
    executor = RecordedStepExecutor(
        {
            "host_asset": {"result": asset("ws-fin-042")},
            "hash_intel": [
                {"args": {"indicator": BAD_HASH}, "result": intel(BAD_HASH, "malicious")},
                {"args": {"indicator": OTHER_HASH}, "error": "threat_intel.lookup: HTTP 429"},
            ],
            "host_events": {"result": search(0)},
        }
    )
    inv = await _run(PB, executor)
    step = inv.by_step()["hash_intel"]
    assert step.status is EvidenceStatus.OK
    assert step.error == "1 of 2 items failed; first: threat_intel.lookup: HTTP 429"
    assert [(r["ok"], r["error"]) for r in step.result] == [
        (True, None),
        (False, "threat_intel.lookup: HTTP 429"),
    ]


async def test_missing_recording_is_an_error_result() -> None:
    inv = await _run(PB, RecordedStepExecutor({}))
    assert inv.by_step()["host_asset"].error == "no recorded result for step host_asset"


async def test_step_budget_leaves_remaining_steps_not_run() -> None:
    text = PB.replace("max_steps: 10", "max_steps: 2")
    executor = RecordedStepExecutor(
        {
            "host_asset": {"result": asset("ws-fin-042")},
            "hash_intel": {"result": intel(BAD_HASH, "malicious")},
            "host_events": {"result": search(1)},
        }
    )
    inv = await _run(text, executor)
    ev = inv.by_step()
    assert not inv.concluded
    assert (inv.reason or "").startswith("step budget exhausted: 2 calls allowed")
    assert ev["host_asset"].status is EvidenceStatus.OK
    # hash_intel needs two calls, only one is left: it does not run, nor does anything after it.
    assert ev["hash_intel"].status is EvidenceStatus.NOT_RUN
    assert ev["host_events"].status is EvidenceStatus.NOT_RUN
    assert inv.steps_used == 1
    assert {c[0] for c in executor.calls} == {"host_asset"}


@dataclass
class FakeMonotonic:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class SlowExecutor:
    """Each call moves the injected clock; `hang` steps never return on their own."""

    clock: FakeMonotonic
    cost: dict[str, float]
    hang: set[str] = field(default_factory=set)
    cancelled: list[str] = field(default_factory=list)

    async def run_step(
        self, step_id: str, connector: str, capability: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        if step_id in self.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(step_id)
                raise
        self.clock.now += self.cost.get(step_id, 0.0)
        await asyncio.sleep(0)
        if step_id == "host_asset":
            return asset("ws-fin-042", "high")
        if step_id == "hash_intel":
            return intel(str(args["indicator"]), "malicious")
        return search(1)


async def test_time_budget_measured_on_the_injected_clock() -> None:
    clock = FakeMonotonic()
    executor = SlowExecutor(clock, cost={"host_asset": 25.0})
    text = PB.replace(
        "for_each: alert.file_hashes", "needs: [host_asset]\n    for_each: alert.file_hashes"
    )
    inv = await _run(text, executor, monotonic=clock)
    ev = inv.by_step()
    assert not inv.concluded
    assert (inv.reason or "").startswith("time budget exhausted: 20s")
    assert ev["host_asset"].status is EvidenceStatus.OK
    assert ev["host_asset"].latency_ms == pytest.approx(25000.0)
    assert ev["hash_intel"].status is EvidenceStatus.NOT_RUN
    assert ev["host_events"].status is EvidenceStatus.NOT_RUN


async def test_time_budget_cancels_running_steps() -> None:
    clock = FakeMonotonic()
    executor = SlowExecutor(clock, cost={"host_asset": 30.0}, hang={"hash_intel"})
    inv = await asyncio.wait_for(_run(PB, executor, monotonic=clock), timeout=5)
    ev = inv.by_step()
    assert not inv.concluded
    assert executor.cancelled == ["hash_intel", "hash_intel"]  # both items were cancelled
    assert ev["hash_intel"].status is EvidenceStatus.NOT_RUN
    assert (ev["hash_intel"].error or "").startswith("cancelled: time budget exhausted")
    assert ev["hash_intel"].query["for_each"][0]["indicator"] == BAD_HASH
    assert ev["host_events"].status is EvidenceStatus.NOT_RUN


async def test_executor_bug_becomes_error_evidence() -> None:
    class Broken:
        async def run_step(self, *args: Any) -> dict[str, Any]:
            raise ValueError("unexpected payload")

    inv = await _run(PB, Broken())
    assert inv.by_step()["host_asset"].error == "ValueError: unexpected payload"
    assert inv.concluded


async def test_connector_error_type_is_what_recordings_raise() -> None:
    executor = RecordedStepExecutor({"x": {"error": "boom"}})
    with pytest.raises(ConnectorError, match="boom"):
        await executor.run_step("x", "threat_intel", "lookup", {})

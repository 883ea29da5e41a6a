"""The worker's /metrics text, /healthz and /readyz verdicts, computed from snapshots."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from soc_agent.errors import ConfigError
from soc_agent.runtime.kafka.health import liveness, readiness
from soc_agent.runtime.kafka.metrics import (
    BrokerContact,
    Histogram,
    WorkerReport,
    WorkerSnapshot,
    process_rss_bytes,
    render_metrics,
)
from soc_agent.settings import load_settings
from tests.unit.runtime.exposition import parse


def _snapshot(**changes: Any) -> WorkerSnapshot:
    report = WorkerReport(
        records=1250,
        alerts=1180,
        dead_letters=62,
        filtered=8,
        approvals={"executed": 3, "rejected": 1, "dead_letter": 2},
        closings={"closed": 4, "duplicate": 2, "dead_letter": 1},
        outcomes={"new": 410, "grouped": 600, "duplicate": 120, "redelivered": 50},
        commits=97,
        commit_failures=2,
        pauses=4,
        max_in_flight_seen=32,
        dropped_on_revoke=1,
    )
    latency = Histogram()
    for seconds in (0.004, 0.01, 0.2, 0.2, 1.5, 45.0, 400.0):
        latency.observe(seconds)
    base = WorkerSnapshot(
        report=report,
        in_flight=7,
        in_flight_limit=32,
        paused=False,
        running=True,
        loop_age=0.2,
        assigned=(("soc.alerts", 0), ("soc.alerts", 3), ("soc.approvals", 0)),
        in_group=True,
        broker_ok=True,
        broker_error=None,
        broker_state_age=12.0,
        latency=latency,
        committed={("soc.alerts", 0): 812, ("soc.alerts", 3): 440, ("soc.approvals", 0): 6},
        publish_retries=5,
        producer_renewals=1,
    )
    return replace(base, **changes)


def test_histogram_buckets_are_cumulative_and_bounds_inclusive() -> None:
    h = Histogram((0.1, 1.0, 10.0))
    for v in (0.05, 0.1, 0.5, 1.0, 10.0, 11.0):
        h.observe(v)
    assert h.cumulative() == [(0.1, 2), (1.0, 4), (10.0, 5), (math.inf, 6)]
    assert h.count == 6 and h.sum == pytest.approx(22.65)
    copy = h.copy()
    h.observe(0.01)
    assert copy.count == 6, "a snapshot's histogram does not move with the worker's"
    with pytest.raises(ValueError, match="ascending"):
        Histogram((1.0, 0.5))


def test_metrics_carry_every_worker_count_in_valid_exposition_format() -> None:
    text = render_metrics(_snapshot(), rss_bytes=123_456_789)
    families = parse(text)
    expect = {
        "soc_worker_records_consumed_total": 1250,
        "soc_worker_alerts_processed_total": 1180,
        "soc_worker_dead_letters_total": 62,
        "soc_worker_records_filtered_total": 8,
        "soc_worker_commits_total": 97,
        "soc_worker_commit_failures_total": 2,
        "soc_worker_pauses_total": 4,
        "soc_worker_dropped_on_revoke_total": 1,
        "soc_worker_publish_retries_total": 5,
        "soc_worker_producer_renewals_total": 1,
        "soc_worker_in_flight": 7,
        "soc_worker_in_flight_max": 32,
        "soc_worker_in_flight_limit": 32,
        "soc_worker_paused": 0,
        "soc_worker_broker_up": 1,
        "soc_worker_loop_age_seconds": 0.2,
        "process_resident_memory_bytes": 123_456_789,
    }
    for name, value in expect.items():
        assert families[name].value() == value, name
    for name, family in families.items():
        assert family.help, f"{name} has no HELP"
        if name.endswith("_total"):
            assert family.type == "counter", name
    assert families["soc_worker_decisions_total"].by("outcome") == {
        "new": 410,
        "grouped": 600,
        "duplicate": 120,
        "redelivered": 50,
    }
    assert families["soc_worker_approvals_total"].by("result") == {
        "executed": 3,
        "rejected": 1,
        "dead_letter": 2,
    }
    assert families["soc_worker_closings_total"].by("result") == {
        "closed": 4,
        "duplicate": 2,
        "dead_letter": 1,
    }
    assert families["soc_worker_assigned_partitions"].by("topic") == {
        "soc.alerts": 2,
        "soc.approvals": 1,
    }
    committed = families["soc_worker_committed_offset"]
    assert committed.value(topic="soc.alerts", partition="3") == 440
    assert len(committed.samples) == 3

    latency = families["soc_worker_processing_seconds"]
    assert latency.type == "histogram"
    buckets = latency.by("le", "_bucket")
    # 0.004 and 0.01 are at or below 0.01; 400 s only in +Inf.
    assert buckets["0.01"] == 2 and buckets["0.25"] == 4 and buckets["120"] == 6
    assert buckets["+Inf"] == latency.value("_count") == 7
    assert latency.value("_sum") == pytest.approx(446.914)


def test_paused_saturated_worker_and_missing_rss() -> None:
    families = parse(
        render_metrics(_snapshot(paused=True, in_flight=32, broker_ok=False), rss_bytes=None)
    )
    assert families["soc_worker_paused"].value() == 1
    assert families["soc_worker_broker_up"].value() == 0
    assert "process_resident_memory_bytes" not in families


def test_label_values_are_escaped() -> None:
    odd = 'we"ird\\topic\nname'
    text = render_metrics(_snapshot(assigned=((odd, 0),), committed={(odd, 0): 5}))
    families = parse(text)
    # The parser splits on lines: an unescaped newline or quote would fail it.
    assert families["soc_worker_assigned_partitions"].by("topic") == {odd: 1}


def test_an_empty_worker_renders_valid_families() -> None:
    snap = _snapshot(report=WorkerReport(), assigned=(), committed={}, latency=Histogram())
    families = parse(render_metrics(snap))
    assert families["soc_worker_decisions_total"].samples == {}
    assert families["soc_worker_processing_seconds"].value("_count") == 0


def test_rss_is_read_on_linux() -> None:
    rss = process_rss_bytes()
    if rss is None:
        pytest.skip("no /proc/self/statm here")
    assert 10 * 1024 * 1024 < rss < 64 * 1024 * 1024 * 1024


@pytest.mark.parametrize(
    ("changes", "alive"),
    [
        ({}, True),
        ({"loop_age": 59.0}, True),
        ({"loop_age": 61.0}, False),
        ({"loop_age": 61.0, "running": False}, True),  # draining on purpose at shutdown
        ({"broker_ok": False, "broker_error": "commit failed (KafkaTimeoutError)"}, True),
        ({"assigned": (), "in_group": False}, True),
    ],
)
def test_liveness_fails_only_on_a_stalled_loop(changes: dict[str, Any], alive: bool) -> None:
    ok, body = liveness(_snapshot(**changes), stale_after=60.0)
    assert ok is alive
    assert body["status"] == ("ok" if alive else "stalled")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"assigned": (), "in_group": True}, None),  # more workers than partitions: idle, ready
        ({"in_group": False}, None),  # holds partitions while the coordinator moves
        ({"assigned": (), "in_group": False}, "no partitions assigned"),
        ({"assigned": (), "in_group": None}, "no partitions assigned"),
        (
            {"broker_ok": False, "broker_error": "metadata request failed (KafkaError)"},
            "brokers unreachable for 12s: metadata request failed (KafkaError)",
        ),
        ({"running": False}, "shutting down"),
        ({"loop_age": 75.0}, "consume loop stalled for 75s"),
    ],
)
def test_readiness_names_what_is_missing(changes: dict[str, Any], reason: str | None) -> None:
    ok, body = readiness(_snapshot(**changes), stale_after=60.0)
    assert ok is (reason is None)
    if reason is None:
        assert body["status"] == "ready" and "reasons" not in body
    else:
        assert body["status"] == "not ready"
        assert any(reason in r for r in body["reasons"]), body["reasons"]


def test_broker_contact_tracks_the_latest_outcome() -> None:
    now = [100.0]
    contact = BrokerContact(clock=lambda: now[0])
    assert contact.ok and contact.error is None
    now[0] = 105.0
    contact.failed("publish", ConnectionRefusedError("127.0.0.1:9092 refused"))
    now[0] = 107.0
    contact.failed("commit", TimeoutError())
    assert not contact.ok
    assert contact.error == "commit failed (TimeoutError)"
    assert contact.age() == 2.0, "the outage is dated from its first failure"
    assert contact.failures == 2
    contact.succeeded()
    assert contact.ok and contact.error is None and contact.age() == 0.0


def test_health_settings_default_to_off_and_loopback() -> None:
    kafka = load_settings().kafka
    assert kafka.health_port == 0
    assert kafka.health_host == "127.0.0.1"


def test_liveness_threshold_must_outlast_a_commit_attempt() -> None:
    with pytest.raises(ConfigError, match="health_stale_seconds"):
        load_settings(kafka={"health_stale_seconds": 10, "commit_timeout_seconds": 15})

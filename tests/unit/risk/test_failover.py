"""Risk records across a stream worker's failover, replayed through the stream app's step.

What at-least-once delivery may do to an entity's alerts when a worker dies: replay
them after the newest state was lost (the changelog write did not make it, the record
did), or deliver a stretch of them after later ones (the takeover). A replay in the
same order raises the same record, same id; a different order may anchor an episode's
record to another of its overlapping windows (another id, as the stream app did in the
two-worker SIGKILL test against the embedded ledger), but in any order an entity's
records never overlap and every window reaching the threshold overlaps one of them.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from soc_agent.ingest import normalize
from soc_agent.models import Alert, Severity
from soc_agent.playbooks.context import alert_context
from soc_agent.risk import RiskConfig, RiskLedger, risk_record_id
from soc_agent.risk.ledger import EntityRisk, risk_entities, window_starts
from soc_agent.risk.rules import RiskRules
from tests.unit.risk.test_ledger import HOUR, T0, AlertSpec, alert_specs, alerts_of
from tests.unit.risk.test_ledger import _alert as ledger_alert
from tests.unit.risk.test_ledger import _rules as ledger_rules

POINTS = {"informational": 1, "low": 5, "medium": 10, "high": 20, "critical": 35}
CONFIG = RiskConfig(window_seconds=6 * HOUR, hop_seconds=2 * HOUR, threshold=30)


def _rules(tmp: Path) -> RiskRules:
    rules = ledger_rules(tmp)
    assert isinstance(rules, RiskRules)
    return rules


def _alert(
    n: int, at: datetime, severity: Severity = Severity.MEDIUM, hosts: tuple[str, ...] = ("srv-db",)
) -> Alert:
    return ledger_alert(n, at=at, severity=severity, hosts=hosts)


def _at(hour: float) -> datetime:
    return T0 + timedelta(hours=hour)


class _Table:
    """The stream app's step for each alert (`accumulate`): per entity, the state as its
    changelog holds it (JSON), the alert added, the state written back."""

    def __init__(self, rules: RiskRules, config: RiskConfig = CONFIG) -> None:
        self.rules, self.config = rules, config
        self.changelog: dict[str, dict[str, Any]] = {}

    def add(self, alert: Alert) -> list[dict[str, Any]]:
        context = self.rules.alert_view(alert_context(alert))
        raised: list[dict[str, Any]] = []
        for entity in risk_entities(alert, self.config):
            stored = self.changelog.get(entity.key)
            state = EntityRisk.from_json(stored) if stored else EntityRisk(entity.key)
            raised += state.add(alert, context, entity, self.rules, self.config)
            self.changelog[entity.key] = state.to_json()
        return raised


def _windows(records: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(entity key, window start) of each record, checking its id is derived from both."""
    out = []
    for record in records:
        body = record["soc_risk"]
        key = f"{body['entity']['type']}:{body['entity']['value']}"
        start = int(datetime.fromisoformat(body["window"]["start"]).timestamp())
        assert body["id"] == risk_record_id(key, start)
        out.append((key, start))
    return out


def _reference(alerts: list[Alert], config: RiskConfig) -> dict[tuple[str, int], int]:
    """Each window's total the plain way: every distinct alert's points in every window."""
    totals: dict[tuple[str, int], int] = {}
    for alert in {a.id: a for a in alerts}.values():
        for start in window_starts(int(alert.created_at.timestamp()), config):
            for key in {e.key for e in alert.entities}:
                totals[(key, start)] = totals.get((key, start), 0) + POINTS[alert.severity]
    return totals


def _check_episodes(
    windows: list[tuple[str, int]], alerts: list[Alert], config: RiskConfig
) -> None:
    """What holds in any delivery order: each record's window reached the threshold, an
    entity's records never overlap, and each window reaching it overlaps one of them."""
    totals = _reference(alerts, config)
    size = config.window_seconds
    assert len(set(windows)) == len(windows)
    for key, start in windows:
        assert totals[(key, start)] >= config.threshold, (key, start)
        assert not [s for k, s in windows if k == key and 0 < abs(s - start) < size]
    for (key, start), total in totals.items():
        if total >= config.threshold:
            assert [s for k, s in windows if k == key and abs(s - start) < size], (key, start)


def test_a_replay_after_lost_state_raises_the_same_record_again(tmp_path: Path) -> None:
    """The worker raised the record, then died before the state's changelog write: the
    worker taking over replays the alerts from the committed offset onto the state it
    recovered, and raises the very same record (same id and window), which the workers
    deciding alerts recognise as a redelivery."""
    alerts = [_alert(n, _at(n / 2)) for n in range(6)]  # 10 points every 30 minutes
    table = _Table(_rules(tmp_path))
    assert table.add(alerts[0]) == [] and table.add(alerts[1]) == []
    recovered = dict(table.changelog)  # the last state the changelog holds
    (first,) = table.add(alerts[2])  # published; the state written with it is lost
    assert table.add(alerts[3]) == []

    table.changelog = recovered
    again = [r for a in alerts[2:] for r in table.add(a)]
    assert again == [first]
    assert normalize(again[0]).id == normalize(first).id == f"soc_risk:{first['soc_risk']['id']}"


def test_alerts_delivered_late_move_the_record_to_an_overlapping_window(
    tmp_path: Path,
) -> None:
    """In event order the window starting 02:00 reaches 30 first; with the 02:30 alert
    delivered after the others (a takeover's replay), the window starting 04:00 does, and
    the record is that window's: another id for the same episode, never a second one."""
    alerts = [_alert(1, _at(2.5)), _alert(2, _at(6.5)), _alert(3, _at(7)), _alert(4, _at(8.5))]
    rules = _rules(tmp_path)
    in_order = _Table(rules)
    late = _Table(rules)
    ordered = _windows([r for a in alerts for r in in_order.add(a)])
    shifted = _windows([r for a in [*alerts[1:], alerts[0]] for r in late.add(a)])

    day = int(T0.timestamp())
    assert ordered == [("host:srv-db", day + 2 * HOUR)]
    assert shifted == [("host:srv-db", day + 4 * HOUR)]
    for windows in (ordered, shifted):
        _check_episodes(windows, alerts, CONFIG)


def test_an_alert_delivered_late_raises_an_earlier_window_nothing_covers(
    tmp_path: Path,
) -> None:
    """Two episodes ten hours apart. Delivered in event order each raises its record; with
    the earlier episode's alerts delivered after the later one's, its window is no less
    over the threshold and overlaps no record: it is raised too (the state keeps every
    window it raised, not only the newest, which would have blocked every earlier one)."""
    early = [_alert(n, _at(10 + n / 2)) for n in range(3)]  # 10:00-11:00
    later = [_alert(10 + n, _at(20 + n / 2)) for n in range(3)]  # 20:00-21:00
    rules = _rules(tmp_path)
    day = int(T0.timestamp())
    for order in ([*early, *later], [*later, *early]):
        table = _Table(rules)
        windows = _windows([r for a in order for r in table.add(a)])
        assert sorted(windows) == [
            ("host:srv-db", day + 6 * HOUR),
            ("host:srv-db", day + 16 * HOUR),
        ]
        _check_episodes(windows, order, CONFIG)

    # The embedded runtime's ledger is the same code: the same records, in either order.
    ledger = RiskLedger(rules, CONFIG)
    assert len([r for a in [*later, *early] for r in ledger.add(a)]) == 2


def test_a_state_written_before_it_kept_every_raised_window_still_reads(
    tmp_path: Path,
) -> None:
    """A changelog written by an earlier version holds only the last raised window."""
    day = int(T0.timestamp())
    state = EntityRisk.from_json({"key": "host:srv-db", "raised": day, "watermark": day})
    assert state.raised == [day] and state.last_raised == day
    assert EntityRisk.from_json({"key": "host:srv-db", "raised": None}).raised == []
    written = state.to_json()
    assert written["raised"] == day and written["raised_windows"] == [day]


@settings(max_examples=80, deadline=None)
@given(specs=alert_specs(["ws-1", "srv-db"], max_size=30), seed=st.integers(0, 2**32))
def test_in_any_order_records_never_overlap_and_cover_every_crossing(
    tmp_path_factory: Any, specs: list[AlertSpec], seed: int
) -> None:
    config = RiskConfig(window_seconds=6 * HOUR, hop_seconds=2 * HOUR, threshold=40)
    alerts = alerts_of(specs)
    rng = random.Random(seed)
    delivered = alerts + rng.choices(alerts, k=len(alerts) // 2)  # at-least-once: repeats
    rng.shuffle(delivered)
    table = _Table(_rules(tmp_path_factory.mktemp("rules")), config)
    _check_episodes(_windows([r for a in delivered for r in table.add(a)]), alerts, config)

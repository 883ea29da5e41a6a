"""The risk ledger: hopping windows, exact totals under redelivery, one risk record per
entity and window."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soc_agent.errors import ConfigError
from soc_agent.ingest import normalize
from soc_agent.models import Alert, Entity, EntityType, Rule, Severity
from soc_agent.risk import (
    RiskConfig,
    RiskLedger,
    load_risk_rules,
    risk_record_id,
    shipped_risk_rules_dir,
)
from soc_agent.risk.ledger import EntityRisk, window_starts

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
HOUR = 3600
SEVERITY_ONLY = (
    "rules:\n"
    "  - id: severity\n"
    "    description: by severity\n"
    '    points: \'{"informational": 1, "low": 5, "medium": 10, "high": 20, '
    '"critical": 35}[alert.severity]\'\n'
)


def _rules(tmp_path: Path, text: str = SEVERITY_ONLY) -> object:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return load_risk_rules([path])


def _ledger(tmp_path: Path, **config: object) -> RiskLedger:
    return RiskLedger(_rules(tmp_path), RiskConfig(**config))  # type: ignore[arg-type]


def _alert(
    n: int,
    *,
    at: datetime,
    severity: Severity = Severity.MEDIUM,
    hosts: tuple[str, ...] = ("ws-fin-031",),
    tactics: tuple[str, ...] = (),
) -> Alert:
    return Alert(
        id=f"test:{n}",
        format="test",
        vendor="acme",
        product="edr",
        rule=Rule(name="Suspicious activity"),
        title=f"alert {n}",
        severity=severity,
        created_at=at,
        entities=[Entity(type=EntityType.HOST, value=h) for h in hosts],
        tactics=list(tactics),
        original={},
    )


def test_an_alert_counts_in_every_window_holding_it(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, window_seconds=4 * HOUR, hop_seconds=HOUR)
    ledger.add(_alert(1, at=T0 + timedelta(hours=10, minutes=30)))
    starts = ledger.starts(int((T0 + timedelta(hours=10, minutes=30)).timestamp()))
    assert [datetime.fromtimestamp(s, UTC).hour for s in starts] == [7, 8, 9, 10]
    for start in starts:
        found = ledger.lookup(
            "host", "WS-FIN-031", datetime.fromtimestamp(start + 4 * HOUR - 1, UTC)
        )
        assert found["total"] == 10 and found["alert_count"] == 1
    later = ledger.lookup("host", "ws-fin-031", T0 + timedelta(hours=14, minutes=1))
    assert later["total"] == 0  # the window starting at 11:00 does not hold 10:30


def test_redelivery_adds_nothing_and_the_threshold_raises_once(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, threshold=30)
    first = [ledger.add(_alert(n, at=T0 + timedelta(hours=n))) for n in range(3)]
    assert first[0] == [] and first[1] == []
    (record,) = first[2]
    body = record["soc_risk"]
    assert body["total"] == 30 and body["alert_count"] == 3
    assert body["id"] == risk_record_id(
        "host:ws-fin-031", ledger.starts(int(T0.timestamp()) + 2 * HOUR)[0]
    )

    # Redelivered alerts and later alerts in the overlapping windows raise nothing more.
    assert ledger.add(_alert(2, at=T0 + timedelta(hours=2))) == []
    assert ledger.add(_alert(3, at=T0 + timedelta(hours=3))) == []
    assert ledger.lookup("host", "ws-fin-031")["total"] == 40

    # A window starting a whole window later may raise again.
    again = [ledger.add(_alert(n, at=T0 + timedelta(hours=30 + n))) for n in range(10, 13)]
    assert len(again[2]) == 1 and again[2][0]["soc_risk"]["id"] != body["id"]


def test_the_risk_record_normalizes_to_a_risk_alert(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, threshold=25)
    assert ledger.add(_alert(1, at=T0, severity=Severity.HIGH, tactics=("Execution",))) == []
    (record,) = ledger.add(_alert(2, at=T0 + timedelta(hours=1), severity=Severity.HIGH))
    alert = normalize(record)
    assert alert.format == "soc_risk" and alert.id == f"soc_risk:{record['soc_risk']['id']}"
    assert [e.key for e in alert.entities] == ["host:ws-fin-031"]
    assert alert.severity is Severity.HIGH  # 40 is over one and a half times the threshold
    assert alert.tactics == ["Execution"] and alert.labels["risk_total"] == "40"
    assert ledger.add(alert) == []  # risk alerts add no risk of their own


def test_contributions_past_the_bound_are_counted_as_dropped(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, max_contributions=10, threshold=1000)
    for n in range(15):
        ledger.add(_alert(n, at=T0 + timedelta(minutes=n)))
    found = ledger.lookup("host", "ws-fin-031")
    assert found["alert_count"] == 10 and found["dropped"] == 5 and found["total"] == 100


def test_alerts_older_than_every_kept_window_are_late(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.add(_alert(1, at=T0 + timedelta(days=10)))
    assert ledger.add(_alert(2, at=T0, severity=Severity.CRITICAL)) == []
    assert ledger.late == 1


def test_a_lookup_lists_the_fifty_highest_scoring_contributions(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, threshold=100_000)
    pick = random.Random(7)
    severities = [pick.choice(list(Severity)) for _ in range(60)]
    for n, severity in enumerate(severities):
        ledger.add(_alert(n, at=T0 + timedelta(minutes=n), severity=severity))
    found = ledger.lookup("host", "ws-fin-031", T0 + timedelta(hours=1))
    listed = [(c["alert_id"], c["points"]) for c in found["contributions"]]
    points = {"informational": 1, "low": 5, "medium": 10, "high": 20, "critical": 35}
    ranked = sorted(range(60), key=lambda n: (-points[severities[n].value], n))
    assert listed == [(f"test:{n}", points[severities[n].value]) for n in ranked[:50]]
    assert found["alert_count"] == 60


def test_contributions_three_windows_behind_the_newest_are_forgotten(tmp_path: Path) -> None:
    """Whatever order they came in: one older than those kept, arriving late but within
    reach, is forgotten in its turn."""
    ledger = _ledger(tmp_path, window_seconds=4 * HOUR, hop_seconds=HOUR, threshold=1000)
    for n, hours in enumerate((3.0, 10.0, 2.5)):
        ledger.add(_alert(n, at=T0 + timedelta(hours=hours)))
    early = T0 + timedelta(hours=3, minutes=30)  # its window holds 2:30 and 3:00
    assert ledger.lookup("host", "ws-fin-031", early)["alert_count"] == 2
    ledger.add(_alert(3, at=T0 + timedelta(hours=14, minutes=36)))  # forgets before 2:36
    assert ledger.lookup("host", "ws-fin-031", early)["alert_count"] == 1
    ledger.add(_alert(4, at=T0 + timedelta(hours=15, minutes=6)))  # forgets before 3:06
    assert ledger.lookup("host", "ws-fin-031", early)["alert_count"] == 0


@pytest.mark.parametrize("seed", range(4))
def test_what_an_entity_keeps_up_to_date_equals_a_walk_over_its_contributions(
    tmp_path: Path, seed: int
) -> None:
    """An entity's window history and hop sums are updated as contributions come instead
    of walking them all for each alert. After every alert (out of order, redelivered,
    late, past the history's 100 distinct names, forgetting old ones), each entity
    answers exactly as the same state read back from its JSON, which walks them all."""
    rules = load_risk_rules([shipped_risk_rules_dir()])
    ledger = RiskLedger(rules, RiskConfig(window_seconds=6 * HOUR, hop_seconds=HOUR))
    pick = random.Random(seed)
    names = [f"T{n:04d}" for n in range(150)]
    base = T0
    for n in range(300):
        base += timedelta(minutes=pick.choice([0, 5, 20, 60]))
        at = base - timedelta(minutes=pick.randrange(0, 14 * 60))  # some late, some too late
        alert = _alert(
            pick.randrange(n + 1) if pick.random() < 0.1 else n,  # now and then a redelivery
            at=at,
            severity=pick.choice(list(Severity)),
            hosts=tuple(pick.sample(["ws-1", "ws-2", "ws-3"], pick.randint(1, 2))),
            tactics=tuple(pick.sample(names, 3)),
        )
        ledger.add(alert)
        for state in ledger._entities.values():
            walked = EntityRisk.from_json(state.to_json())
            for start in window_starts(int(at.timestamp()), ledger.config):
                assert state.history(start, ledger.config) == walked.history(start, ledger.config)
                assert state.total(start, ledger.config) == walked.total(start, ledger.config)
                assert state.lookup(start, ledger.config) == walked.lookup(start, ledger.config)


def _reference(alerts: list[Alert], config: RiskConfig) -> dict[tuple[str, int], int]:
    """Totals computed the plain way: each distinct alert's points into each window."""
    points = {"informational": 1, "low": 5, "medium": 10, "high": 20, "critical": 35}
    unique = {a.id: a for a in alerts}
    totals: dict[tuple[str, int], int] = {}
    for alert in unique.values():
        moment = int(alert.created_at.timestamp())
        last = moment - moment % config.hop_seconds
        for start in range(
            last - config.window_seconds + config.hop_seconds, last + 1, config.hop_seconds
        ):
            for entity in {e.key for e in alert.entities}:
                totals[(entity, start)] = totals.get((entity, start), 0) + points[alert.severity]
    return totals


AlertSpec = tuple[int, Severity, set[str]]  # minutes after T0, severity, hosts


def alert_specs(hosts: list[str], *, max_size: int) -> st.SearchStrategy[list[AlertSpec]]:
    """Alerts within the lateness bound (two windows), on some of `hosts`."""
    return st.lists(
        st.tuples(
            st.integers(0, 11 * 60),
            st.sampled_from(list(Severity)),
            st.sets(st.sampled_from(hosts), min_size=1),
        ),
        min_size=1,
        max_size=max_size,
    )


def alerts_of(specs: list[AlertSpec]) -> list[Alert]:
    return [
        _alert(n, at=T0 + timedelta(minutes=m), severity=s, hosts=tuple(sorted(h)))
        for n, (m, s, h) in enumerate(specs)
    ]


@settings(max_examples=60, deadline=None)
@given(specs=alert_specs(["ws-1", "ws-2", "srv-db"], max_size=40), seed=st.integers(0, 2**32))
def test_totals_are_exact_under_any_order_and_redelivery(
    tmp_path_factory: object, specs: list[AlertSpec], seed: int
) -> None:
    tmp = tmp_path_factory.mktemp("rules")  # type: ignore[attr-defined]
    config = RiskConfig(window_seconds=6 * HOUR, hop_seconds=2 * HOUR, threshold=10**6)
    alerts = alerts_of(specs)
    rng = random.Random(seed)
    delivered = alerts + rng.choices(alerts, k=len(alerts))  # at-least-once: repeats
    rng.shuffle(delivered)
    ledger = RiskLedger(_rules(tmp), config)  # type: ignore[arg-type]
    for alert in delivered:
        ledger.add(alert)
    for (entity, start), total in _reference(alerts, config).items():
        kind, value = entity.split(":", 1)
        moment = datetime.fromtimestamp(start + config.window_seconds - 1, UTC)
        assert ledger.lookup(kind, value, moment)["total"] == total


def test_an_important_asset_weighs_more_when_the_asset_file_says_so(tmp_path: Path) -> None:
    from soc_agent.risk import shipped_risk_rules_dir
    from soc_agent.risk.assets import load_asset_criticality

    inventory = tmp_path / "assets.yaml"
    inventory.write_text(
        "assets:\n  - {type: host, value: DC01, criticality: critical, owner: it}\n"
        "  - {type: host, value: ws-1, criticality: low}\n",
        encoding="utf-8",
    )
    assets = load_asset_criticality(inventory)
    assert assets == {"host:dc01": "critical", "host:ws-1": "low"}
    ledger = RiskLedger(load_risk_rules([shipped_risk_rules_dir()]), RiskConfig(), assets)
    ledger.add(_alert(1, at=T0, hosts=("dc01", "ws-1")))
    dc = ledger.lookup("host", "dc01")["contributions"][0]["rules"]
    assert {r["id"] for r in dc} == {"severity", "important-asset"}
    ws = ledger.lookup("host", "ws-1")["contributions"][0]["rules"]
    assert {r["id"] for r in ws} == {"severity"}

    inventory.write_text("assets:\n  - {type: host, value: dc01, criticality: vital}\n")
    with pytest.raises(ConfigError) as caught:
        load_asset_criticality(inventory)
    assert caught.value.line == 2 and caught.value.key == "assets.0.criticality"

"""SQLite incidents are updated in place: an alert joining writes rows, never the whole
incident, and every reader (this process, another one, an older store) sees it whole."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from soc_agent.models import Entity, EntityType, Incident, Severity
from soc_agent.store import SQLiteStore

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _incident(alerts: int, *, entities: int | None = None) -> Incident:
    count = alerts if entities is None else entities
    return Incident(
        id="inc-1",
        title="beaconing",
        severity=Severity.MEDIUM,
        alert_ids=[f"a-{i}" for i in range(alerts)],
        entities=[
            Entity(type=EntityType.IP, value=f"10.0.{i // 250}.{i % 250}") for i in range(count)
        ],
        fingerprints=[f"fp-{i % 7}" for i in range(min(alerts, 7))],
        rules=["suricata:1"],
        first_seen=T0,
        last_seen=T0 + timedelta(seconds=alerts),
    )


def _joined(incident: Incident, n: int) -> Incident:
    """`incident` after alert `n` joins it with one new entity (as correlation extends)."""
    return incident.model_copy(
        update={
            "alert_ids": [*incident.alert_ids, f"a-{n}"],
            "entities": [*incident.entities, Entity(type=EntityType.HOST, value=f"ws-{n}")],
            "last_seen": T0 + timedelta(seconds=n),
            "duplicate_count": incident.duplicate_count + 1,
        }
    )


async def _traced(store: SQLiteStore, statements: list[str]) -> None:
    """Record every statement the store's connection runs, with its values bound."""
    await store._run(lambda db: db.set_trace_callback(statements.append))


async def test_an_alert_joining_a_large_incident_writes_a_few_rows(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        incident = _incident(400)
        await store.put_incident(incident)
        statements: list[str] = []
        await _traced(store, statements)
        grown = _joined(incident, 400)
        await store.put_incident(grown)
        written = [s for s in statements if s.startswith(("INSERT", "UPDATE", "DELETE"))]
        # The head, one alert id and one entity: not the 800 elements already stored.
        assert len(grown.model_dump_json()) > 25_000
        assert sum(len(s) for s in written) < 1_000, written
        assert "a-399" not in " ".join(written) and "ws-400" in " ".join(written)
        assert await store.get_incident("inc-1") == grown
    finally:
        store.close()


async def test_another_process_reads_the_incident_whole(tmp_path: Path) -> None:
    writer, reader = SQLiteStore(tmp_path / "s.db"), SQLiteStore(tmp_path / "s.db")
    try:
        incident = _incident(30)
        await writer.put_incident(incident)
        assert await reader.get_incident("inc-1") == incident
        for n in range(30, 35):
            incident = _joined(incident, n)
            await writer.put_incident(incident)
        # An entity gains an alias in place, as merging names does.
        aliased = incident.entities[3].model_copy(update={"aliases": {"nat": "192.0.2.7"}})
        incident = incident.model_copy(
            update={"entities": [*incident.entities[:3], aliased, *incident.entities[4:]]}
        )
        await writer.put_incident(incident)
        assert await reader.get_incident("inc-1") == incident
        assert await reader.list_incidents() == [incident]
        assert await SQLiteStore(tmp_path / "s.db").get_incident("inc-1") == incident
    finally:
        writer.close()
        reader.close()


async def test_a_write_from_a_stale_view_leaves_exactly_that_incident(tmp_path: Path) -> None:
    """Two writers, the last wins whole: no element of the other's version is left over."""
    first, second = SQLiteStore(tmp_path / "s.db"), SQLiteStore(tmp_path / "s.db")
    try:
        incident = _incident(10)
        await first.put_incident(incident)
        seen = await second.get_incident("inc-1")
        assert seen is not None
        await second.put_incident(_joined(_joined(seen, 10), 11))  # first's view is now stale
        shorter = incident.model_copy(update={"alert_ids": incident.alert_ids[:5]})
        await first.put_incident(shorter)
        assert await second.get_incident("inc-1") == shorter
        assert await SQLiteStore(tmp_path / "s.db").get_incident("inc-1") == shorter
    finally:
        first.close()
        second.close()


async def test_a_store_written_before_the_split_reads_and_grows_its_incidents(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    old = _incident(20)
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE incidents (id TEXT PRIMARY KEY, last_seen TEXT NOT NULL, doc TEXT NOT NULL)"
    )
    db.execute(
        "INSERT INTO incidents VALUES (?,?,?)",
        (old.id, old.last_seen.isoformat(), old.model_dump_json()),
    )
    db.commit()
    db.close()
    store = SQLiteStore(path)
    try:
        assert await store.get_incident("inc-1") == old
        grown = _joined(old, 20)
        await store.put_incident(grown)
        assert await SQLiteStore(path).get_incident("inc-1") == grown
        head = await store._run(
            lambda db: db.execute("SELECT doc, split FROM incidents").fetchone()
        )
        assert head[1] == 1 and "alert_ids" not in json.loads(head[0])
    finally:
        store.close()

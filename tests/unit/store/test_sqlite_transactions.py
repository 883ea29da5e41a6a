"""Writes the SQLite store makes together commit together (the connection is in autocommit
mode, where `with db:` opens no transaction, so each write says BEGIN itself), and what it
has written or read once it does not write or read again."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soc_agent.correlate.state import CorrelationWrites
from soc_agent.models import Alert, Entity, EntityType, Incident, Rule, Severity
from soc_agent.sqlite_setup import connect_private, transaction
from soc_agent.store import SQLiteStore

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_a_transaction_rolls_back_everything_when_it_fails(tmp_path: Path) -> None:
    db = connect_private(tmp_path / "t.db", timeout=1)
    db.execute("CREATE TABLE t (x)")

    def half_way() -> None:
        with transaction(db):
            db.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("between two writes")

    with pytest.raises(RuntimeError):
        half_way()
    with transaction(db):
        db.execute("INSERT INTO t VALUES (2)")
    assert db.execute("SELECT x FROM t").fetchall() == [(2,)]
    assert not db.in_transaction


async def test_a_correlation_that_fails_half_way_leaves_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    incident = Incident(
        id="inc-1",
        title="beaconing",
        severity=Severity.MEDIUM,
        alert_ids=["a-1"],
        entities=[Entity(type=EntityType.IP, value="10.0.0.1")],
        first_seen=T0,
        last_seen=T0,
    )
    # The fingerprint's time is not a datetime: the write fails after the incident's rows.
    broken = CorrelationWrites(
        incidents=[incident],
        entities=[("ip:10.0.0.1", "inc-1")],
        fingerprints=[("fp-1", "inc-1", "not a time")],  # type: ignore[list-item]
    )
    with pytest.raises(AttributeError):
        await store.apply_correlation(broken)
    assert await store.get_incident("inc-1") is None
    assert await store.find_by_entity("ip:10.0.0.1") is None
    store.close()
    # Another reader of the file sees nothing of it either.
    raw = sqlite3.connect(tmp_path / "store.db")
    assert raw.execute("SELECT COUNT(*) FROM incidents").fetchone() == (0,)


async def test_the_correlation_that_places_an_alert_saves_it_in_its_transaction(
    tmp_path: Path,
) -> None:
    from soc_agent.correlate.correlator import CorrelationConfig, Correlator

    store, statements = _traced_store(tmp_path)
    alert = _alert()
    placed = await Correlator(store, CorrelationConfig()).correlate(alert)
    assert any(s.startswith("INSERT INTO alerts") for s in statements)
    # Saved with the correlation's writes, before the agent asks: its save writes nothing.
    statements.clear()
    await store.save_alert(alert, placed.incident.id)
    assert statements == []
    assert await store.alerts_of(placed.incident.id) == [alert]
    # Saved again elsewhere (another incident, a later call): written.
    await store.save_alert(alert, None)
    assert any(s.startswith("INSERT INTO alerts") for s in statements)
    store.close()


async def test_an_alert_is_read_from_the_file_once(tmp_path: Path) -> None:
    store, statements = _traced_store(tmp_path)
    alert = _alert()
    await store.save_alert(alert, "inc-1")
    assert await store.get_alert("suricata:404") is None
    statements.clear()
    assert await store.get_alert(alert.id) == alert
    assert await store.get_alert(alert.id) == alert
    assert len([s for s in statements if s.startswith("SELECT doc FROM alerts")]) == 1
    # Saved again (it only gains an incident): its document, and so the held one, stand.
    await store.save_alert(alert.model_copy(update={"title": "changed"}), "inc-2")
    other = SQLiteStore(tmp_path / "store.db")
    assert await other.get_alert(alert.id) == alert
    other.close()
    store.close()


def _traced_store(tmp_path: Path) -> tuple[SQLiteStore, list[str]]:
    store = SQLiteStore(tmp_path / "store.db")
    statements: list[str] = []
    store._pool.submit(store._db.set_trace_callback, statements.append).result()
    return store, statements


def _alert() -> Alert:
    return Alert(
        id="suricata:1",
        format="suricata",
        vendor="OISF",
        product="Suricata",
        source_id="1",
        rule=Rule(id="2019401", name="ET POLICY beacon"),
        title="beacon",
        severity=Severity.MEDIUM,
        created_at=T0,
        received_at=T0,
        entities=[Entity(type=EntityType.IP, value="10.0.0.1")],
        original={"event_type": "alert"},
    )


@pytest.mark.parametrize("inline", [False, True])
async def test_an_inline_store_runs_its_statements_on_the_callers_thread(
    tmp_path: Path, inline: bool
) -> None:
    """`soc-agent run` opens the store inline (no hand-over to the store's thread and
    back per statement); every other process keeps the loop free of SQLite's waits."""
    store = SQLiteStore(tmp_path / "store.db", inline=inline)
    threads: set[int] = set()
    store._pool.submit(
        store._db.set_trace_callback, lambda _: threads.add(threading.get_ident())
    ).result()
    await store.set_flag("kill_switch", True)
    assert await store.get_flag("kill_switch") is True
    assert (threads == {threading.get_ident()}) is inline
    assert threads
    store.close()

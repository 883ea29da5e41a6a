"""The SQLite audit log on a real file: round trip, tampering, keys, concurrency."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from soc_agent.audit import GENESIS, SQLiteAuditLog, compute_hash, seal
from soc_agent.errors import StoreError
from soc_agent.models import AuditEvent

REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2024, 11, 5, 9, 14, 27, tzinfo=UTC)
KEY = b"\x8e\x1f\x9b\x03k-audit-key-from-vault\x00\x7f"


def event(n: int, **overrides: Any) -> AuditEvent:
    """A realistic entry; `n` varies subject, time and details."""
    fields: dict[str, Any] = {
        "actor": "soc-agent",
        "action": ["decision.made", "action.executed", "proposal.created"][n % 3],
        "subject": f"inc-{n:016x}",
        "reason": f"score {60 + n % 40} >= propose_at 60 (playbook phishing-triage)",
        "outcome": ["executed", "proposed", "notified"][n % 3],
        "evidence_ref": f"investigation:inv-{n:04d}" if n % 2 else None,
        "details": {
            "score": 60 + n % 40,
            "target": {"type": "host", "value": f"wks-fin-{n:03d}"},
            "techniques": ["T1059.001", "T1566.001"],
        },
        "at": T0 + timedelta(seconds=7 * n),
    }
    fields.update(overrides)
    return AuditEvent(**fields)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "soc-agent.db"


@pytest.fixture
async def log(db: Path) -> AsyncIterator[SQLiteAuditLog]:
    audit = SQLiteAuditLog(db)
    yield audit
    audit.close()


async def fill(audit: SQLiteAuditLog, n: int = 5) -> list[AuditEvent]:
    return [await audit.append(event(i)) for i in range(1, n + 1)]


def tamper(db: Path, *statements: str, params: tuple[Any, ...] = ()) -> None:
    """What an attacker with file access does: drop the guards, then edit."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        for statement in statements:
            conn.execute(statement, params if "?" in statement else ())
        conn.commit()
    finally:
        conn.close()


# -- round trip ------------------------------------------------------------------------


async def test_append_links_entries_into_a_chain(log: SQLiteAuditLog) -> None:
    first = await log.append(event(1))
    second = await log.append(event(2))
    assert (first.seq, first.prev_hash) == (1, GENESIS)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert first.hash == compute_hash(first)
    assert second.hash == compute_hash(second)
    assert await log.head() == (2, second.hash)


async def test_append_ignores_chain_fields_on_the_input(log: SQLiteAuditLog) -> None:
    stored = await log.append(event(1, seq=99, prev_hash="f" * 64, hash="e" * 64))
    assert (stored.seq, stored.prev_hash) == (1, GENESIS)
    assert (await log.verify()).ok


async def test_round_trip_on_a_real_file(db: Path) -> None:
    paris = timezone(timedelta(hours=1))
    audit = SQLiteAuditLog(db)
    appended = [
        await audit.append(event(1, at=T0.astimezone(paris))),
        await audit.append(event(2, details={"reverted_at": T0, "hosts": ("a", "b")})),
        await audit.append(event(3, reason="naïve résumé ✓ — 日本語", evidence_ref=None)),
    ]
    audit.close()

    reopened = SQLiteAuditLog(db)
    try:
        listed = await reopened.list()
        assert listed == appended
        assert listed[0].at == T0
        assert listed[0].at.utcoffset() == timedelta(0)
        assert listed[1].details == {"reverted_at": "2024-11-05T09:14:27Z", "hosts": ["a", "b"]}
        result = await reopened.verify()
        assert (result.ok, result.count, result.head) == (True, 3, appended[-1].hash)
        fourth = await reopened.append(event(4))
        assert (fourth.seq, fourth.prev_hash) == (4, appended[-1].hash)
        assert (await reopened.verify()).ok
    finally:
        reopened.close()


async def test_empty_log(log: SQLiteAuditLog) -> None:
    assert await log.head() == (0, GENESIS)
    assert await log.list() == []
    result = await log.verify()
    assert (result.ok, result.count, result.head) == (True, 0, GENESIS)


async def test_list_filters_and_pages(log: SQLiteAuditLog) -> None:
    entries = await fill(log, 9)
    assert [e.seq for e in await log.list(limit=3, offset=2)] == [3, 4, 5]
    assert [e.seq for e in await log.list(limit=2, newest_first=True)] == [9, 8]
    decided = await log.list(action_prefix="decision.")
    assert [e.seq for e in decided] == [3, 6, 9]
    assert await log.list(action_prefix="DECISION.") == []  # prefixes are case-sensitive
    assert await log.list(action_prefix="%") == []  # and literal, not LIKE patterns
    assert await log.list(subject=entries[4].subject) == [entries[4]]
    assert await log.list(subject=entries[4].subject, action_prefix="decision") == []
    with pytest.raises(ValueError, match="limit"):
        await log.list(limit=-1)


async def test_other_tables_in_the_file_are_left_alone(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE incidents (id TEXT PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO incidents VALUES ('inc-1', '{}')")
    conn.commit()
    conn.close()
    audit = SQLiteAuditLog(db)
    await fill(audit, 2)
    audit.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT id, body FROM incidents").fetchall() == [("inc-1", "{}")]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


async def test_naive_update_and_delete_are_refused(db: Path, log: SQLiteAuditLog) -> None:
    await fill(log, 3)
    conn = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit_log SET outcome = 'skipped' WHERE seq = 2")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit_log WHERE seq = 3")
    finally:
        conn.close()
    assert (await log.verify()).count == 3


async def test_closed_log_refuses_appends(log: SQLiteAuditLog) -> None:
    log.close()
    log.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await log.append(event(1))


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="missing-dir"):
        SQLiteAuditLog(tmp_path / "missing-dir" / "soc-agent.db")


async def test_unserialisable_details_write_nothing(log: SQLiteAuditLog) -> None:
    await fill(log, 2)
    with pytest.raises(ValueError, match="serialize"):
        await log.append(event(3, details={"socket": object()}))
    assert await log.head() == (2, (await log.list())[-1].hash)
    assert (await log.append(event(3))).seq == 3
    assert (await log.verify()).ok


# -- tampering -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("at", "2024-11-05T09:14:48.000001Z"),
        ("actor", "analyst:m.rossi"),
        ("action", "decision.overridden"),
        ("subject", "inc-00000000000000ff"),
        ("reason", "score 10 < propose_at 60"),
        ("outcome", "skipped"),
        ("evidence_ref", "investigation:inv-forged"),
        ("details", '{"score":12,"target":{"type":"host","value":"wks-fin-003"}}'),
        ("details", '{"score":61,"target":{"type":"host","value":"wks-fin-003"},"techniques":[]}'),
        ("prev_hash", "0" * 64),
        ("hash", "ab" * 32),
    ],
)
async def test_modified_column_is_detected(
    db: Path, log: SQLiteAuditLog, column: str, value: str
) -> None:
    await fill(log)
    tamper(db, f"UPDATE audit_log SET {column} = ? WHERE seq = 3", params=(value,))
    result = await log.verify()
    assert not result.ok
    assert result.first_bad_seq == 3
    assert result.count == 2
    assert result.problem is not None
    assert "entry 3" in result.problem


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("details", "{not json"),
        ("details", "[1, 2]"),
        ("at", "last tuesday"),
        ("at", 1730798067),
    ],
)
async def test_unreadable_row_is_detected(
    db: Path, log: SQLiteAuditLog, column: str, value: object
) -> None:
    await fill(log)
    tamper(db, f"UPDATE audit_log SET {column} = ? WHERE seq = 4", params=(value,))
    result = await log.verify()
    assert (result.ok, result.first_bad_seq, result.count) == (False, 4, 3)
    assert result.problem is not None
    assert "entry 4 is unreadable" in result.problem
    with pytest.raises(StoreError, match="entry 4"):
        await log.list()


async def test_unreadable_row_after_an_earlier_problem_reports_the_earlier(
    db: Path, log: SQLiteAuditLog
) -> None:
    await fill(log)
    tamper(
        db,
        "UPDATE audit_log SET outcome = 'skipped' WHERE seq = 2",
        "UPDATE audit_log SET details = 'garbage' WHERE seq = 4",
    )
    result = await log.verify()
    assert result.first_bad_seq == 2


@pytest.mark.parametrize("seq", [1, 3])
async def test_deleted_entry_is_detected(db: Path, log: SQLiteAuditLog, seq: int) -> None:
    await fill(log)
    tamper(db, f"DELETE FROM audit_log WHERE seq = {seq}")
    result = await log.verify()
    assert (result.ok, result.first_bad_seq) == (False, seq)
    assert result.problem is not None
    assert f"entry {seq} is missing" in result.problem


async def test_deleted_last_entry_is_caught_by_the_anchor(db: Path, log: SQLiteAuditLog) -> None:
    await fill(log)
    count, head = await log.head()  # kept elsewhere (a ticket, a log line, a Kafka topic)
    tamper(db, "DELETE FROM audit_log WHERE seq = 5")
    assert (await log.verify()).ok  # without an anchor a clean truncation is invisible
    result = await log.verify(expected_head=head, expected_count=count)
    assert (result.ok, result.first_bad_seq, result.count) == (False, 5, 4)
    assert result.problem is not None
    assert "truncated" in result.problem


async def test_anchor_survives_later_appends(log: SQLiteAuditLog) -> None:
    await fill(log, 3)
    count, head = await log.head()
    await log.append(event(4))
    assert (await log.verify(expected_head=head, expected_count=count)).ok


async def test_inserted_forged_row_is_detected(db: Path, log: SQLiteAuditLog) -> None:
    entries = await fill(log)
    forged = seal(
        event(
            42,
            actor="analyst:m.rossi",
            action="proposal.approved",
            reason="bulk approve",
            at=T0 + timedelta(seconds=15),
        ),
        seq=3,
        prev_hash=entries[1].hash or "",
    )
    assert forged.hash == compute_hash(forged)  # correct for its own content
    tamper(
        db,
        "UPDATE audit_log SET seq = -seq WHERE seq >= 3",
        "UPDATE audit_log SET seq = 1 - seq WHERE seq < 0",
    )
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            3, "2024-11-05T09:14:42.000000Z", forged.actor, forged.action, forged.subject,
            forged.reason, forged.outcome, forged.evidence_ref,
            '{"score":62,"target":{"type":"host","value":"wks-fin-042"},'
            '"techniques":["T1059.001","T1566.001"]}',
            forged.prev_hash, forged.hash,
        ),
    )  # fmt: skip
    conn.commit()
    conn.close()
    assert [e.seq for e in await log.list()] == [1, 2, 3, 4, 5, 6]

    result = await log.verify()
    assert not result.ok
    assert result.first_bad_seq == 4  # the forgery hashes fine; the next entry exposes it
    assert result.problem is not None
    assert "does not link to entry 3" in result.problem


async def test_swapped_rows_are_detected(db: Path, log: SQLiteAuditLog) -> None:
    await fill(log)
    tamper(
        db,
        "UPDATE audit_log SET seq = -1 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = -1",
    )
    result = await log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)


async def test_unkeyed_log_can_be_extended_by_anyone_a_keyed_one_cannot(db: Path) -> None:
    """Why the key matters: a plain chain can be continued or rebuilt with file access."""
    for key, still_ok in ((None, True), (KEY, False)):
        path = db.with_name(f"{'keyed' if key else 'plain'}.db")
        audit = SQLiteAuditLog(path, key=key)
        try:
            entries = await fill(audit, 3)
            forged = seal(event(9, actor="analyst:ghost"), seq=4, prev_hash=entries[-1].hash or "")
            conn = sqlite3.connect(path)
            conn.execute(
                "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    4, "2024-11-05T09:15:30.000000Z", forged.actor, forged.action,
                    forged.subject, forged.reason, forged.outcome, forged.evidence_ref,
                    '{"score":69,"target":{"type":"host","value":"wks-fin-009"},'
                    '"techniques":["T1059.001","T1566.001"]}',
                    forged.prev_hash, forged.hash,
                ),
            )  # fmt: skip
            conn.commit()
            conn.close()
            result = await audit.verify()
            assert result.ok is still_ok
            if not still_ok:
                assert result.first_bad_seq == 4
        finally:
            audit.close()


async def test_keyed_chain_rebuilt_without_the_key_fails(db: Path) -> None:
    audit = SQLiteAuditLog(db, key=KEY)
    try:
        entries = await fill(audit)
        assert (await audit.verify()).ok
        # The attacker rewrites entry 2 and recomputes every later hash, without the key.
        prev = entries[0].hash or ""
        rows = []
        for original in entries[1:]:
            changed = original.outcome if original.seq != 2 else "skipped"
            resealed = seal(
                original.model_copy(update={"outcome": changed}),
                seq=original.seq or 0,
                prev_hash=prev,
            )
            prev = resealed.hash or ""
            rows.append((resealed.outcome, resealed.prev_hash, resealed.hash, resealed.seq))
        conn = sqlite3.connect(db)
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.executemany(
            "UPDATE audit_log SET outcome = ?, prev_hash = ?, hash = ? WHERE seq = ?", rows
        )
        conn.commit()
        conn.close()

        result = await audit.verify()
        assert (result.ok, result.first_bad_seq) == (False, 2)
        assert result.problem is not None
        assert "wrong key" in result.problem
        unkeyed = SQLiteAuditLog(db)
        try:
            # the same file read without the key fails at once: it was written with one
            assert (await unkeyed.verify()).first_bad_seq == 1
        finally:
            unkeyed.close()
    finally:
        audit.close()


# -- concurrency -----------------------------------------------------------------------


async def test_concurrent_tasks_and_connections_keep_one_chain(db: Path) -> None:
    a, b = SQLiteAuditLog(db), SQLiteAuditLog(db)  # two writers on one file
    try:
        results = await asyncio.gather(*(log.append(event(i)) for i in range(60) for log in (a, b)))
        assert sorted(r.seq or 0 for r in results) == list(range(1, 121))
        result = await a.verify()
        assert (result.ok, result.count) == (True, 120)
    finally:
        a.close()
        b.close()


async def test_concurrent_appends_share_transactions_and_keep_the_chain(
    log: SQLiteAuditLog,
) -> None:
    """Group commit: appends waiting while one is written go in together, one transaction
    and one fsync per batch; every caller still returns only once its entry is durable."""
    results = await asyncio.gather(*(log.append(event(i)) for i in range(100)))
    assert [r.seq for r in results] == list(range(1, 101))  # in the order they were made
    assert [r.subject for r in results] == [event(i).subject for i in range(100)]
    assert log.transactions < 20, log.transactions
    result = await log.verify()
    assert (result.ok, result.count) == (True, 100)


async def test_a_bad_entry_in_a_batch_fails_alone(log: SQLiteAuditLog) -> None:
    entries = [event(i) for i in range(20)]
    entries[7] = event(7, details={"socket": object()})
    outcomes = await asyncio.gather(*(log.append(e) for e in entries), return_exceptions=True)
    assert isinstance(outcomes[7], ValueError)
    written = [o for o in outcomes if isinstance(o, AuditEvent)]
    assert [o.seq for o in written] == list(range(1, 20))
    assert (await log.verify()).ok


async def test_an_entry_appended_later_shares_the_next_batch_in_order(
    log: SQLiteAuditLog,
) -> None:
    first = log.append_later(event(1))
    second = log.append_later(event(2))
    assert await log.list() == []  # queued, not written
    third = await log.append(event(3))
    assert log.transactions == 1  # all three in the awaited append's one transaction
    assert [(await first).seq, (await second).seq, third.seq] == [1, 2, 3]
    assert log.transactions == 1  # already written: awaiting them writes nothing
    alone = log.append_later(event(4))
    assert (await alone).seq == 4  # nothing else came: awaiting it writes it
    result = await log.verify()
    assert (result.ok, result.count, log.transactions) == (True, 4, 2)


async def test_an_entry_appended_later_that_cannot_be_written_fails_its_awaiter_only(
    log: SQLiteAuditLog,
) -> None:
    bad = log.append_later(event(1, details={"socket": object()}))
    good = await log.append(event(2))
    assert good.seq == 1
    with pytest.raises(ValueError, match="serialize"):
        await bad
    assert (await log.verify()).count == 1


async def test_cancelling_the_writer_of_a_batch_leaves_the_others_answered(
    log: SQLiteAuditLog,
) -> None:
    tasks = [asyncio.create_task(log.append(event(i))) for i in range(10)]
    await asyncio.sleep(0)  # the first is writing; the rest wait for the next batch
    tasks[0].cancel()
    tasks[1].cancel()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert all(isinstance(o, AuditEvent) for o in outcomes[2:])
    result = await log.verify()
    assert result.ok and 8 <= result.count <= 10


async def test_cancelled_append_does_not_fork_the_chain(log: SQLiteAuditLog) -> None:
    tasks = [asyncio.create_task(log.append(event(i))) for i in range(30)]
    await asyncio.sleep(0)  # the first task is now inside its worker thread
    for task in tasks[::3]:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(o, asyncio.CancelledError) for o in outcomes) == 10
    # A cancelled task's thread may still finish its append: it must queue behind, not fork.
    await asyncio.gather(*(log.append(event(100 + i)) for i in range(10)))
    result = await log.verify()
    assert result.ok
    assert 30 <= result.count <= 40


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from soc_agent.audit import SQLiteAuditLog
    from soc_agent.models import AuditEvent

    async def main(path: str, name: str, n: int) -> None:
        log = SQLiteAuditLog(path, key=b"shared-key")
        for i in range(n):
            await log.append(AuditEvent(
                actor=f"soc-agent-{name}", action="action.executed",
                subject=f"host:wks-{name}-{i:03d}", reason="replica write",
                outcome="ok", details={"i": i}, at=datetime.now(UTC),
            ))
        log.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def test_two_processes_appending_keep_one_chain(db: Path) -> None:
    SQLiteAuditLog(db, key=b"shared-key").close()  # create the table before the race
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(db), name, "150"], env=env)
        for name in ("replica-a", "replica-b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]

    async def check() -> None:
        audit = SQLiteAuditLog(db, key=b"shared-key")
        try:
            result = await audit.verify()
            assert (result.ok, result.count) == (True, 300)
            actors = {e.actor for e in await audit.list(limit=300)}
            assert actors == {"soc-agent-replica-a", "soc-agent-replica-b"}
        finally:
            audit.close()

    asyncio.run(check())

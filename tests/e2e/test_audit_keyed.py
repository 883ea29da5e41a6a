"""The audit chain is keyed by default, and its heads can be checked against an outside record.

Each test runs the real CLI on a real store and tampers with the file as an
attacker with write access to it (but not to the key) would.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

from soc_agent.audit import SQLiteAuditLog, seal
from soc_agent.models import AuditEvent
from tests.e2e.test_cli import cli


def rows(db: Path) -> list[AuditEvent]:
    async def read() -> list[AuditEvent]:
        log = SQLiteAuditLog(db)
        try:
            return await log.list(limit=100_000)
        finally:
            log.close()

    return asyncio.run(read())


def rewrite(db: Path, events: list[AuditEvent]) -> None:
    """Replace the whole chain, as someone who can write the file can."""
    SQLiteAuditLog(db).close()  # the table exists even in a new file
    conn = sqlite3.connect(db)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DELETE FROM audit_log")
    conn.commit()
    conn.close()

    async def write() -> None:
        log = SQLiteAuditLog(db)  # no key: the forger does not hold it
        try:
            for event in events:
                await log.append(event)
        finally:
            log.close()

    asyncio.run(write())


def test_the_first_run_keys_the_chain_with_a_private_key_file(tmp_path: Path) -> None:
    run = cli("run", "--store", "s.db", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    key_file = tmp_path / "s.db.audit-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert key not in run.stdout + run.stderr
    first = rows(tmp_path / "s.db")[0]
    assert first.action == "audit.keyed" and first.details["key_id"]
    verified = cli("audit", "verify", "--store", "s.db", "--json", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["keyed"] is True
    assert "WARNING" not in verified.stderr and key not in verified.stdout + verified.stderr
    # a second run reuses the key: still one marker, still intact
    assert cli("run", "--store", "s.db", cwd=tmp_path).returncode == 0
    assert [e.action for e in rows(tmp_path / "s.db")].count("audit.keyed") == 1
    assert cli("audit", "verify", "--store", "s.db", cwd=tmp_path).returncode == 0


def test_a_chain_rebuilt_without_the_key_fails_verification(tmp_path: Path) -> None:
    assert cli("run", "--store", "s.db", cwd=tmp_path).returncode == 0
    db = tmp_path / "s.db"
    genuine = rows(db)
    # The forger drops the marker and rewrites one decision, rebuilding every hash.
    forged = [
        e.model_copy(update={"outcome": "skipped"} if e.seq == 5 else {})
        for e in genuine
        if e.action != "audit.keyed"
    ]
    rewrite(db, forged)
    broken = cli("audit", "verify", "--store", "s.db", cwd=tmp_path)
    assert broken.returncode == 1
    assert "AUDIT CHAIN BROKEN at entry 1" in broken.stderr
    assert "not sealed with the audit key" in broken.stderr


def test_a_keyed_chain_without_its_key_fails_loudly(tmp_path: Path) -> None:
    assert cli("run", "--store", "s.db", cwd=tmp_path).returncode == 0
    (tmp_path / "s.db.audit-key").rename(tmp_path / "elsewhere")
    verify = cli("audit", "verify", "--store", "s.db", cwd=tmp_path)
    assert verify.returncode == 1
    assert "cannot be verified without the audit key" in verify.stderr
    # and no writer silently starts a new key on it
    run = cli("run", "--store", "s.db", cwd=tmp_path)
    assert run.returncode != 0
    assert "key file" in run.stderr and "is missing" in run.stderr
    assert not (tmp_path / "s.db.audit-key").exists()
    # a wrong key is named as such
    (tmp_path / "s.db.audit-key").write_text("f" * 64)
    wrong = cli("audit", "verify", "--store", "s.db", cwd=tmp_path)
    assert wrong.returncode == 1 and "wrong key" in wrong.stderr


def test_an_unkeyed_chain_verifies_with_a_warning_until_a_writer_keys_it(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    legacy = [
        AuditEvent(actor="soc-agent", action="agent.started", subject="agent", at=datetime.now(UTC))
    ]
    rewrite(db, legacy)  # a chain from before keys were the default
    assert cli("proposals", "list", "--store", "s.db", cwd=tmp_path).returncode == 0
    assert not (tmp_path / "s.db.audit-key").exists()  # readers create no key
    plain = cli("audit", "verify", "--store", "s.db", cwd=tmp_path)
    assert plain.returncode == 0
    assert "WARNING: the audit chain is not keyed" in plain.stderr
    assert cli("run", "--store", "s.db", cwd=tmp_path).returncode == 0
    keyed = cli("audit", "verify", "--store", "s.db", cwd=tmp_path)
    assert keyed.returncode == 0 and "WARNING" not in keyed.stderr
    assert rows(db)[1].action == "audit.keyed"  # sealed right after the legacy entry


def test_verify_against_the_anchor_file_catches_a_cut_tail(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("audit_anchor_file: heads.jsonl\n")
    run = cli("run", "--store", "s.db", "--config", "cfg.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    heads = tmp_path / "heads.jsonl"
    assert stat.S_IMODE(heads.stat().st_mode) == 0o600
    last = json.loads(heads.read_text().splitlines()[-1])
    assert last["seq"] == len(rows(tmp_path / "s.db"))
    ok = cli("audit", "verify", "--store", "s.db", "--against", "heads.jsonl", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    # Cutting off the last entries leaves a chain that verifies on its own ...
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE seq > ?", (last["seq"] - 3,))
    conn.commit()
    conn.close()
    assert cli("audit", "verify", "--store", "s.db", cwd=tmp_path).returncode == 0
    # ... but not against the heads recorded outside the store.
    cut = cli("audit", "verify", "--store", "s.db", "--against", "heads.jsonl", cwd=tmp_path)
    assert cut.returncode == 1 and "tail truncated" in cut.stderr
    heads.write_text(heads.read_text() + "not json\n")
    bad = cli("audit", "verify", "--store", "s.db", "--against", "heads.jsonl", cwd=tmp_path)
    assert bad.returncode != 0
    assert f"heads.jsonl:{len(heads.read_text().splitlines())}" in bad.stderr


def test_sealing_is_not_what_the_forger_can_redo(tmp_path: Path) -> None:
    """The forger may append plain entries after the keyed ones: verification catches it."""
    assert cli("run", "--store", "s.db", cwd=tmp_path).returncode == 0
    db = tmp_path / "s.db"
    genuine = rows(db)
    tail = genuine[-1]
    extra = seal(
        AuditEvent(actor="analyst:x", action="proposal.approved", subject="p", at=tail.at),
        seq=(tail.seq or 0) + 1,
        prev_hash=tail.hash or "",
    )
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            extra.seq,
            extra.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            extra.actor,
            extra.action,
            extra.subject,
            extra.reason,
            extra.outcome,
            None,
            "{}",
            extra.prev_hash,
            extra.hash,
        ),
    )
    conn.commit()
    conn.close()
    broken = cli("audit", "verify", "--store", "s.db", cwd=tmp_path)
    assert broken.returncode == 1 and f"entry {extra.seq}" in broken.stderr


def test_writers_starting_together_share_one_key(tmp_path: Path) -> None:
    """Workers on one store start at once: none may read a half-written key file."""
    import concurrent.futures

    from soc_agent.audit.keying import key_file_for, write_new_key_file

    path = key_file_for(tmp_path / "s.db")
    for round_ in range(20):
        path.unlink(missing_ok=True)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            keys = set(pool.map(lambda _: write_new_key_file(path), range(8)))
        assert len(keys) == 1, round_
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not list(tmp_path.glob(".audit-key-*"))

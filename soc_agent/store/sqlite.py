"""SQLite store for the embedded runtime.

One connection, used only from one worker thread, so the event loop never
blocks and statements never interleave. WAL mode lets the CLI read while a
run writes. The correlation state lives here too, so a restarted run
continues the same incidents.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from soc_agent.correlate.state import CorrelationSnapshot, CorrelationWrites
from soc_agent.errors import StoreError
from soc_agent.models import (
    ActionLabel,
    ActionRequest,
    ActionStatus,
    Alert,
    DeadLetter,
    Decision,
    Incident,
    IncidentVerdict,
    Investigation,
    Proposal,
    ProposalStatus,
)
from soc_agent.sqlite_setup import (
    WAL_AUTOCHECKPOINT_PAGES,
    add_column,
    connect_private,
    retry_while_busy,
    transaction,
)
from soc_agent.store.base import (
    MAX_ACTION_LABELS,
    MAX_VERDICT_HISTORY,
    ActionRecord,
    ClaimResult,
    DecisionState,
    latest_per_incident,
)
from soc_agent.store.bounded import ALERTS_HELD, DECISIONS_HELD, keep
from soc_agent.store.sqlite_incidents import INCIDENT_SCHEMA, IncidentRows

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
  id TEXT PRIMARY KEY, format TEXT NOT NULL, created_at TEXT NOT NULL,
  received_at TEXT NOT NULL, incident_id TEXT, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_incident ON alerts(incident_id);
CREATE TABLE IF NOT EXISTS incidents (
  id TEXT PRIMARY KEY, last_seen TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS corr_entities (entity_key TEXT PRIMARY KEY, incident_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS corr_fingerprints (
  fingerprint TEXT PRIMARY KEY, incident_id TEXT NOT NULL, last_seen TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS corr_alerts (alert_id TEXT PRIMARY KEY, incident_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS investigations (
  id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
  id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS decisions_incident ON decisions(incident_id, created_at);
CREATE TABLE IF NOT EXISTS proposals (
  id TEXT PRIMARY KEY, decision_id TEXT NOT NULL, incident_id TEXT NOT NULL,
  status TEXT NOT NULL, urgency REAL NOT NULL, expires_at TEXT NOT NULL,
  version INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS proposals_status ON proposals(status, urgency);
CREATE TABLE IF NOT EXISTS actions (
  idempotency_key TEXT PRIMARY KEY, action_id TEXT NOT NULL, incident_id TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL, connector TEXT NOT NULL,
  capability TEXT NOT NULL, status TEXT NOT NULL, request TEXT NOT NULL, result TEXT,
  error TEXT, claimed_at TEXT NOT NULL, executed_at TEXT, revert_at TEXT,
  attempts INTEGER NOT NULL DEFAULT 1, rollback_claimed_at TEXT);
CREATE INDEX IF NOT EXISTS actions_exec ON actions(action, status, executed_at);
CREATE INDEX IF NOT EXISTS actions_id ON actions(action_id);
CREATE INDEX IF NOT EXISTS actions_claims ON actions(action, claimed_at);
CREATE TABLE IF NOT EXISTS dead_letters (
  id TEXT PRIMARY KEY, source TEXT NOT NULL, reason TEXT NOT NULL, original BLOB NOT NULL,
  headers TEXT NOT NULL, format_hint TEXT, received_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS verdicts (
  id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, closed_at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS verdicts_incident ON verdicts(incident_id, closed_at);
CREATE INDEX IF NOT EXISTS verdicts_time ON verdicts(closed_at);
CREATE TABLE IF NOT EXISTS verdict_keys (
  key TEXT NOT NULL, verdict_id TEXT NOT NULL, PRIMARY KEY (key, verdict_id));
CREATE TABLE IF NOT EXISTS action_labels (
  id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS action_labels_incident ON action_labels(incident_id, at);
CREATE INDEX IF NOT EXISTS action_labels_time ON action_labels(at);
"""


class SQLiteStore:
    """Implements `soc_agent.store.Store` and `soc_agent.correlate.CorrelationState`."""

    def __init__(self, path: str | Path, *, inline: bool = False) -> None:
        """`inline`: run each statement on the caller's thread (the event loop's) instead
        of the store's own thread. A statement takes tens of microseconds; handing it to
        a thread and back cost more CPU than running it (about a quarter of a decided
        alert's, the GIL changing hands each way). But a statement waiting for another
        process's write lock then holds up the whole loop: for a process that does
        nothing else meanwhile (`soc-agent run`), never for a server or a worker."""
        self.path = Path(path)
        self._inline = inline
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._incidents = IncidentRows()
        # Alerts the correlation saved, by id: the incident it saved them in (bounded).
        self._placed: OrderedDict[str, str] = OrderedDict()
        self._alerts: OrderedDict[str, Alert] = OrderedDict()  # read by id (see get_alert)
        # Decisions by their stored text: an incident's latest decision is read again for
        # each alert that joins it, and parsing it grew with the incident (see `_decision`).
        self._decisions: OrderedDict[str, Decision] = OrderedDict()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._pool.submit(self._open).result()
        except (sqlite3.Error, OSError) as exc:
            self._pool.shutdown()
            raise StoreError(f"cannot open store {self.path}: {exc}") from None

    def _open(self) -> sqlite3.Connection:
        db = connect_private(self.path, timeout=30)

        def setup() -> sqlite3.Connection:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            db.executescript(_SCHEMA + INCIDENT_SCHEMA)
            add_column(db, "actions", "rollback_claimed_at", "TEXT")
            add_column(db, "incidents", "rev", "INTEGER NOT NULL DEFAULT 0")
            add_column(db, "incidents", "split", "INTEGER NOT NULL DEFAULT 0")
            return db

        try:
            return retry_while_busy(setup)
        except sqlite3.Error:
            db.close()
            raise

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            if self._inline:
                return fn(self._db)
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, self._db)
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from exc

    def close(self) -> None:
        self._pool.submit(self._db.close).result()
        self._pool.shutdown()

    # -- alerts, incidents, investigations, decisions ------------------------------------

    async def save_alert(self, alert: Alert, incident_id: str | None) -> None:
        """Insert; a re-saved alert keeps its document and only gains an incident id.
        Nothing to write when the correlation that placed it there saved it."""
        if incident_id is not None and self._placed.pop(alert.id, None) == incident_id:
            return
        row = _alert_row(alert, incident_id)
        await self._run(lambda db: db.execute(_SAVE_ALERT, row))

    async def get_alert(self, alert_id: str) -> Alert | None:
        """An alert's document never changes once stored (see `save_alert`), so one read
        serves again: an incident's trigger alert is read for many of its decisions."""
        if (held := self._alerts.get(alert_id)) is not None:
            return held
        row = await self._one("SELECT doc FROM alerts WHERE id=?", (alert_id,))
        if not row:
            return None
        alert = Alert.model_validate_json(row[0])
        keep(self._alerts, alert_id, alert, limit=ALERTS_HELD)
        return alert

    async def alerts_of(self, incident_id: str) -> list[Alert]:
        rows = await self._all(
            "SELECT doc FROM alerts WHERE incident_id=? ORDER BY created_at", (incident_id,)
        )
        return [Alert.model_validate_json(r[0]) for r in rows]

    async def get_incident(self, incident_id: str) -> Incident | None:
        found = await self._run(lambda db: self._incidents.read(db, [incident_id]))
        return found.get(incident_id)

    async def put_incident(self, incident: Incident) -> None:
        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                written = self._incidents.write(db, [incident])
            self._incidents.remember(written)

        await self._run(write)

    async def list_incidents(self, *, limit: int = 50, offset: int = 0) -> list[Incident]:
        return await self._run(lambda db: self._incidents.page(db, limit, offset))

    async def save_investigation(self, investigation: Investigation) -> None:
        await self._run(lambda db: _put_investigation(db, investigation))

    async def get_investigation(self, investigation_id: str) -> Investigation | None:
        row = await self._one("SELECT doc FROM investigations WHERE id=?", (investigation_id,))
        return Investigation.model_validate_json(row[0]) if row else None

    async def save_decision(
        self, decision: Decision, *, investigation: Investigation | None = None
    ) -> None:
        doc = decision.model_dump_json()
        row = (decision.id, decision.incident_id, decision.created_at.isoformat(), doc)

        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                if investigation is not None:
                    _put_investigation(db, investigation)
                db.execute(
                    "INSERT INTO decisions VALUES (?,?,?,?) "
                    "ON CONFLICT(id) DO UPDATE SET doc=excluded.doc",
                    row,
                )

        await self._run(write)
        keep(self._decisions, doc, decision, limit=DECISIONS_HELD)

    async def latest_decision(self, incident_id: str) -> Decision | None:
        row = await self._one(_LATEST_DECISION, (incident_id,))
        return self._decision(row[0]) if row else None

    async def get_decision(self, decision_id: str) -> Decision | None:
        row = await self._one("SELECT doc FROM decisions WHERE id=?", (decision_id,))
        return self._decision(row[0]) if row else None

    def _decision(self, doc: str) -> Decision:
        """The decision stored as `doc`: the model already made from that very text when
        held (decisions handed out are never mutated), else parsed and held. Comparing
        the text costs microseconds where parsing cost a third of a millisecond."""
        held = self._decisions.get(doc)
        if held is None:
            held = Decision.model_validate_json(doc)
        keep(self._decisions, doc, held, limit=DECISIONS_HELD)
        return held

    async def decision_state(
        self,
        decision_id: str,
        incident_id: str,
        *,
        with_incident: bool = False,
        flags: Sequence[str] = (),
        standing: bool = False,
    ) -> DecisionState:
        def read(db: sqlite3.Connection) -> tuple[Any, Any, Incident | None, dict[str, Any]]:
            made = db.execute("SELECT doc FROM decisions WHERE id=?", (decision_id,)).fetchone()
            latest = db.execute(_LATEST_DECISION, (incident_id,)).fetchone()
            incident = self._incidents.read(db, [incident_id]) if with_incident else {}
            return made, latest, incident.get(incident_id), _flags(db, flags) if flags else {}

        made, latest, incident, found = await self._run(read)
        return DecisionState(
            made=self._decision(made[0]) if made else None,
            latest=self._decision(latest[0]) if latest else None,
            incident=incident,
            flags=found,
        )

    async def list_decisions(self, *, limit: int = 50, offset: int = 0) -> list[Decision]:
        rows = await self._all(
            "SELECT doc FROM decisions ORDER BY rowid LIMIT ? OFFSET ?", (limit, offset)
        )
        return [Decision.model_validate_json(r[0]) for r in rows]

    # -- proposals -----------------------------------------------------------------------

    async def save_proposal(self, proposal: Proposal) -> bool:
        """Insert a new proposal; false if one with this id already exists."""
        cur = await self._run(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO proposals VALUES (?,?,?,?,?,?,?,?)",
                (
                    proposal.id,
                    proposal.decision_id,
                    proposal.incident_id,
                    proposal.status.value,
                    proposal.urgency,
                    proposal.expires_at.isoformat(),
                    proposal.version,
                    proposal.model_dump_json(),
                ),
            )
        )
        return cur.rowcount == 1

    async def get_proposal(self, proposal_id: str) -> Proposal | None:
        row = await self._one("SELECT doc FROM proposals WHERE id=?", (proposal_id,))
        return Proposal.model_validate_json(row[0]) if row else None

    async def update_proposal(self, proposal: Proposal, *, expected_version: int) -> bool:
        """Optimistic concurrency: writes only if nobody changed it since `expected_version`."""
        proposal = proposal.model_copy(update={"version": expected_version + 1})
        cur = await self._run(
            lambda db: db.execute(
                "UPDATE proposals SET status=?, urgency=?, version=?, doc=? "
                "WHERE id=? AND version=?",
                (
                    proposal.status.value,
                    proposal.urgency,
                    proposal.version,
                    proposal.model_dump_json(),
                    proposal.id,
                    expected_version,
                ),
            )
        )
        return cur.rowcount == 1

    async def list_proposals(
        self, *, status: ProposalStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[Proposal]:
        if status is None:
            rows = await self._all(
                "SELECT doc FROM proposals ORDER BY urgency DESC, expires_at LIMIT ? OFFSET ?",
                (limit, offset),
            )
        else:
            rows = await self._all(
                "SELECT doc FROM proposals WHERE status=? ORDER BY urgency DESC, expires_at "
                "LIMIT ? OFFSET ?",
                (status.value, limit, offset),
            )
        return [Proposal.model_validate_json(r[0]) for r in rows]

    # -- action ledger -------------------------------------------------------------------

    async def claim_action(
        self,
        request: ActionRequest,
        incident_id: str,
        now: datetime,
        *,
        budget: tuple[int, datetime] | None = None,
    ) -> ClaimResult:
        """Atomically take the idempotency key, or return whoever holds it.

        With a budget `(max, since)`, the key is only taken while fewer than `max`
        claims of this action were made since `since`: the blast-radius budget is
        reserved here, in the same transaction, so concurrent deciders cannot
        jointly exceed it.
        """
        key = request.idempotency_key

        def claim(db: sqlite3.Connection) -> ClaimResult:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT * FROM actions WHERE idempotency_key=?", (key,)).fetchone()
                if row is not None:
                    return ClaimResult(claimed=False, record=_action(row))
                if budget is not None and _claims_since(db, request.action, budget[1]) >= budget[0]:
                    return ClaimResult(claimed=False, record=None, over_budget=True)
                db.execute(
                    "INSERT INTO actions (idempotency_key, action_id, incident_id, action, "
                    "target, connector, capability, status, request, claimed_at) "
                    "VALUES (?,?,?,?,?,?,?,'claimed',?,?)",
                    (
                        key,
                        request.id,
                        incident_id,
                        request.action,
                        request.target.value,
                        request.connector,
                        request.capability,
                        request.model_dump_json(),
                        now.isoformat(),
                    ),
                )
                row = db.execute("SELECT * FROM actions WHERE idempotency_key=?", (key,)).fetchone()
                return ClaimResult(claimed=True, record=_action(row))
            finally:
                db.execute("COMMIT")

        return await self._run(claim)

    async def retry_claim(self, key: str, now: datetime) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE actions SET status='claimed', attempts=attempts+1, claimed_at=? "
                "WHERE idempotency_key=?",
                (now.isoformat(), key),
            )
        )

    async def claim_rollback(self, key: str, now: datetime, *, stale_before: datetime) -> bool:
        def claim(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE actions SET status='rolling_back', rollback_claimed_at=? "
                "WHERE idempotency_key=? AND (status='executed' "
                "OR (status='rolling_back' AND rollback_claimed_at < ?))",
                (now.isoformat(), key, stale_before.isoformat()),
            )
            return cur.rowcount == 1

        return await self._run(claim)

    async def release_rollback(self, key: str) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE actions SET status='executed', rollback_claimed_at=NULL "
                "WHERE idempotency_key=? AND status='rolling_back'",
                (key,),
            )
        )

    async def finish_action(
        self,
        key: str,
        *,
        status: ActionStatus,
        result: dict[str, Any] | None,
        error: str | None,
        now: datetime,
        revert_at: datetime | None,
    ) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE actions SET status=?, result=?, error=?, executed_at=?, revert_at=? "
                "WHERE idempotency_key=?",
                (
                    status.value,
                    json.dumps(result) if result is not None else None,
                    error,
                    now.isoformat(),
                    revert_at.isoformat() if revert_at else None,
                    key,
                ),
            )
        )

    async def get_action(self, key: str) -> ActionRecord | None:
        def find(db: sqlite3.Connection) -> Any:
            # Two indexed lookups: an OR across the two columns scanned the whole ledger.
            by_key = db.execute("SELECT * FROM actions WHERE idempotency_key=?", (key,))
            row = by_key.fetchone()
            if row is None:
                row = db.execute("SELECT * FROM actions WHERE action_id=?", (key,)).fetchone()
            return row

        row = await self._run(find)
        return _action(row) if row else None

    async def actions_and_proposals(
        self, keys: Sequence[str], proposal_ids: Sequence[str]
    ) -> tuple[list[ActionRecord | None], list[Proposal | None]]:
        def read(db: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
            rows = [
                db.execute("SELECT * FROM actions WHERE idempotency_key=?", (key,)).fetchone()
                for key in keys
            ]
            docs = [
                db.execute("SELECT doc FROM proposals WHERE id=?", (pid,)).fetchone()
                for pid in proposal_ids
            ]
            return rows, docs

        rows, docs = await self._run(read)
        return (
            [_action(row) if row else None for row in rows],
            [Proposal.model_validate_json(doc[0]) if doc else None for doc in docs],
        )

    async def list_actions(self, *, limit: int = 50, offset: int = 0) -> list[ActionRecord]:
        rows = await self._all(
            "SELECT * FROM actions ORDER BY claimed_at LIMIT ? OFFSET ?", (limit, offset)
        )
        return [_action(r) for r in rows]

    async def due_reverts(self, now: datetime) -> list[ActionRecord]:
        rows = await self._all(
            "SELECT * FROM actions WHERE status='executed' AND revert_at IS NOT NULL "
            "AND revert_at <= ? ORDER BY revert_at",
            (now.isoformat(),),
        )
        return [_action(r) for r in rows]

    async def count_executions(self, action: str, since: datetime) -> int:
        """Claims of an action since a time, in flight or done (failed ones do not count)."""
        return await self._run(lambda db: _claims_since(db, action, since))

    async def action_standing(
        self, key: str, action: str, since: datetime
    ) -> tuple[ActionRecord | None, int]:
        def read(db: sqlite3.Connection) -> tuple[Any, int]:
            row = db.execute("SELECT * FROM actions WHERE idempotency_key=?", (key,)).fetchone()
            return row, _claims_since(db, action, since)

        row, used = await self._run(read)
        return (_action(row) if row else None), used

    # -- dead letters and flags ----------------------------------------------------------

    async def save_dead_letter(self, letter: DeadLetter) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO dead_letters VALUES (?,?,?,?,?,?,?)",
                (
                    letter.id,
                    letter.source,
                    letter.reason,
                    letter.original,
                    json.dumps(letter.headers),
                    letter.format_hint,
                    letter.received_at.isoformat(),
                ),
            )
        )

    async def list_dead_letters(self, *, limit: int = 50) -> list[DeadLetter]:
        rows = await self._all("SELECT * FROM dead_letters ORDER BY received_at LIMIT ?", (limit,))
        return [
            DeadLetter(
                id=r[0],
                source=r[1],
                reason=r[2],
                original=bytes(r[3]),
                headers=json.loads(r[4]),
                format_hint=r[5],
                received_at=datetime.fromisoformat(r[6]),
            )
            for r in rows
        ]

    # -- analyst verdicts ------------------------------------------------------------------

    async def save_verdict(self, verdict: IncidentVerdict) -> bool:
        doc = verdict.model_dump_json()
        keys = [(f"rule:{r}", verdict.id) for r in verdict.rules]
        keys += [(f"entity:{e}", verdict.id) for e in verdict.entities]

        def write(db: sqlite3.Connection) -> bool:
            with transaction(db):  # the record and its keys together, or neither
                inserted = db.execute(
                    "INSERT OR IGNORE INTO verdicts VALUES (?,?,?,?)",
                    (verdict.id, verdict.incident_id, _utc(verdict.closed_at), doc),
                ).rowcount
                db.executemany("INSERT OR IGNORE INTO verdict_keys VALUES (?,?)", keys)
            return inserted == 1

        return await self._run(write)

    async def get_verdict(self, verdict_id: str) -> IncidentVerdict | None:
        row = await self._one("SELECT doc FROM verdicts WHERE id=?", (verdict_id,))
        return IncidentVerdict.model_validate_json(row[0]) if row else None

    async def incident_verdict(self, incident_id: str) -> IncidentVerdict | None:
        row = await self._one(
            "SELECT doc FROM verdicts WHERE incident_id=? "
            "ORDER BY closed_at DESC, rowid DESC LIMIT 1",
            (incident_id,),
        )
        return IncidentVerdict.model_validate_json(row[0]) if row else None

    async def verdict_history(
        self, *, rule: str | None, entity: str | None, since: datetime
    ) -> list[IncidentVerdict]:
        keys = [k for k in (rule and f"rule:{rule}", entity and f"entity:{entity}") if k]
        if not keys:
            raise ValueError("verdict history needs a rule, an entity or both")
        # Every closing of every matching incident, so the latest can supersede the rest.
        rows = await self._all(
            "SELECT doc FROM verdicts WHERE "
            "id IN (SELECT verdict_id FROM verdict_keys WHERE key=?) AND "
            "id IN (SELECT verdict_id FROM verdict_keys WHERE key=?) "
            "ORDER BY closed_at DESC, rowid DESC LIMIT ?",
            (keys[0], keys[-1], MAX_VERDICT_HISTORY),
        )
        return latest_per_incident([IncidentVerdict.model_validate_json(r[0]) for r in rows], since)

    async def verdicts_naming(self, entities: list[str], since: datetime) -> list[IncidentVerdict]:
        if not entities:
            return []
        keys = json.dumps([f"entity:{e}" for e in entities])
        # Every closing of every matching incident, so the latest can supersede the rest.
        rows = await self._all(
            "SELECT doc FROM verdicts WHERE id IN (SELECT verdict_id FROM verdict_keys "
            "WHERE key IN (SELECT value FROM json_each(?))) "
            "ORDER BY closed_at DESC, rowid DESC LIMIT ?",
            (keys, MAX_VERDICT_HISTORY),
        )
        return latest_per_incident([IncidentVerdict.model_validate_json(r[0]) for r in rows], since)

    async def list_verdicts(self, *, limit: int = 50, offset: int = 0) -> list[IncidentVerdict]:
        rows = await self._all(
            "SELECT doc FROM verdicts ORDER BY closed_at DESC, rowid DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [IncidentVerdict.model_validate_json(r[0]) for r in rows]

    async def save_action_label(self, label: ActionLabel) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            with transaction(db):
                inserted = db.execute(
                    "INSERT OR IGNORE INTO action_labels VALUES (?,?,?,?)",
                    (label.id, label.incident_id, _utc(label.at), label.model_dump_json()),
                ).rowcount
            return inserted == 1

        return await self._run(write)

    async def action_labels(self, incident_id: str) -> list[ActionLabel]:
        rows = await self._all(
            "SELECT doc FROM action_labels WHERE incident_id=? ORDER BY at, rowid LIMIT ?",
            (incident_id, MAX_ACTION_LABELS),
        )
        return [ActionLabel.model_validate_json(r[0]) for r in rows]

    async def list_action_labels(self, *, limit: int = 50, offset: int = 0) -> list[ActionLabel]:
        rows = await self._all(
            "SELECT doc FROM action_labels ORDER BY at DESC, rowid DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [ActionLabel.model_validate_json(r[0]) for r in rows]

    async def get_flag(self, name: str) -> Any:
        row = await self._one("SELECT value FROM flags WHERE name=?", (name,))
        return json.loads(row[0]) if row else None

    async def get_flags(self, names: Sequence[str]) -> dict[str, Any]:
        return await self._run(lambda db: _flags(db, names))

    async def set_flag(self, name: str, value: Any) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO flags VALUES (?,?)", (name, json.dumps(value))
            )
        )

    async def update_flag(self, name: str, change: Callable[[Any], Any]) -> Any:
        def update(db: sqlite3.Connection) -> Any:
            with transaction(db):  # the write lock first: no writer between
                row = db.execute("SELECT value FROM flags WHERE name=?", (name,)).fetchone()
                new = change(json.loads(row[0]) if row else None)
                db.execute("INSERT OR REPLACE INTO flags VALUES (?,?)", (name, json.dumps(new)))
            return new

        return await self._run(update)

    # -- correlation state ---------------------------------------------------------------

    async def find_by_entity(self, entity_key: str) -> str | None:
        row = await self._one(
            "SELECT incident_id FROM corr_entities WHERE entity_key=?", (entity_key,)
        )
        return str(row[0]) if row else None

    async def index_entity(self, entity_key: str, incident_id: str) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO corr_entities VALUES (?,?)", (entity_key, incident_id)
            )
        )

    async def get_fingerprint(self, fingerprint: str) -> tuple[str, datetime] | None:
        row = await self._one(
            "SELECT incident_id, last_seen FROM corr_fingerprints WHERE fingerprint=?",
            (fingerprint,),
        )
        return (str(row[0]), datetime.fromisoformat(row[1])) if row else None

    async def put_fingerprint(self, fingerprint: str, incident_id: str, seen: datetime) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO corr_fingerprints VALUES (?,?,?)",
                (fingerprint, incident_id, seen.isoformat()),
            )
        )

    async def get_alert_incident(self, alert_id: str) -> str | None:
        row = await self._one("SELECT incident_id FROM corr_alerts WHERE alert_id=?", (alert_id,))
        return str(row[0]) if row else None

    async def put_alert_incident(self, alert_id: str, incident_id: str) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO corr_alerts VALUES (?,?)", (alert_id, incident_id)
            )
        )

    async def correlation_snapshot(
        self, alert_id: str, fingerprint: str, pivots: list[str], incident_ids: list[str]
    ) -> CorrelationSnapshot:
        def read(
            db: sqlite3.Connection,
        ) -> tuple[Any, Any, dict[str, str], dict[str, Incident | None]]:
            known = db.execute(
                "SELECT incident_id FROM corr_alerts WHERE alert_id=?", (alert_id,)
            ).fetchone()
            seen = db.execute(
                "SELECT incident_id, last_seen FROM corr_fingerprints WHERE fingerprint=?",
                (fingerprint,),
            ).fetchone()
            owners = {
                str(k): str(v)
                for k, v in db.execute(
                    "SELECT entity_key, incident_id FROM corr_entities "
                    "WHERE entity_key IN (SELECT value FROM json_each(?))",
                    (json.dumps(pivots),),
                )
            }
            wanted = {*incident_ids, *owners.values()}
            wanted.update(str(row[0]) for row in (known, seen) if row is not None)
            found = self._incidents.read(db, wanted)
            return known, seen, owners, {i: found.get(i) for i in wanted}

        known, seen, owners, incidents = await self._run(read)
        return CorrelationSnapshot(
            alert_id=alert_id,
            fingerprint=fingerprint,
            pivots=frozenset(pivots),
            alert_incident=str(known[0]) if known else None,
            sighting=(str(seen[0]), datetime.fromisoformat(seen[1])) if seen else None,
            owners=owners,
            incidents=incidents,
        )

    async def apply_correlation(self, writes: CorrelationWrites) -> None:
        alert = writes.placed
        home = next((i for a, i in writes.alerts if alert is not None and a == alert.id), None)
        placed = None if alert is None or home is None else _alert_row(alert, home)

        def write(db: sqlite3.Connection) -> None:
            with transaction(db):  # one transaction: a crash leaves all of the correlation or none
                written = self._incidents.write(db, writes.incidents)
                db.executemany("INSERT OR REPLACE INTO corr_entities VALUES (?,?)", writes.entities)
                db.executemany(
                    "INSERT OR REPLACE INTO corr_fingerprints VALUES (?,?,?)",
                    [(fp, i, seen.isoformat()) for fp, i, seen in writes.fingerprints],
                )
                db.executemany("INSERT OR REPLACE INTO corr_alerts VALUES (?,?)", writes.alerts)
                if placed is not None:
                    db.execute(_SAVE_ALERT, placed)
            self._incidents.remember(written)
            if alert is not None and home is not None:
                keep(self._placed, alert.id, home)

        await self._run(write)

    # -- helpers -------------------------------------------------------------------------

    async def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        return await self._run(lambda db: db.execute(sql, params).fetchone())

    async def _all(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return await self._run(lambda db: db.execute(sql, params).fetchall())


_SAVE_ALERT = (
    "INSERT INTO alerts VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
    "incident_id=COALESCE(excluded.incident_id, alerts.incident_id)"
)


def _alert_row(alert: Alert, incident_id: str | None) -> tuple[str | None, ...]:
    return (
        alert.id,
        alert.format,
        alert.created_at.isoformat(),
        alert.received_at.isoformat(),
        incident_id,
        alert.model_dump_json(),
    )


_LATEST_DECISION = (
    "SELECT doc FROM decisions WHERE incident_id=? ORDER BY created_at DESC, rowid DESC LIMIT 1"
)


def _put_investigation(db: sqlite3.Connection, investigation: Investigation) -> None:
    db.execute(
        "INSERT OR REPLACE INTO investigations VALUES (?,?,?)",
        (investigation.id, investigation.incident_id, investigation.model_dump_json()),
    )


def _flags(db: sqlite3.Connection, names: Sequence[str]) -> dict[str, Any]:
    rows = db.execute(
        "SELECT name, value FROM flags WHERE name IN (SELECT value FROM json_each(?))",
        (json.dumps(list(names)),),
    ).fetchall()
    found = {str(name): json.loads(value) for name, value in rows}
    return {n: found.get(n) for n in names}


def _claims_since(db: sqlite3.Connection, action: str, since: datetime) -> int:
    row = db.execute(
        "SELECT COUNT(*) FROM actions WHERE action=? AND status != 'failed' AND claimed_at >= ?",
        (action, since.isoformat()),
    ).fetchone()
    return int(row[0])


def _action(row: Any) -> ActionRecord:
    def ts(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    claimed = ts(row[11])
    assert claimed is not None
    return ActionRecord(
        idempotency_key=row[0],
        action_id=row[1],
        incident_id=row[2],
        action=row[3],
        target=row[4],
        connector=row[5],
        capability=row[6],
        status=ActionStatus(row[7]),
        request=ActionRequest.model_validate_json(row[8]),
        result=json.loads(row[9]) if row[9] else None,
        error=row[10],
        claimed_at=claimed,
        executed_at=ts(row[12]),
        revert_at=ts(row[13]),
        attempts=int(row[14]),
        rollback_claimed_at=ts(row[15]),
    )


def _utc(moment: datetime) -> str:
    """An ISO time in UTC, so stored times compare as text."""
    return moment.astimezone(UTC).isoformat()

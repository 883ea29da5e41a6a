"""Elasticsearch store for the distributed runtime: workers on several machines share it.

Same semantics as `SQLiteStore`, built from what Elasticsearch makes atomic:
single-document writes with `op_type=create` (insert-if-absent) and
`if_seq_no`/`if_primary_term` (compare-and-set on one document).

- Every kind has its own index with a strict mapping: ids, statuses and the
  fields lists sort or filter on are typed (`keyword`, `date_nanos` so
  microseconds survive, `double`, `long`); the model itself sits in `doc`, an
  object with `enabled: false`. That keeps the document readable JSON in
  `_source` (one encoding, not JSON in a string), while Lucene never indexes
  it: vendor `original` payloads with arbitrary keys can neither explode nor
  break the strict mapping, and nothing in them is searchable by accident.
- Reads by id are GETs, which are real-time. Writes never wait for a refresh;
  instead every search refreshes its index first, so a search sees every
  write acknowledged before it (read-your-writes) without making a writer
  wait up to `refresh_interval` while it holds a lease. Searches are the
  rare path: list views, maintenance sweeps, the blast-radius count.
- Correlation goes through `correlation_view()`: incidents are written with
  compare-and-set against the version the correlation read (see
  `soc_agent.correlate.concurrent`).
- `claim_action` takes the idempotency key with `op_type=create`. The
  blast-radius budget is reserved first, on a per-action reservation document
  in `{prefix}-budgets`: a map idempotency key -> claim time, rewritten with
  compare-and-set (`if_seq_no`) and retried on conflict. Every claimer of an
  action, on any machine, must win that one write to take a slot, so
  concurrent claimers cannot jointly exceed the budget. The map keeps exact
  sliding-window semantics (SQLite counts claims since `now - window`), which
  a fixed window-bucket counter would not. A failed action releases its slot
  (`finish_action`), a retry takes it again (`retry_claim`), as SQLite counts
  claims that are not failed. Limits: one document per action serialises that
  action's claims (fine at containment rates, not for thousands per second);
  a claimer that dies between reserving and creating its key leaves a phantom
  slot until it ages out of the window (it can only make the budget stricter);
  entries older than the window are pruned on each budgeted claim, so a later
  caller asking with a longer window than before sees only what was kept.
- Document ids are the model ids, or a SHA-256 of them when longer than the
  512 bytes Elasticsearch allows.
- Lists sort like SQLite; where SQLite falls back to rowid (insertion order)
  an `inserted` stamp (nanoseconds, strictly increasing per process) stands in.
"""

from __future__ import annotations

import base64
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any

from elasticsearch import AsyncElasticsearch, ConflictError, NotFoundError

from soc_agent.correlate.state import CorrelationState, IncidentChanged
from soc_agent.elasticsearch_setup import (
    DATE,
    KEYWORD,
    LONG,
    UNINDEXED_OBJECT,
    UNINDEXED_TEXT,
    document_id,
    ensure_index,
    index_name,
    parse_ts,
    ts,
    utc,
)
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
from soc_agent.models.ids import ACTION_ID_PREFIX
from soc_agent.store.base import (
    MAX_ACTION_LABELS,
    MAX_VERDICT_HISTORY,
    ActionRecord,
    ClaimResult,
    DecisionState,
    latest_per_incident,
)
from soc_agent.store.bounded import ALERTS_HELD, keep

__all__ = ["ElasticsearchStore"]

_MAPPINGS: dict[str, dict[str, dict[str, Any]]] = {
    "alerts": {
        "id": KEYWORD,
        "format": KEYWORD,
        "created_at": DATE,
        "received_at": DATE,
        "incident_id": KEYWORD,
        "inserted": LONG,
        "doc": UNINDEXED_OBJECT,
    },
    "incidents": {"id": KEYWORD, "last_seen": DATE, "inserted": LONG, "doc": UNINDEXED_OBJECT},
    "investigations": {"id": KEYWORD, "incident_id": KEYWORD, "doc": UNINDEXED_OBJECT},
    "decisions": {
        "id": KEYWORD,
        "incident_id": KEYWORD,
        "created_at": DATE,
        "inserted": LONG,
        "doc": UNINDEXED_OBJECT,
    },
    "decisions-latest": {
        "incident_id": KEYWORD,
        "decision_id": KEYWORD,
        "created_at": DATE,
        "inserted": LONG,
        "doc": UNINDEXED_OBJECT,
    },
    "proposals": {
        "id": KEYWORD,
        "decision_id": KEYWORD,
        "incident_id": KEYWORD,
        "status": KEYWORD,
        "urgency": {"type": "double"},
        "expires_at": DATE,
        "version": LONG,
        "inserted": LONG,
        "doc": UNINDEXED_OBJECT,
    },
    "actions": {
        "idempotency_key": KEYWORD,
        "action_id": KEYWORD,
        "incident_id": KEYWORD,
        "action": KEYWORD,
        "target": KEYWORD,
        "connector": KEYWORD,
        "capability": KEYWORD,
        "status": KEYWORD,
        "request": UNINDEXED_OBJECT,
        "result": UNINDEXED_OBJECT,
        "error": UNINDEXED_TEXT,
        "claimed_at": DATE,
        "executed_at": DATE,
        "revert_at": DATE,
        "attempts": LONG,
        "inserted": LONG,
        "rollback_claimed_at": DATE,
    },
    "budgets": {"action": KEYWORD, "claims": UNINDEXED_OBJECT},
    "dead-letters": {
        "id": KEYWORD,
        "source": KEYWORD,
        "reason": UNINDEXED_TEXT,
        "original": {"type": "binary"},
        "headers": UNINDEXED_OBJECT,
        "format_hint": KEYWORD,
        "received_at": DATE,
        "inserted": LONG,
    },
    "flags": {"name": KEYWORD, "value": UNINDEXED_TEXT},
    "verdicts": {
        "id": KEYWORD,
        "incident_id": KEYWORD,
        "closed_at": DATE,
        "inserted": LONG,  # orders closings made in the same instant
        "keys": KEYWORD,  # rule:<rule> and entity:<every name of every entity>
        "doc": UNINDEXED_OBJECT,
    },
    "action-labels": {
        "id": KEYWORD,
        "incident_id": KEYWORD,
        "at": DATE,
        "inserted": LONG,  # orders labels made in the same instant
        "doc": UNINDEXED_OBJECT,
    },
    "corr-entities": {"entity_key": KEYWORD, "incident_id": KEYWORD},
    "corr-fingerprints": {"fingerprint": KEYWORD, "incident_id": KEYWORD, "last_seen": DATE},
    "corr-alerts": {"alert_id": KEYWORD, "incident_id": KEYWORD},
}

_MAX_CAS_ATTEMPTS = 200
# Indices whose every write is refreshed by the writer (rare writes, searched per alert).
_REFRESHED_ON_WRITE = frozenset({"verdicts"})
_CREATED = 201
_CONFLICT = 409
_Found = tuple[dict[str, Any], int, int] | None  # source, seq_no, primary_term; None: absent
_UNSEEN: Any = object()  # no pointer version remembered (None: remembered as absent)
# How old a ledger read made with a decision's state may be when the policy uses it: the
# policy reads a snapshot either way (the claim enforces the budget), and a second bounds
# how much older than a read of its own it may be.
_AHEAD_FRESH_SECONDS = 1.0


def _opt_ts(value: datetime | None) -> str | None:
    return ts(value) if value is not None else None


class ElasticsearchStore:
    """Implements `soc_agent.store.Store` and `soc_agent.correlate.CorrelationState`.

    The client is the caller's: created once, closed by whoever created it.
    Call `ensure_indices()` once at start-up (idempotent, safe from every worker).
    """

    def __init__(
        self,
        client: AsyncElasticsearch,
        *,
        prefix: str = "soc-agent",
        number_of_replicas: int = 1,
        refresh_interval: str = "1s",
    ) -> None:
        self._es = client
        self._prefix = prefix
        self._replicas = number_of_replicas
        self._refresh_interval = refresh_interval
        self._last_inserted = 0
        # incident id -> (pointer without its decision, seq_no, primary_term), newest last
        self._pointers: OrderedDict[str, _Found] = OrderedDict()
        self._saved: OrderedDict[str, int] = OrderedDict()  # decision id -> its `inserted`
        self._alerts: OrderedDict[str, Alert] = OrderedDict()  # read by id (see get_alert)
        # "<index kind>/<key>" -> the incident last seen owning a correlation index entry.
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._placed: OrderedDict[str, str] = OrderedDict()  # alert id -> incident, saved
        # incident id -> (primary_term, seq_no): the newest version correlation here read
        # or wrote. A view that read an older one knows its compare-and-set would fail.
        self._incident_seen: OrderedDict[str, tuple[int, int]] = OrderedDict()
        # incident id -> (idempotency key, action) of the last decision of it seen here
        self._actions_of: OrderedDict[str, tuple[tuple[str, str], ...]] = OrderedDict()
        # idempotency key -> (monotonic read time, ledger row, the action's reservations)
        self._ahead: OrderedDict[str, tuple[float, _Found, _Found]] = OrderedDict()

    def index(self, kind: str) -> str:
        """The index name of one kind (`alerts`, `proposals`, ...)."""
        if kind not in _MAPPINGS:
            raise ValueError(f"unknown store index kind {kind!r}")
        return index_name(self._prefix, kind)

    def indices(self) -> list[str]:
        """Every index this store uses."""
        return [self.index(kind) for kind in _MAPPINGS]

    async def ensure_indices(self) -> None:
        """Create the missing indices with their strict mappings; existing ones are kept and
        gain the fields added since they were created (a mapping only ever grows)."""
        for kind, properties in _MAPPINGS.items():
            await ensure_index(
                self._es,
                self.index(kind),
                properties,
                number_of_replicas=self._replicas,
                refresh_interval=self._refresh_interval,
            )
            await self._es.indices.put_mapping(index=self.index(kind), properties=properties)

    # -- alerts, incidents, investigations, decisions ------------------------------------

    async def save_alert(self, alert: Alert, incident_id: str | None) -> None:
        """Insert; a re-saved alert keeps its document and only gains an incident id.
        Nothing to write when the correlation that placed it there saved it."""
        if incident_id is None:
            await self._create("alerts", alert.id, self._alert_body(alert, None))
            return
        if self._placed.pop(alert.id, None) == incident_id:
            return
        # One request whether it is stored or not (a redelivered alert usually is).
        await self._es.update(
            index=self.index("alerts"),
            id=document_id(alert.id),
            doc={"incident_id": incident_id},
            upsert=self._alert_body(alert, incident_id),
        )

    def _alert_body(self, alert: Alert, incident_id: str | None) -> dict[str, Any]:
        return {
            "id": alert.id,
            "format": alert.format,
            "created_at": ts(alert.created_at),
            "received_at": ts(alert.received_at),
            "incident_id": incident_id,
            "inserted": self._stamp(),
            "doc": alert.model_dump(mode="json"),
        }

    async def get_alert(self, alert_id: str) -> Alert | None:
        """An alert's document never changes once stored (see `save_alert`), so one read
        serves again: an incident's trigger alert is read for many of its decisions."""
        if (held := self._alerts.get(alert_id)) is not None:
            return held
        src = await self._get("alerts", alert_id)
        if not src:
            return None
        alert = Alert.model_validate(src["doc"])
        keep(self._alerts, alert_id, alert, limit=ALERTS_HELD)
        return alert

    async def alerts_of(self, incident_id: str) -> list[Alert]:
        hits = await self._search_all(
            "alerts",
            {"term": {"incident_id": incident_id}},
            [{"created_at": "asc"}, {"inserted": "asc"}],
        )
        return [Alert.model_validate(h["doc"]) for h in hits]

    async def get_incident(self, incident_id: str) -> Incident | None:
        src = await self._get("incidents", incident_id)
        return Incident.model_validate(src["doc"]) if src else None

    async def put_incident(self, incident: Incident) -> None:
        """Unconditional write. Correlation writes through `correlation_view()` instead,
        which never overwrites a concurrent change."""
        await self._put("incidents", incident.id, self._incident_body(incident))

    def correlation_view(self) -> CorrelationState:
        """A fresh view for one correlation: incidents written with compare-and-set.

        The view remembers the version of each incident it read (or that it
        was absent); its `put_incident` writes only if the incident is still
        at that version (creates only if still absent; an incident never read
        is created) and raises `IncidentChanged` otherwise, unless the stored
        incident is already exactly the one being written. `prefetch` and `flush`
        (see `_CorrelationView`) make a correlation one read (two when an owner it
        guessed was wrong) and two writes.
        """
        return _CorrelationView(self)

    async def list_incidents(self, *, limit: int = 50, offset: int = 0) -> list[Incident]:
        hits = await self._search(
            "incidents",
            {"match_all": {}},
            [{"last_seen": "desc"}, {"inserted": "desc"}],
            limit,
            offset,
        )
        return [Incident.model_validate(h["doc"]) for h in hits]

    async def save_investigation(self, investigation: Investigation) -> None:
        await self._put("investigations", investigation.id, _investigation_body(investigation))

    async def get_investigation(self, investigation_id: str) -> Investigation | None:
        src = await self._get("investigations", investigation_id)
        return Investigation.model_validate(src["doc"]) if src else None

    async def save_decision(
        self, decision: Decision, *, investigation: Investigation | None = None
    ) -> None:
        """Insert, or replace keeping its place in insertion order: one `_bulk` of the
        investigation (if given), an upsert of the decision and, from the version this
        process last saw, the incident's pointer, which carries the decision itself.
        A pointer version that is stale by then costs a read and a compare-and-set."""
        doc = decision.model_dump(mode="json")
        stamp = self._saved.get(decision.id) or self._stamp()
        body = {
            "id": decision.id,
            "incident_id": decision.incident_id,
            "created_at": ts(decision.created_at),
            "inserted": stamp,
            "doc": doc,
        }
        pointer = {
            "incident_id": decision.incident_id,
            "decision_id": decision.id,
            "created_at": body["created_at"],
            "inserted": stamp,
            "doc": doc,
        }
        operations: list[dict[str, Any]] = []
        if investigation is not None:
            operations += [
                {
                    "index": {
                        "_index": self.index("investigations"),
                        "_id": document_id(investigation.id),
                    }
                },
                _investigation_body(investigation),
            ]
        operations += [
            {"update": {"_index": self.index("decisions"), "_id": document_id(decision.id)}},
            {"doc": {"doc": doc}, "upsert": body, "_source": ["inserted"]},
        ]
        seen = self._pointers.get(decision.incident_id, _UNSEEN)
        guessed = seen is not _UNSEEN and _moves(seen, pointer)
        if guessed:
            operations += self._pointer_write(decision.incident_id, pointer, seen)
        resp = await self._es.bulk(operations=operations)
        items = list(resp["items"])
        pointed = items.pop() if guessed else None
        refused = [op for item in items for op in item.values() if op.get("error")]
        if refused:
            raise StoreError(f"decision {decision.id} not saved: {refused[0]['error']}")
        self._seen(decision)
        # A re-save keeps its place: the pointer compares the original stamp.
        inserted = int(items[-1]["update"]["get"]["_source"]["inserted"])
        keep(self._saved, decision.id, inserted)
        if pointed is not None:
            written = next(iter(pointed.values()))
            if not written.get("error") and inserted == stamp:
                version = (pointer, int(written["_seq_no"]), int(written["_primary_term"]))
                self._remember_pointer(decision.incident_id, version)
                return
        elif seen is not _UNSEEN:
            return  # a later decision of the incident is the latest, as last seen
        self._pointers.pop(decision.incident_id, None)
        await self._point_latest(decision, doc, inserted)

    async def latest_decision(self, incident_id: str) -> Decision | None:
        """The incident's newest decision: one real-time GET of its pointer, never a search.

        Every decision of an incident moves its pointer document forward (by
        `created_at`, then insertion), so the agent deciding again right after
        another worker sees that decision without waiting for a refresh.
        """
        return await self._latest(
            incident_id, await self._get_versioned("decisions-latest", incident_id)
        )

    async def decision_state(
        self,
        decision_id: str,
        incident_id: str,
        *,
        with_incident: bool = False,
        flags: Sequence[str] = (),
        standing: bool = False,
    ) -> DecisionState:
        """One real-time `_mget` across the decisions, pointers, incidents and flags; with
        `standing`, also the ledger rows and reservations of the actions the incident's
        last decision seen here asked for, kept for `action_standing` (the same actions
        are usually asked for again)."""
        wanted = [("decisions", decision_id), ("decisions-latest", incident_id)]
        if with_incident:
            wanted.append(("incidents", incident_id))
        wanted += [("flags", name) for name in flags]
        ahead = self._actions_of.get(incident_id, ()) if standing else ()
        for key, action in ahead:
            wanted += [("actions", key), ("budgets", action)]
        made, pointer, *rest = await self._mget(wanted)
        incident = rest.pop(0) if with_incident else None
        read_at = time.monotonic()
        for i, (key, _) in enumerate(ahead):
            at = len(flags) + 2 * i
            keep(self._ahead, key, (read_at, rest[at], rest[at + 1]))
        return DecisionState(
            made=Decision.model_validate(made[0]["doc"]) if made else None,
            latest=await self._latest(incident_id, pointer),
            incident=Incident.model_validate(incident[0]["doc"]) if incident else None,
            flags={
                name: json.loads(found[0]["value"]) if found else None
                for name, found in zip(flags, rest[: len(flags)], strict=True)
            },
        )

    async def _latest(self, incident_id: str, pointer: _Found) -> Decision | None:
        self._remember_pointer(incident_id, pointer)
        if pointer is None:
            return None
        src = pointer[0]
        if "doc" in src:
            return self._seen(Decision.model_validate(src["doc"]))
        # A pointer written before pointers carried their decision.
        return await self.get_decision(str(src["decision_id"]))

    def _seen(self, decision: Decision) -> Decision:
        """Remember which actions the incident's decision asked for (see `decision_state`)."""
        asked = tuple((request.idempotency_key, request.action) for request in decision.actions)
        keep(self._actions_of, decision.incident_id, asked)
        return decision

    def _remember_pointer(self, incident_id: str, pointer: _Found) -> None:
        """Keep the pointer's version (not its decision), or that there is none, to write
        it next without reading it first."""
        if pointer is not None:
            src, seq_no, primary_term = pointer
            meta = {k: src[k] for k in ("decision_id", "created_at", "inserted")}
            pointer = (meta, seq_no, primary_term)
        keep(self._pointers, incident_id, pointer)

    def _pointer_write(
        self,
        incident_id: str,
        body: dict[str, Any],
        seen: _Found,
    ) -> list[dict[str, Any]]:
        """The `_bulk` lines writing the pointer over the version seen (None: none)."""
        target = {"_index": self.index("decisions-latest"), "_id": document_id(incident_id)}
        if seen is None:
            return [{"create": target}, body]
        return [{"index": target | {"if_seq_no": seen[1], "if_primary_term": seen[2]}}, body]

    async def _point_latest(self, decision: Decision, doc: dict[str, Any], inserted: int) -> None:
        """Read the pointer and compare-and-set it forward (retried on a conflict)."""
        mine = (ts(decision.created_at), inserted)
        body = {
            "incident_id": decision.incident_id,
            "decision_id": decision.id,
            "created_at": mine[0],
            "inserted": inserted,
            "doc": doc,
        }
        found: _Found = None
        for _ in range(_MAX_CAS_ATTEMPTS):
            if found is None:
                found = await self._get_versioned("decisions-latest", decision.incident_id)
                self._remember_pointer(decision.incident_id, found)
                if found is not None and (found[0].get("doc"), found[0]["inserted"]) == (
                    doc,
                    inserted,
                ):
                    return
            if found is None:
                try:
                    resp = await self._es.index(
                        index=self.index("decisions-latest"),
                        id=document_id(decision.incident_id),
                        document=body,
                        op_type="create",
                    )
                except ConflictError:
                    continue
                break
            src, seq_no, primary_term = found
            if src["decision_id"] != decision.id and (src["created_at"], src["inserted"]) > mine:
                return  # a later decision of the incident is already the latest
            try:
                resp = await self._es.index(
                    index=self.index("decisions-latest"),
                    id=document_id(decision.incident_id),
                    document=body,
                    if_seq_no=seq_no,
                    if_primary_term=primary_term,
                )
            except ConflictError:
                found = None
                continue
            break
        else:
            raise StoreError(
                f"latest decision of {decision.incident_id}: no consistent update after "
                f"{_MAX_CAS_ATTEMPTS} attempts"
            )
        self._remember_pointer(
            decision.incident_id, (body, int(resp["_seq_no"]), int(resp["_primary_term"]))
        )

    async def get_decision(self, decision_id: str) -> Decision | None:
        src = await self._get("decisions", decision_id)
        return Decision.model_validate(src["doc"]) if src else None

    async def list_decisions(self, *, limit: int = 50, offset: int = 0) -> list[Decision]:
        hits = await self._search(
            "decisions", {"match_all": {}}, [{"inserted": "asc"}], limit, offset
        )
        return [Decision.model_validate(h["doc"]) for h in hits]

    # -- proposals -----------------------------------------------------------------------

    async def save_proposal(self, proposal: Proposal) -> bool:
        """Insert a new proposal; false if one with this id already exists."""
        return await self._create(
            "proposals",
            proposal.id,
            {
                "id": proposal.id,
                "decision_id": proposal.decision_id,
                "incident_id": proposal.incident_id,
                "status": proposal.status.value,
                "urgency": proposal.urgency,
                "expires_at": ts(proposal.expires_at),
                "version": proposal.version,
                "inserted": self._stamp(),
                "doc": proposal.model_dump(mode="json"),
            },
        )

    async def get_proposal(self, proposal_id: str) -> Proposal | None:
        src = await self._get("proposals", proposal_id)
        return Proposal.model_validate(src["doc"]) if src else None

    async def update_proposal(self, proposal: Proposal, *, expected_version: int) -> bool:
        """Optimistic concurrency: writes only if nobody changed it since `expected_version`.

        The stored `version` is checked on a real-time GET, and the write is
        conditional on that GET's `_seq_no`, so two updaters holding the same
        version cannot both succeed.
        """
        found = await self._get_versioned("proposals", proposal.id)
        if found is None:
            return False
        src, seq_no, primary_term = found
        if src.get("version") != expected_version:
            return False
        proposal = proposal.model_copy(update={"version": expected_version + 1})
        # Like SQLite's UPDATE: status, urgency, version and doc change; the rest stays.
        body = {
            **src,
            "status": proposal.status.value,
            "urgency": proposal.urgency,
            "version": proposal.version,
            "doc": proposal.model_dump(mode="json"),
        }
        try:
            await self._es.index(
                index=self.index("proposals"),
                id=document_id(proposal.id),
                document=body,
                if_seq_no=seq_no,
                if_primary_term=primary_term,
            )
        except ConflictError:
            return False
        return True

    async def list_proposals(
        self, *, status: ProposalStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[Proposal]:
        query: dict[str, Any] = (
            {"match_all": {}} if status is None else {"term": {"status": status.value}}
        )
        hits = await self._search(
            "proposals",
            query,
            [{"urgency": "desc"}, {"expires_at": "asc"}, {"inserted": "asc"}],
            limit,
            offset,
        )
        return [Proposal.model_validate(h["doc"]) for h in hits]

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

        With a budget `(max, since)`, a slot is first reserved on the action's
        reservation document (compare-and-set), and only while fewer than `max`
        non-failed claims were made since `since`; see the module docstring.
        """
        key = request.idempotency_key
        held = await self._get("actions", key)
        if held is not None:
            return ClaimResult(claimed=False, record=_action(held))
        if not await self._reserve(request.action, key, now, budget):
            return ClaimResult(claimed=False, record=None, over_budget=True)
        body = {
            "idempotency_key": key,
            "action_id": request.id,
            "incident_id": incident_id,
            "action": request.action,
            "target": request.target.value,
            "connector": request.connector,
            "capability": request.capability,
            "status": "claimed",
            "request": request.model_dump(mode="json"),
            "result": None,
            "error": None,
            "claimed_at": ts(now),
            "executed_at": None,
            "revert_at": None,
            "attempts": 1,
            "inserted": self._stamp(),
        }
        if await self._create("actions", key, body):
            return ClaimResult(claimed=True, record=_action(body))
        # Another claimer of the same key won; the slot is keyed by the key, so it is theirs.
        src = await self._get("actions", key)
        if src is None:
            raise StoreError(f"action {key}: the key was taken but its record is gone")
        return ClaimResult(claimed=False, record=_action(src))

    async def retry_claim(self, key: str, now: datetime) -> None:
        def change(src: dict[str, Any]) -> dict[str, Any]:
            return {
                **src,
                "status": "claimed",
                "attempts": int(src["attempts"]) + 1,
                "claimed_at": ts(now),
            }

        src = await self._cas_action(key, change)
        if src is not None:
            await self._adjust_reservation(str(src["action"]), key, now)

    async def claim_rollback(self, key: str, now: datetime, *, stale_before: datetime) -> bool:
        for _ in range(_MAX_CAS_ATTEMPTS):
            found = await self._get_versioned("actions", key)
            if found is None:
                return False
            src, seq_no, primary_term = found
            claimed = parse_ts(src.get("rollback_claimed_at"))
            orphaned = (
                src["status"] == ActionStatus.ROLLING_BACK
                and claimed is not None
                and claimed < stale_before
            )
            if src["status"] != ActionStatus.EXECUTED and not orphaned:
                return False
            try:
                await self._es.index(
                    index=self.index("actions"),
                    id=document_id(key),
                    document={
                        **src,
                        "status": ActionStatus.ROLLING_BACK.value,
                        "rollback_claimed_at": ts(now),
                    },
                    if_seq_no=seq_no,
                    if_primary_term=primary_term,
                )
            except ConflictError:
                continue  # someone changed it: look again
            return True
        return False

    async def release_rollback(self, key: str) -> None:
        def change(src: dict[str, Any]) -> dict[str, Any]:
            if src["status"] != ActionStatus.ROLLING_BACK:
                return src
            return {**src, "status": ActionStatus.EXECUTED.value, "rollback_claimed_at": None}

        await self._cas_action(key, change)

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
        def change(src: dict[str, Any]) -> dict[str, Any]:
            return {
                **src,
                "status": status.value,
                "result": result,
                "error": error,
                "executed_at": ts(now),
                "revert_at": _opt_ts(revert_at),
            }

        src = await self._cas_action(key, change)
        if src is not None and status is ActionStatus.FAILED:
            # Failed claims do not count against the budget (as in SQLite): free the slot.
            await self._adjust_reservation(str(src["action"]), key, None)

    async def get_action(self, key: str) -> ActionRecord | None:
        """By idempotency key (a real-time GET), else by action id (a search; only for
        what can be an action id, so the policy's look-ups by key stay one GET)."""
        src = await self._get("actions", key)
        if src is not None:
            return _action(src)
        if not key.startswith(ACTION_ID_PREFIX):
            return None
        hits = await self._search("actions", {"term": {"action_id": key}}, [], 1, 0)
        return _action(hits[0]) if hits else None

    async def list_actions(self, *, limit: int = 50, offset: int = 0) -> list[ActionRecord]:
        hits = await self._search(
            "actions",
            {"match_all": {}},
            [{"claimed_at": "asc"}, {"inserted": "asc"}],
            limit,
            offset,
        )
        return [_action(h) for h in hits]

    async def due_reverts(self, now: datetime) -> list[ActionRecord]:
        query = {
            "bool": {
                "filter": [
                    {"term": {"status": "executed"}},
                    {"range": {"revert_at": {"lte": ts(now)}}},
                ]
            }
        }
        hits = await self._search_all("actions", query, [{"revert_at": "asc"}, {"inserted": "asc"}])
        return [_action(h) for h in hits]

    async def count_executions(self, action: str, since: datetime) -> int:
        """Claims of an action since a time, in flight or done (failed ones do not count).

        Read from the action's reservation document, the one `claim_action` enforces
        the budget on: one real-time GET, where a count would need a refresh and a
        search. It holds the same claims (a failed one frees its slot, a retry takes
        it again), plus any phantom slot of a claimer that died before its key.
        """
        return _claims(await self._get_versioned("budgets", action), since)

    async def action_standing(
        self, key: str, action: str, since: datetime
    ) -> tuple[ActionRecord | None, int]:
        """The ledger row by idempotency key and the action's claims since `since`, from
        its reservation document (see `count_executions`): one real-time `_mget`, or
        none when `decision_state` read them under a second ago."""
        ahead = self._ahead.pop(key, None)
        if ahead is not None and time.monotonic() - ahead[0] <= _AHEAD_FRESH_SECONDS:
            held, budget = ahead[1], ahead[2]
        else:
            held, budget = await self._mget([("actions", key), ("budgets", action)])
        return (_action(held[0]) if held else None), _claims(budget, since)

    async def actions_and_proposals(
        self, keys: Sequence[str], proposal_ids: Sequence[str]
    ) -> tuple[list[ActionRecord | None], list[Proposal | None]]:
        """One real-time `_mget` of the ledger rows and the proposals."""
        found = await self._mget(
            [*(("actions", key) for key in keys), *(("proposals", pid) for pid in proposal_ids)]
        )
        return (
            [_action(hit[0]) if hit else None for hit in found[: len(keys)]],
            [Proposal.model_validate(hit[0]["doc"]) if hit else None for hit in found[len(keys) :]],
        )

    # -- dead letters and flags ----------------------------------------------------------

    async def save_dead_letter(self, letter: DeadLetter) -> None:
        """Insert; a letter with an id already stored is ignored. Bytes travel as base64."""
        await self._create(
            "dead-letters",
            letter.id,
            {
                "id": letter.id,
                "source": letter.source,
                "reason": letter.reason,
                "original": base64.b64encode(letter.original).decode("ascii"),
                "headers": letter.headers,
                "format_hint": letter.format_hint,
                "received_at": ts(letter.received_at),
                "inserted": self._stamp(),
            },
        )

    async def list_dead_letters(self, *, limit: int = 50) -> list[DeadLetter]:
        hits = await self._search(
            "dead-letters",
            {"match_all": {}},
            [{"received_at": "asc"}, {"inserted": "asc"}],
            limit,
            0,
        )
        return [
            DeadLetter(
                id=h["id"],
                source=h["source"],
                reason=h["reason"],
                original=base64.b64decode(h["original"], validate=True),
                headers=h["headers"],
                format_hint=h["format_hint"],
                received_at=datetime.fromisoformat(h["received_at"]),
            )
            for h in hits
        ]

    # -- analyst verdicts ------------------------------------------------------------------

    async def save_verdict(self, verdict: IncidentVerdict) -> bool:
        """Insert; a record with an id already stored is ignored (False). Searchable once
        this returns: searches of verdicts, one per decision reading history, refresh
        nothing themselves."""
        return await self._create(
            "verdicts",
            verdict.id,
            {
                "id": verdict.id,
                "incident_id": verdict.incident_id,
                "closed_at": ts(verdict.closed_at),
                "inserted": self._stamp(),
                "keys": [f"rule:{r}" for r in verdict.rules]
                + [f"entity:{e}" for e in verdict.entities],
                "doc": verdict.model_dump(mode="json"),
            },
            refresh=True,
        )

    async def get_verdict(self, verdict_id: str) -> IncidentVerdict | None:
        src = await self._get("verdicts", verdict_id)
        return IncidentVerdict.model_validate(src["doc"]) if src else None

    async def incident_verdict(self, incident_id: str) -> IncidentVerdict | None:
        hits = await self._search(
            "verdicts",
            {"term": {"incident_id": incident_id}},
            [{"closed_at": "desc"}, {"inserted": "desc"}],
            1,
            0,
        )
        return IncidentVerdict.model_validate(hits[0]["doc"]) if hits else None

    async def verdict_history(
        self, *, rule: str | None, entity: str | None, since: datetime
    ) -> list[IncidentVerdict]:
        keys = [k for k in (rule and f"rule:{rule}", entity and f"entity:{entity}") if k]
        if not keys:
            raise ValueError("verdict history needs a rule, an entity or both")
        # Every closing of every matching incident, so the latest can supersede the rest.
        hits = await self._search(
            "verdicts",
            {"bool": {"filter": [{"term": {"keys": key}} for key in keys]}},
            [{"closed_at": "desc"}, {"inserted": "desc"}],
            MAX_VERDICT_HISTORY,
            0,
        )
        return latest_per_incident([IncidentVerdict.model_validate(h["doc"]) for h in hits], since)

    async def verdicts_naming(self, entities: list[str], since: datetime) -> list[IncidentVerdict]:
        if not entities:
            return []
        hits = await self._search(
            "verdicts",
            {"terms": {"keys": [f"entity:{e}" for e in entities]}},
            [{"closed_at": "desc"}, {"inserted": "desc"}],
            MAX_VERDICT_HISTORY,
            0,
        )
        return latest_per_incident([IncidentVerdict.model_validate(h["doc"]) for h in hits], since)

    async def list_verdicts(self, *, limit: int = 50, offset: int = 0) -> list[IncidentVerdict]:
        hits = await self._search(
            "verdicts",
            {"match_all": {}},
            [{"closed_at": "desc"}, {"inserted": "desc"}],
            limit,
            offset,
        )
        return [IncidentVerdict.model_validate(h["doc"]) for h in hits]

    async def save_action_label(self, label: ActionLabel) -> bool:
        return await self._create(
            "action-labels",
            label.id,
            {
                "id": label.id,
                "incident_id": label.incident_id,
                "at": ts(label.at),
                "inserted": self._stamp(),
                "doc": label.model_dump(mode="json"),
            },
        )

    async def action_labels(self, incident_id: str) -> list[ActionLabel]:
        hits = await self._search(
            "action-labels",
            {"term": {"incident_id": incident_id}},
            [{"at": "asc"}, {"inserted": "asc"}],
            MAX_ACTION_LABELS,
            0,
        )
        return [ActionLabel.model_validate(h["doc"]) for h in hits]

    async def list_action_labels(self, *, limit: int = 50, offset: int = 0) -> list[ActionLabel]:
        hits = await self._search(
            "action-labels",
            {"match_all": {}},
            [{"at": "desc"}, {"inserted": "desc"}],
            limit,
            offset,
        )
        return [ActionLabel.model_validate(h["doc"]) for h in hits]

    async def get_flag(self, name: str) -> Any:
        src = await self._get("flags", name)
        return json.loads(src["value"]) if src else None

    async def get_flags(self, names: Sequence[str]) -> dict[str, Any]:
        if not names:
            return {}
        resp = await self._es.mget(
            index=self.index("flags"), ids=[document_id(n) for n in names], source=["value"]
        )
        found = [d["_source"]["value"] if d.get("found") else None for d in resp["docs"]]
        return {n: None if v is None else json.loads(v) for n, v in zip(names, found, strict=True)}

    async def set_flag(self, name: str, value: Any) -> None:
        # The value is any JSON (a bool, a number, a list...): kept as its JSON text.
        await self._put("flags", name, {"name": name, "value": json.dumps(value)})

    async def update_flag(self, name: str, change: Callable[[Any], Any]) -> Any:
        for _ in range(_MAX_CAS_ATTEMPTS):
            found = await self._get_versioned("flags", name)
            new = change(json.loads(found[0]["value"]) if found else None)
            body = {"name": name, "value": json.dumps(new)}
            if await self._write_unless_changed("flags", name, body, found):
                return new
        raise StoreError(f"flag {name}: no consistent update after {_MAX_CAS_ATTEMPTS} attempts")

    # -- correlation state ---------------------------------------------------------------

    async def find_by_entity(self, entity_key: str) -> str | None:
        src = await self._get("corr-entities", entity_key)
        return str(src["incident_id"]) if src else None

    async def index_entity(self, entity_key: str, incident_id: str) -> None:
        await self._put(
            "corr-entities",
            entity_key,
            {"entity_key": entity_key, "incident_id": incident_id},
        )

    async def get_fingerprint(self, fingerprint: str) -> tuple[str, datetime] | None:
        src = await self._get("corr-fingerprints", fingerprint)
        if src is None:
            return None
        return str(src["incident_id"]), datetime.fromisoformat(src["last_seen"])

    async def put_fingerprint(self, fingerprint: str, incident_id: str, seen: datetime) -> None:
        await self._put(
            "corr-fingerprints",
            fingerprint,
            {"fingerprint": fingerprint, "incident_id": incident_id, "last_seen": ts(seen)},
        )

    async def get_alert_incident(self, alert_id: str) -> str | None:
        src = await self._get("corr-alerts", alert_id)
        return str(src["incident_id"]) if src else None

    async def put_alert_incident(self, alert_id: str, incident_id: str) -> None:
        await self._put(
            "corr-alerts",
            alert_id,
            {"alert_id": alert_id, "incident_id": incident_id},
        )

    # -- budget reservations -------------------------------------------------------------

    async def _reserve(
        self, action: str, key: str, now: datetime, budget: tuple[int, datetime] | None
    ) -> bool:
        """Take a slot for `key` on the action's reservation document; false if over budget.

        Compare-and-set loop: read the document (real-time), decide, write it back
        conditional on the `_seq_no` read; on a conflict somebody else changed it
        first, so read again and decide again.
        """
        for _ in range(_MAX_CAS_ATTEMPTS):
            found = await self._get_versioned("budgets", action)
            claims: dict[str, str] = dict(found[0]["claims"]) if found else {}
            if budget is not None:
                limit, since = budget
                floor = utc(since)
                claims = {k: at for k, at in claims.items() if datetime.fromisoformat(at) >= floor}
                if key not in claims and len(claims) >= limit:
                    return False
            if key in claims:
                return True  # a concurrent claimer of the same key holds the slot for it
            claims[key] = ts(now)
            if await self._write_unless_changed(
                "budgets", action, {"action": action, "claims": claims}, found
            ):
                return True
        raise StoreError(
            f"budget of {action}: no consistent reservation after {_MAX_CAS_ATTEMPTS} attempts"
        )

    async def _adjust_reservation(self, action: str, key: str, at: datetime | None) -> None:
        """Set (`at` given) or release (`at` None) the slot of `key`, outside any budget check."""
        for _ in range(_MAX_CAS_ATTEMPTS):
            found = await self._get_versioned("budgets", action)
            claims: dict[str, str] = dict(found[0]["claims"]) if found else {}
            if at is None:
                if claims.pop(key, None) is None:
                    return
            else:
                claims[key] = ts(at)
            if await self._write_unless_changed(
                "budgets", action, {"action": action, "claims": claims}, found
            ):
                return
        raise StoreError(
            f"budget of {action}: no consistent update after {_MAX_CAS_ATTEMPTS} attempts"
        )

    async def _write_unless_changed(
        self, kind: str, doc_id: str, body: dict[str, Any], found: _Found
    ) -> bool:
        """Write `body` over the version `found` read (create it if `found` is None);
        false when another writer changed the document since."""
        if found is None:
            return await self._create(kind, doc_id, body)
        try:
            await self._es.index(
                index=self.index(kind),
                id=document_id(doc_id),
                document=body,
                if_seq_no=found[1],
                if_primary_term=found[2],
            )
        except ConflictError:
            return False
        return True

    async def _cas_action(
        self, key: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any] | None:
        """Read-modify-write of one action record, retried on a concurrent change."""
        for _ in range(_MAX_CAS_ATTEMPTS):
            found = await self._get_versioned("actions", key)
            if found is None:
                return None
            new = change(found[0])
            if await self._write_unless_changed("actions", key, new, found):
                return new
        raise StoreError(f"action {key}: no consistent update after {_MAX_CAS_ATTEMPTS} attempts")

    # -- helpers -------------------------------------------------------------------------

    def _incident_body(self, incident: Incident) -> dict[str, Any]:
        return {
            "id": incident.id,
            "last_seen": ts(incident.last_seen),
            "inserted": self._stamp(),
            "doc": incident.model_dump(mode="json"),
        }

    def _stamp(self) -> int:
        """Insertion order across this process (strictly increasing), by wall clock across."""
        self._last_inserted = max(self._last_inserted + 1, time.time_ns())
        return self._last_inserted

    async def _get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        found = await self._get_versioned(kind, doc_id)
        return found[0] if found else None

    async def _get_versioned(self, kind: str, doc_id: str) -> _Found:
        try:
            resp = await self._es.get(index=self.index(kind), id=document_id(doc_id))
        except NotFoundError as exc:
            if exc.body and isinstance(exc.body, Mapping) and "error" in exc.body:
                raise StoreError(
                    f"index {self.index(kind)} is missing: call ensure_indices() first"
                ) from exc
            return None
        return dict(resp["_source"]), int(resp["_seq_no"]), int(resp["_primary_term"])

    async def _mget(self, wanted: Sequence[tuple[str, str]]) -> list[_Found]:
        """Each (kind, id) as (source, seq_no, primary_term), or None when absent: one
        real-time `_mget` across indices."""
        if not wanted:
            return []
        resp = await self._es.mget(
            docs=[{"_index": self.index(kind), "_id": document_id(key)} for kind, key in wanted]
        )
        out: list[_Found] = []
        for (kind, _), doc in zip(wanted, resp["docs"], strict=True):
            if "error" in doc:
                raise StoreError(f"cannot read {self.index(kind)}: {doc['error']}")
            out.append(
                (dict(doc["_source"]), int(doc["_seq_no"]), int(doc["_primary_term"]))
                if doc.get("found")
                else None
            )
        return out

    async def _create(
        self, kind: str, doc_id: str, body: dict[str, Any], *, refresh: bool = False
    ) -> bool:
        """Insert if absent; false when a document with this id exists. `refresh`: visible
        to searches once this returns (see `_REFRESHED_ON_WRITE`)."""
        try:
            await self._es.index(
                index=self.index(kind),
                id=document_id(doc_id),
                document=body,
                op_type="create",
                refresh="true" if refresh else None,
            )
        except ConflictError:
            return False
        return True

    async def _put(self, kind: str, doc_id: str, body: dict[str, Any]) -> None:
        await self._es.index(index=self.index(kind), id=document_id(doc_id), document=body)

    async def _refresh(self, kind: str) -> None:
        """Make every acknowledged write to `kind` visible to the search that follows."""
        if kind not in _REFRESHED_ON_WRITE:
            await self._es.indices.refresh(index=self.index(kind))

    async def _search(
        self,
        kind: str,
        query: dict[str, Any],
        sort: list[dict[str, str]],
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        await self._refresh(kind)
        resp = await self._es.search(
            index=self.index(kind), query=query, sort=sort or None, size=limit, from_=offset
        )
        return [dict(hit["_source"]) for hit in resp["hits"]["hits"]]

    async def _search_all(
        self, kind: str, query: dict[str, Any], sort: list[dict[str, str]], page: int = 500
    ) -> list[dict[str, Any]]:
        """Every match, paged with search_after (no 10,000-hit window)."""
        await self._refresh(kind)
        out: list[dict[str, Any]] = []
        after: list[Any] | None = None
        while True:
            resp = await self._es.search(
                index=self.index(kind),
                query=query,
                sort=sort,
                size=page,
                search_after=after,
            )
            hits = resp["hits"]["hits"]
            out.extend(dict(hit["_source"]) for hit in hits)
            if len(hits) < page:
                return out
            after = list(hits[-1]["sort"])


class _CorrelationView:
    """`ElasticsearchStore.correlation_view()`: one correlation's versioned window on the store.

    `prefetch` reads, in one `_mget`, everything the rules may consult (the
    alert's index entry, the fingerprint's sighting, the owner of each pivot,
    and every incident those name, with its version), the incidents guessed from
    the owners this process last saw; a second `_mget` fetches any it guessed
    wrong. Reads are then answered from it. An incident that was read is written at
    once, with compare-and-set, as the first write; the index writes are kept and
    `flush` sends them, the entities', the fingerprint's and the alert's entry, in
    one `_bulk` (the alert's entry is taken back if another of them fails: see
    `flush`). A new incident is created in that bulk, first: its id was read as
    absent under the key locks, and an entry naming an incident that is not there
    reads as no entry, so a refused create leaves nothing a correlation would follow.
    """

    def __init__(self, store: ElasticsearchStore) -> None:
        self._store = store
        # incident id -> (seq_no, primary_term) of the first read; None: read as absent.
        self._versions: dict[str, tuple[int, int] | None] = {}
        self._incidents: dict[str, Incident | None] = {}
        self._known: dict[tuple[str, str], dict[str, Any] | None] = {}  # (kind, id) -> source
        self._pending: list[tuple[str, str, dict[str, Any]]] = []  # (kind, id, body)
        self._creating: tuple[Incident, dict[str, Any]] | None = None  # sent with `flush`

    async def prefetch(
        self, alert_id: str, fingerprint: str, pivots: list[str], incident_ids: list[str]
    ) -> None:
        store = self._store
        wanted = [
            ("corr-alerts", alert_id),
            ("corr-fingerprints", fingerprint),
            *(("corr-entities", key) for key in pivots),
        ]
        # The incidents this process last saw owning these keys come in the same read, a
        # guess: a second read fetches any owner it missed.
        owners = (store._owners.get(f"{kind}/{key}") for kind, key in wanted[1:])
        guessed = sorted({*incident_ids, *(o for o in owners if o is not None)})
        found = await store._mget([*wanted, *(("incidents", i) for i in guessed)])
        for (kind, key), entry in zip(wanted, found, strict=False):
            self._known[kind, key] = None if entry is None else entry[0]
            if entry is not None and kind != "corr-alerts":
                keep(store._owners, f"{kind}/{key}", str(entry[0]["incident_id"]))
        for incident_id, entry in zip(guessed, found[len(wanted) :], strict=True):
            self._remember(incident_id, entry)
        named = {str(src["incident_id"]) for src in self._known.values() if src is not None}
        missed = sorted(named.difference(guessed))
        for incident_id, entry in zip(
            missed, await store._mget([("incidents", i) for i in missed]), strict=True
        ):
            self._remember(incident_id, entry)

    async def flush(self, alert: Alert | None = None) -> None:
        """Send the kept index writes in one `_bulk`, the alert's entry with them. With the
        `alert` placed, its document goes in the bulk too (`save_alert` then has nothing
        left to write).

        The alert's entry marks it placed, so it must not stand beside an index write
        that failed: if any other write of the bulk is refused, the entry is deleted
        again before the error is raised, as when it was the write after the bulk (a
        process that dies in that very moment leaves it standing). Either way the
        redelivered alert is found in the incident written first; the refused entries
        are not written again. A new incident goes first in the bulk; if it is refused,
        the alert's entry is taken back the same way and the redelivered alert, finding
        entries that name no incident, opens it again.
        """
        pending, self._pending = self._pending, []
        creating, self._creating = self._creating, None
        store = self._store
        operations: list[dict[str, Any]] = []
        if creating is not None:
            target = {"_index": store.index("incidents"), "_id": document_id(creating[0].id)}
            operations += [{"create": target}, creating[1]]
        for kind, key, body in pending:
            operations += [{"index": {"_index": store.index(kind), "_id": document_id(key)}}, body]
        # The incident this correlation placed the alert in (none: it placed nothing).
        entries = {k: b["incident_id"] for kind, k, b in pending if kind == "corr-alerts"}
        placed = entries.get(alert.id) if alert is not None else None
        if alert is not None and placed is not None:
            target = {"_index": store.index("alerts"), "_id": document_id(alert.id)}
            operations += [{"create": target}, store._alert_body(alert, placed)]
        if not operations:
            return
        resp = await store._es.bulk(operations=operations)
        items = list(resp["items"])
        problem: str | None = None
        refused = None if creating is None else await self._created(*creating, items.pop(0))
        saved = False
        if alert is not None and placed is not None:
            created = items.pop()["create"]
            saved = created.get("status") == _CREATED
            if saved:
                keep(store._placed, alert.id, placed)
            elif created.get("status") != _CONFLICT:  # a 409: it was saved before
                problem = f"alert {alert.id} not saved: {created.get('error')}"
        results = [next(iter(item.values())) for item in items]
        failed = [result for result in results if result.get("error")]
        if failed and problem is None:
            problem = f"correlation index writes refused: {failed[0]['error']}"
        if problem is not None or refused is not None:
            written = [
                key
                for (kind, key, _), result in zip(pending, results, strict=True)
                if kind == "corr-alerts" and not result.get("error")
            ]
            await self._take_back(written)
            if refused is not None and alert is not None and saved:
                await self._unsave(alert.id)  # it names the incident that is not there
            raise refused or StoreError(str(problem))
        for kind, key, body in pending:
            if kind != "corr-alerts":
                keep(store._owners, f"{kind}/{key}", str(body["incident_id"]))

    async def _created(
        self, incident: Incident, body: dict[str, Any], item: Mapping[str, Any]
    ) -> Exception | None:
        """Record the new incident's version; the error to raise if it was not created
        (`IncidentChanged` when another incident took its id: the correlation starts over)."""
        result = item["create"]
        if result.get("status") == _CREATED:
            self._wrote(incident, (int(result["_seq_no"]), int(result["_primary_term"])))
            return None
        if result.get("status") != _CONFLICT:
            return StoreError(f"incident {incident.id} not created: {result.get('error')}")
        # Ours, landed by a client-level retry of the bulk, or another's: compare.
        found = await self._store._get_versioned("incidents", incident.id)
        if found is None or found[0]["doc"] != body["doc"]:
            return IncidentChanged(incident.id)
        self._wrote(incident, (found[1], found[2]))
        return None

    async def _unsave(self, alert_id: str) -> None:
        self._store._placed.pop(alert_id, None)
        with suppress(NotFoundError):
            await self._store._es.delete(
                index=self._store.index("alerts"), id=document_id(alert_id)
            )

    async def _take_back(self, alert_ids: list[str]) -> None:
        for alert_id in alert_ids:
            with suppress(NotFoundError):
                await self._store._es.delete(
                    index=self._store.index("corr-alerts"), id=document_id(alert_id)
                )

    async def get_incident(self, incident_id: str) -> Incident | None:
        if incident_id not in self._incidents:
            found = await self._store._get_versioned("incidents", incident_id)
            self._remember(incident_id, found)
        return self._incidents[incident_id]

    def _remember(self, incident_id: str, found: _Found) -> None:
        # The first read wins: a write built from it must not pass on a later read's version.
        self._versions.setdefault(incident_id, (found[1], found[2]) if found else None)
        if found:
            self._saw(incident_id, (found[1], found[2]))
        self._incidents.setdefault(
            incident_id, Incident.model_validate(found[0]["doc"]) if found else None
        )

    async def put_incident(self, incident: Incident) -> None:
        store = self._store
        body = store._incident_body(incident)
        version = self._versions.get(incident.id)
        if version is None:
            self._creating = (incident, body)  # created with the index writes (see flush)
            self._incidents[incident.id] = incident
            return
        if self._stale(incident.id, version):
            # Another correlation of this process wrote (or read) a newer version since
            # this view read it: the write would be refused, so it is not sent.
            raise IncidentChanged(incident.id)
        try:
            resp = await store._es.index(
                index=store.index("incidents"),
                id=document_id(incident.id),
                document=body,
                if_seq_no=version[0],
                if_primary_term=version[1],
            )
        except ConflictError as exc:
            # The stored incident may be exactly ours: the client retried a write that had
            # landed (and got 409 for it), or a competitor wrote the same. Then it is done.
            found = await store._get_versioned("incidents", incident.id)
            if found is None or found[0]["doc"] != body["doc"]:
                raise IncidentChanged(incident.id) from exc
            self._wrote(incident, (found[1], found[2]))
            return
        self._wrote(incident, (int(resp["_seq_no"]), int(resp["_primary_term"])))

    def _wrote(self, incident: Incident, version: tuple[int, int]) -> None:
        self._versions[incident.id] = version
        self._incidents[incident.id] = incident
        self._saw(incident.id, version)

    def _saw(self, incident_id: str, version: tuple[int, int]) -> None:
        """Note a version of the incident read or written (seq_no, primary_term)."""
        seen = self._store._incident_seen
        newer = (version[1], version[0])
        if (held := seen.get(incident_id)) is None or held < newer:
            keep(seen, incident_id, newer)

    def _stale(self, incident_id: str, version: tuple[int, int]) -> bool:
        held = self._store._incident_seen.get(incident_id)
        return held is not None and held > (version[1], version[0])

    async def find_by_entity(self, entity_key: str) -> str | None:
        if ("corr-entities", entity_key) in self._known:
            src = self._known["corr-entities", entity_key]
            return None if src is None else str(src["incident_id"])
        return await self._store.find_by_entity(entity_key)

    async def index_entity(self, entity_key: str, incident_id: str) -> None:
        body = {"entity_key": entity_key, "incident_id": incident_id}
        self._keep("corr-entities", entity_key, body)

    async def get_fingerprint(self, fingerprint: str) -> tuple[str, datetime] | None:
        if ("corr-fingerprints", fingerprint) not in self._known:
            return await self._store.get_fingerprint(fingerprint)
        src = self._known["corr-fingerprints", fingerprint]
        if src is None:
            return None
        return str(src["incident_id"]), datetime.fromisoformat(src["last_seen"])

    async def put_fingerprint(self, fingerprint: str, incident_id: str, seen: datetime) -> None:
        body = {"fingerprint": fingerprint, "incident_id": incident_id, "last_seen": ts(seen)}
        self._keep("corr-fingerprints", fingerprint, body)

    async def get_alert_incident(self, alert_id: str) -> str | None:
        if ("corr-alerts", alert_id) in self._known:
            src = self._known["corr-alerts", alert_id]
            return None if src is None else str(src["incident_id"])
        return await self._store.get_alert_incident(alert_id)

    async def put_alert_incident(self, alert_id: str, incident_id: str) -> None:
        self._keep("corr-alerts", alert_id, {"alert_id": alert_id, "incident_id": incident_id})

    def _keep(self, kind: str, key: str, body: dict[str, Any]) -> None:
        """A write for `flush`, which later reads in this correlation already see."""
        self._pending.append((kind, key, body))
        self._known[kind, key] = body


def _moves(seen: _Found, pointer: dict[str, Any]) -> bool:
    """Whether `pointer` goes over the version seen: it is the same decision, or a later
    one (by time, then insertion); pointers only ever move forward."""
    if seen is None:
        return True
    meta = seen[0]
    if meta["decision_id"] == pointer["decision_id"]:
        return True
    return bool(
        (meta["created_at"], meta["inserted"]) < (pointer["created_at"], pointer["inserted"])
    )


def _investigation_body(investigation: Investigation) -> dict[str, Any]:
    return {
        "id": investigation.id,
        "incident_id": investigation.incident_id,
        "doc": investigation.model_dump(mode="json"),
    }


def _claims(budget: _Found, since: datetime) -> int:
    """Slots of a reservation document taken since `since`."""
    if budget is None:
        return 0
    floor = utc(since)
    return sum(1 for at in budget[0]["claims"].values() if datetime.fromisoformat(at) >= floor)


def _action(src: Mapping[str, Any]) -> ActionRecord:
    claimed = parse_ts(src["claimed_at"])
    assert claimed is not None
    return ActionRecord(
        idempotency_key=src["idempotency_key"],
        action_id=src["action_id"],
        incident_id=src["incident_id"],
        action=src["action"],
        target=src["target"],
        connector=src["connector"],
        capability=src["capability"],
        status=ActionStatus(src["status"]),
        request=ActionRequest.model_validate(src["request"]),
        result=src.get("result"),
        error=src.get("error"),
        claimed_at=claimed,
        executed_at=parse_ts(src.get("executed_at")),
        revert_at=parse_ts(src.get("revert_at")),
        attempts=int(src["attempts"]),
        rollback_claimed_at=parse_ts(src.get("rollback_claimed_at")),
    )

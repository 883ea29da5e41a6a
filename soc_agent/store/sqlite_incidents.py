"""Incidents in SQLite, updated in place: an alert joining an incident adds rows.

An incident's growing lists (alert ids, entities, fingerprints) are rows of
`incident_items`, one per element; the `incidents` row holds the rest (the
head) and a revision number. Writing an incident writes the head and only the
elements that are new or changed since the revision this process last read or
wrote, so an alert joining an incident of 500 alerts and 1,225 entities writes a
few rows instead of the whole document. Reading is the head's revision checked
against the model this process holds for it; the elements are read and
validated again only when another writer changed them (or the model was
evicted). A store written before this layout holds whole documents
(`split` = 0); they are read as before and split on their next write.

Every function here runs on the store's one thread, inside the caller's
transaction for writes; the models handed out are shared and never mutated.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from soc_agent.models import Incident

__all__ = ["INCIDENT_SCHEMA", "IncidentRows"]

LIST_FIELDS = ("alert_ids", "entities", "fingerprints")
_HEAD_FIELDS = set(LIST_FIELDS)  # left out of the head

INCIDENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS incident_items (
  incident_id TEXT NOT NULL, field TEXT NOT NULL, n INTEGER NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (incident_id, field, n)) WITHOUT ROWID;
"""

# Models held between alerts: bounded by their element count (an incident at its cap
# holds about 1,700), so memory does not grow with the number of incidents seen.
_CACHE_ELEMENTS = 60_000
_CACHE_INCIDENTS = 1024


@dataclass(frozen=True)
class _Held:
    rev: int
    incident: Incident

    @property
    def size(self) -> int:  # what it counts for in the bound on models held
        i = self.incident
        return 1 + len(i.alert_ids) + len(i.entities) + len(i.fingerprints)


class IncidentRows:
    """Reads and writes incidents as head + element rows, holding recent models."""

    def __init__(self) -> None:
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self._elements = 0
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------------------

    def read(self, db: sqlite3.Connection, ids: Iterable[str]) -> dict[str, Incident]:
        """The incidents among `ids` that exist."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = db.execute(
            "SELECT id, rev, split, doc FROM incidents "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(wanted),),
        ).fetchall()
        return {str(row[0]): self._from_row(db, row) for row in rows}

    def page(self, db: sqlite3.Connection, limit: int, offset: int) -> list[Incident]:
        rows = db.execute(
            "SELECT id, rev, split, doc FROM incidents ORDER BY last_seen DESC LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
        return [self._from_row(db, row) for row in rows]

    def _from_row(self, db: sqlite3.Connection, row: Sequence[Any]) -> Incident:
        incident_id, rev, split, doc = str(row[0]), int(row[1]), int(row[2]), str(row[3])
        held = self._get(incident_id)
        if held is not None and held.rev == rev:
            return held.incident
        if not split:
            incident = Incident.model_validate_json(doc)
        else:
            incident = Incident.model_validate_json(_assemble(doc, _elements(db, incident_id)))
        self._hold(_Held(rev, incident))
        return incident

    # -- writing -------------------------------------------------------------------------

    def write(self, db: sqlite3.Connection, incidents: Sequence[Incident]) -> list[_Held]:
        """Write inside the caller's transaction; `remember` what it returns once that
        transaction has committed (a rolled-back write must not be taken as stored)."""
        done: list[_Held] = []
        for incident in incidents:
            row = db.execute(
                "SELECT rev, split FROM incidents WHERE id=?", (incident.id,)
            ).fetchone()
            rev = int(row[0]) if row else 0
            held = self._get(incident.id)
            base = held.incident if row and row[1] and held and held.rev == rev else None
            if base is None:
                db.execute("DELETE FROM incident_items WHERE incident_id=?", (incident.id,))
            _write_elements(db, incident, base)
            db.execute(
                "INSERT OR REPLACE INTO incidents (id, last_seen, doc, rev, split) "
                "VALUES (?,?,?,?,1)",
                (
                    incident.id,
                    incident.last_seen.isoformat(),
                    incident.model_dump_json(exclude=_HEAD_FIELDS),
                    rev + 1,
                ),
            )
            done.append(_Held(rev + 1, incident))
        return done

    def remember(self, written: Iterable[_Held]) -> None:
        for held in written:
            self._hold(held)

    # -- the models held -----------------------------------------------------------------

    def _get(self, incident_id: str) -> _Held | None:
        with self._lock:
            held = self._held.get(incident_id)
            if held is not None:
                self._held.move_to_end(incident_id)
            return held

    def _hold(self, held: _Held) -> None:
        with self._lock:
            old = self._held.pop(held.incident.id, None)
            if old is not None:
                self._elements -= old.size
            self._held[held.incident.id] = held
            self._elements += held.size
            while self._held and (
                self._elements > _CACHE_ELEMENTS or len(self._held) > _CACHE_INCIDENTS
            ):
                _, evicted = self._held.popitem(last=False)
                self._elements -= evicted.size


def _elements(db: sqlite3.Connection, incident_id: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in LIST_FIELDS}
    for field, value in db.execute(
        "SELECT field, value FROM incident_items WHERE incident_id=? ORDER BY field, n",
        (incident_id,),
    ):
        out[str(field)].append(str(value))
    return out


def _assemble(head: str, elements: dict[str, list[str]]) -> str:
    """The whole incident's JSON from its head and its elements' JSON."""
    lists = ",".join(f'"{name}":[{",".join(values)}]' for name, values in elements.items())
    return "{" + lists + "," + head[1:]


def _element_json(field: str, value: Any) -> str:
    if field == "entities":
        return str(value.model_dump_json())
    return json.dumps(value)


def _write_elements(db: sqlite3.Connection, incident: Incident, base: Incident | None) -> None:
    """Rows for the elements that differ from `base` (all of them without one)."""
    changed: list[tuple[str, str, int, str]] = []
    for field in LIST_FIELDS:
        new: list[Any] = getattr(incident, field)
        old: list[Any] = getattr(base, field) if base is not None else []
        # Mostly the old list plus new elements at its end, and the same objects: the list
        # comparison (identity first, in C) skips that prefix without a Python loop.
        start = len(old) if len(old) <= len(new) and new[: len(old)] == old else 0
        for n in range(start, len(new)):
            value = new[n]
            if n < len(old) and (old[n] is value or old[n] == value):
                continue
            changed.append((incident.id, field, n, _element_json(field, value)))
        if len(old) > len(new):
            db.execute(
                "DELETE FROM incident_items WHERE incident_id=? AND field=? AND n>=?",
                (incident.id, field, len(new)),
            )
    db.executemany("INSERT OR REPLACE INTO incident_items VALUES (?,?,?,?)", changed)

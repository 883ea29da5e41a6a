"""The hash-chained audit log in Elasticsearch, shared by workers on several machines.

Entry `n` is the document with `_id` `n`. An append creates the next entry
with `op_type=create`: of two appenders racing for the same `n`, exactly one
wins and the other gets a 409, reads the winner's entry (a real-time GET) to
learn the new head, re-seals its event after it and tries `n + 1`. Elasticsearch
thus serialises appenders across processes, and since entry `n + 1` is only
ever created after entry `n` was read, sequence numbers have no gaps. The
hash chain itself is `chain.seal`/`chain.verify_events`, shared with SQLite.

Searches are near-real-time, so `list` and `verify` refresh the index first,
and `head` walks forward from the searched head with GETs until the next
entry is missing. Elasticsearch cannot forbid updates the way SQLite triggers
do; the chain is the proof, and an HMAC `key` kept outside the cluster stops
someone who can write the index from rebuilding a consistent chain.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from elasticsearch import AsyncElasticsearch, ConflictError, NotFoundError
from pydantic import ValidationError

from soc_agent.audit.chain import GENESIS, VerifyResult, format_at, seal, verify_events
from soc_agent.elasticsearch_setup import (
    DATE,
    KEYWORD,
    LONG,
    UNINDEXED_OBJECT,
    UNINDEXED_TEXT,
    ensure_index,
)
from soc_agent.errors import StoreError
from soc_agent.models import AuditEvent

__all__ = ["ElasticsearchAuditLog"]

_PROPERTIES: dict[str, Any] = {
    "seq": LONG,
    "at": DATE,
    "actor": KEYWORD,
    "action": KEYWORD,
    "subject": KEYWORD,
    "reason": UNINDEXED_TEXT,
    "outcome": KEYWORD,
    "evidence_ref": KEYWORD,
    "details": UNINDEXED_OBJECT,  # arbitrary JSON, kept verbatim
    "prev_hash": KEYWORD,
    "hash": KEYWORD,
}

_PAGE = 500
_MAX_APPEND_ATTEMPTS = 10_000


class _Unreadable(Exception):
    """A stored document that no longer decodes into an AuditEvent."""

    def __init__(self, seq: int | None, reason: str) -> None:
        self.seq, self.reason = seq, reason
        super().__init__(f"audit entry {seq} is unreadable: {reason}")


class ElasticsearchAuditLog:
    """Hash-chained, append-only audit log in one Elasticsearch index.

    Call `ensure_index()` once at start-up. `key` turns the entry hashes into
    HMAC-SHA256: keep it outside the cluster. The client is the caller's.
    """

    def __init__(
        self,
        client: AsyncElasticsearch,
        *,
        index: str,
        key: bytes | None = None,
        number_of_replicas: int = 1,
    ) -> None:
        self._es = client
        self._index = index
        self._key = key
        self._replicas = number_of_replicas
        # Where this process last saw the chain end; only a starting guess; a 409 corrects it.
        self._known: tuple[int, str] | None = None
        # Appends from one process queue here instead of racing each other through 409s.
        self._lock = asyncio.Lock()

    @property
    def index(self) -> str:
        return self._index

    async def ensure_index(self) -> None:
        """Create the index with its strict mapping if it does not exist."""
        await ensure_index(
            self._es,
            self._index,
            _PROPERTIES,
            number_of_replicas=self._replicas,
            what="audit index",
        )

    async def append(self, event: AuditEvent) -> AuditEvent:
        """Append as the next entry; returns it with `seq`, `prev_hash` and `hash` set.

        Any `seq`/`prev_hash`/`hash` already on `event` are ignored. Raises
        ValueError for details JSON cannot hold (NaN), before anything is written.
        """
        async with self._lock:
            seq, prev_hash = self._known if self._known else await self.head()
            for _ in range(_MAX_APPEND_ATTEMPTS):
                sealed = seal(event, seq=seq + 1, prev_hash=prev_hash, key=self._key)
                try:
                    await self._es.index(
                        index=self._index,
                        id=str(sealed.seq),
                        document=_to_doc(sealed),
                        op_type="create",
                    )
                except ConflictError:
                    # Another appender took seq + 1: its entry is the new head.
                    seq, prev_hash = await self._entry_head(seq + 1)
                    continue
                self._known = (seq + 1, str(sealed.hash))
                return sealed
            raise StoreError(
                f"audit index {self._index}: no free sequence number after "
                f"{_MAX_APPEND_ATTEMPTS} attempts"
            )

    async def list(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        subject: str | None = None,
        action_prefix: str | None = None,
        newest_first: bool = False,
    ) -> builtins.list[AuditEvent]:
        """Entries in seq order (oldest first unless `newest_first`), optionally filtered."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        if limit == 0:
            return []
        filters: builtins.list[dict[str, Any]] = []
        if subject is not None:
            filters.append({"term": {"subject": subject}})
        if action_prefix:
            # Keyword prefix queries are case-sensitive and take no wildcards, like SQLite's.
            filters.append({"prefix": {"action": action_prefix}})
        await self._refresh()
        resp = await self._es.search(
            index=self._index,
            query={"bool": {"filter": filters}},
            sort=[{"seq": "desc" if newest_first else "asc"}],
            size=limit,
            from_=offset,
        )
        try:
            return [_from_doc(hit["_source"]) for hit in resp["hits"]["hits"]]
        except _Unreadable as exc:
            raise StoreError(f"{self._index}: {exc}") from exc

    async def entries_after(self, seq: int, *, limit: int) -> builtins.list[AuditEvent]:
        """Up to `limit` entries with a sequence number above `seq`, in chain order.

        A range query, not `from`: an exporter's cursor passes Elasticsearch's
        10,000-hit paging window within a day.
        """
        await self._refresh()
        resp = await self._es.search(
            index=self._index,
            query={"range": {"seq": {"gt": seq}}},
            sort=[{"seq": "asc"}],
            size=limit,
        )
        try:
            return [_from_doc(hit["_source"]) for hit in resp["hits"]["hits"]]
        except _Unreadable as exc:
            raise StoreError(f"{self._index}: {exc}") from exc

    async def head(self) -> tuple[int, str]:
        """`(seq, hash)` of the last entry, or `(0, GENESIS)` when empty: an anchor to keep."""
        resp = await self._es.search(
            index=self._index, sort=[{"seq": "desc"}], size=1, source_includes=["seq", "hash"]
        )
        hits = resp["hits"]["hits"]
        seq, hash_ = (
            (int(hits[0]["_source"]["seq"]), str(hits[0]["_source"]["hash"]))
            if hits
            else (0, GENESIS)
        )
        # Search lags behind writes; GETs do not. Walk forward to the real end.
        while True:
            nxt = await self._get(seq + 1)
            if nxt is None:
                return seq, hash_
            seq, hash_ = seq + 1, str(nxt["hash"])

    async def verify(
        self,
        *,
        expected_head: str | None = None,
        expected_count: int | None = None,
        anchors: Mapping[int, str] | None = None,
        since: VerifyResult | None = None,
    ) -> VerifyResult:
        """Verify the chain (after `since`, if given), streaming pages in seq order.

        See `verify_events` for the arguments.

        `verify_events` is synchronous, so it runs in a worker thread pulling
        pages fetched on the event loop: memory stays at one page.
        """
        await self._refresh()
        loop = asyncio.get_running_loop()
        unreadable: builtins.list[_Unreadable] = []

        def events() -> Iterator[AuditEvent]:
            after: builtins.list[Any] | None = [since.count] if since is not None else None
            while True:
                hits = asyncio.run_coroutine_threadsafe(self._page(after), loop).result()
                for hit in hits:
                    try:
                        yield _from_doc(hit["_source"])
                    except _Unreadable as exc:
                        unreadable.append(exc)
                        return
                if len(hits) < _PAGE:
                    return
                after = builtins.list(hits[-1]["sort"])

        result = await asyncio.to_thread(
            verify_events,
            events(),
            key=self._key,
            expected_head=expected_head,
            expected_count=expected_count,
            anchors=anchors,
            since=since,
        )
        if unreadable:
            bad = unreadable[0]
            return VerifyResult(
                False,
                result.count,
                result.head,
                bad.seq,
                f"entry {bad.seq} is unreadable ({bad.reason}): it was altered outside the "
                "audit log",
            )
        return result

    # -- helpers ------------------------------------------------------------------

    async def _page(self, after: builtins.list[Any] | None) -> builtins.list[Any]:
        resp = await self._es.search(
            index=self._index, sort=[{"seq": "asc"}], size=_PAGE, search_after=after
        )
        return builtins.list(resp["hits"]["hits"])

    async def _refresh(self) -> None:
        await self._es.indices.refresh(index=self._index)

    async def _get(self, seq: int) -> dict[str, Any] | None:
        try:
            resp = await self._es.get(index=self._index, id=str(seq))
        except NotFoundError as exc:
            if isinstance(exc.body, Mapping) and "error" in exc.body:
                raise StoreError(
                    f"audit index {self._index} is missing: call ensure_index() first"
                ) from exc
            return None
        return dict(resp["_source"])

    async def _entry_head(self, seq: int) -> tuple[int, str]:
        """`(seq, hash)` of an entry known to exist (another appender just created it)."""
        doc = await self._get(seq)
        if doc is None or not isinstance(doc.get("hash"), str):
            raise StoreError(f"audit index {self._index}: entry {seq} exists but is unreadable")
        return seq, str(doc["hash"])


def _to_doc(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": format_at(event.at),
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject,
        "reason": event.reason,
        "outcome": event.outcome,
        "evidence_ref": event.evidence_ref,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def _from_doc(src: Mapping[str, Any]) -> AuditEvent:
    raw_seq = src.get("seq")
    seq = raw_seq if isinstance(raw_seq, int) else None
    try:
        details = src.get("details")
        if not isinstance(details, dict):
            raise _Unreadable(seq, "details is not a JSON object")
        return AuditEvent(
            seq=raw_seq,
            at=datetime.fromisoformat(src["at"]),
            actor=src["actor"],
            action=src["action"],
            subject=src["subject"],
            reason=src["reason"],
            outcome=src["outcome"],
            evidence_ref=src.get("evidence_ref"),
            details=details,
            prev_hash=src.get("prev_hash"),
            hash=src.get("hash"),
        )
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise _Unreadable(seq, str(exc).splitlines()[0]) from exc

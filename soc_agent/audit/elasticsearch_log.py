"""Hash-chained audit logs in Elasticsearch, shared by workers on several machines.

One index holds several chains. The shared chain (`chain=None`) has entry `n`
as the document with `_id` `n` and no `chain` field; a named chain (a
worker's own, see `chains`) has `_id` `<chain>:<n>` and `chain` set, and its
entries hash their chain's name. An append creates the next entry of its
chain with `op_type=create`: of two appenders racing for the same `n`,
exactly one wins and the other gets a 409, reads the winner's entry and any
after it (a real-time `_mget`) to learn the new head, re-seals its event after
it and tries again. An appender that appended before starts from there and
reads ahead the same way, so falling behind the others costs one read, not a
refused create per entry missed. Elasticsearch thus serialises appenders of one chain across
processes, and since entry `n + 1` is only ever created after entry `n` was
read, sequence numbers have no gaps. The hash chain itself is
`chain.seal`/`chain.verify_events`, shared with SQLite.

Searches are near-real-time, so `list` and `verify` refresh the index first,
and `head` walks forward from the searched head with GETs until the next
entry is missing. Elasticsearch cannot forbid updates the way SQLite triggers
do; the chain is the proof, and an HMAC `key` kept outside the cluster stops
someone who can write the index from rebuilding a consistent chain.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from elasticsearch import ApiError, AsyncElasticsearch, ConflictError, NotFoundError, TransportError
from pydantic import ValidationError

from soc_agent.audit.base import Later
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
    "chain": KEYWORD,
}

CHAIN_SEPARATOR = ":"

_PAGE = 500
_PROBE = 16  # ids an exporter's read asks for first
_RECENT_KEPT = 4096  # appended entries kept for `appended_after`
_Waiting = tuple[AuditEvent, "asyncio.Future[AuditEvent]"]  # an entry and its caller
_MAX_APPEND_ATTEMPTS = 10_000


class _Unreadable(Exception):
    """A stored document that no longer decodes into an AuditEvent."""

    def __init__(self, seq: int | None, reason: str) -> None:
        self.seq, self.reason = seq, reason
        super().__init__(f"audit entry {seq} is unreadable: {reason}")


class ElasticsearchAuditLog:
    """One hash-chained, append-only audit chain in an Elasticsearch index.

    `chain` names the chain (None: the shared one); every method reads and
    writes that chain only. Call `ensure_index()` once at start-up. `key` turns
    the entry hashes into HMAC-SHA256: keep it outside the cluster. The client
    is the caller's.
    """

    def __init__(
        self,
        client: AsyncElasticsearch,
        *,
        index: str,
        key: bytes | None = None,
        number_of_replicas: int = 1,
        chain: str | None = None,
    ) -> None:
        if chain is not None and (not chain or CHAIN_SEPARATOR in chain):
            raise ValueError(f"an audit chain's name is not empty and has no {CHAIN_SEPARATOR!r}")
        self._es = client
        self._index = index
        self._key = key
        self._replicas = number_of_replicas
        self._chain = chain
        self.append_seconds = 0.0  # wall time inside append, its 409 retries included
        # Where this process last saw the chain end; only a starting guess; a 409 corrects it.
        self._known: tuple[int, str] | None = None
        # Appends from one process queue here instead of racing each other through 409s.
        self._lock = asyncio.Lock()
        # Entries waiting for the next batch (see `write_alone_while`), with their callers.
        self._pending: builtins.list[_Waiting] = []
        self._alone: Callable[[], bool] = _never
        # The entries this object appended last, oldest first: what an exporter reads back.
        self._recent: deque[AuditEvent] = deque(maxlen=_RECENT_KEPT)
        self.requests = 0  # append requests made (a batch is one): what batching saves

    @property
    def index(self) -> str:
        return self._index

    @property
    def chain(self) -> str | None:
        return self._chain

    @property
    def last_appended(self) -> tuple[int, str] | None:
        """`(seq, hash)` of the last entry this object appended or saw appended, if any:
        in the chain for good, though others may have appended after it."""
        return self._known

    def sibling(self, chain: str | None) -> ElasticsearchAuditLog:
        """Another chain of the same index, through the same client and key."""
        return ElasticsearchAuditLog(
            self._es,
            index=self._index,
            key=self._key,
            number_of_replicas=self._replicas,
            chain=chain,
        )

    async def ensure_index(self) -> None:
        """Create the index with its strict mapping if it does not exist (an index made
        before chains were named gains the `chain` field)."""
        await ensure_index(
            self._es,
            self._index,
            _PROPERTIES,
            number_of_replicas=self._replicas,
            what="audit index",
        )
        await self._es.indices.put_mapping(index=self._index, properties={"chain": KEYWORD})

    def write_alone_while(self, alone: Callable[[], bool]) -> None:
        """Batch appends while `alone()` says no other process writes this chain (this
        process holds the chain's lease, with time to spare).

        Entries appended while a batch is being written then go in with the next
        one: a single `_bulk` of creates, where each entry otherwise costs its own
        request. Without that promise a batch could interleave with another
        writer's entries, so each entry is created alone (the 409 protocol above).
        """
        self._alone = alone

    async def append(self, event: AuditEvent) -> AuditEvent:
        """Append as the next entry; returns it with `seq`, `prev_hash` and `hash` set.

        Any `seq`/`prev_hash`/`hash` already on `event` are ignored. Raises
        ValueError for details JSON cannot hold (NaN), before anything is written;
        in a batch, such an entry fails alone.
        """
        done: asyncio.Future[AuditEvent] = asyncio.get_running_loop().create_future()
        self._pending.append((event, done))
        await self._drain(done)
        return done.result()

    def append_later(self, event: AuditEvent) -> Later:
        """Queue as the next entry, written with the next batch (see `Later`)."""
        done: asyncio.Future[AuditEvent] = asyncio.get_running_loop().create_future()
        self._pending.append((event, done))
        return Later(done, self._drain)

    async def _drain(self, done: asyncio.Future[Any]) -> None:
        async with self._lock:
            if not done.done():  # else an earlier batch took it
                batch, self._pending = self._pending, []
                started = time.perf_counter()
                writing = asyncio.ensure_future(self._write(batch))
                try:
                    await asyncio.shield(writing)
                except asyncio.CancelledError:
                    # The batch holds other callers' entries: finish it before letting go.
                    await asyncio.wait([writing])
                    raise
                finally:
                    self.append_seconds += time.perf_counter() - started

    async def _write(self, batch: builtins.list[_Waiting]) -> None:
        """Write a batch and settle every caller's future; raises nothing."""
        if len(batch) > 1 and self._alone():
            await self._write_batch(batch)
            return
        for event, done in batch:
            try:
                done.set_result(await self._append(event))
            except Exception as exc:
                done.set_exception(exc)

    async def _append(self, event: AuditEvent) -> AuditEvent:
        if self._known is None:
            seq, prev_hash = await self.head()
        elif self._alone():
            seq, prev_hash = self._known  # nobody else appends to this chain
        else:
            # Others may have appended since this process last did (every worker anchors
            # in the shared chain): a create behind them would be refused once per entry.
            seq, prev_hash = await self._ahead(*self._known)
        for _ in range(_MAX_APPEND_ATTEMPTS):
            sealed = seal(event, seq=seq + 1, prev_hash=prev_hash, key=self._key, chain=self._chain)
            try:
                self.requests += 1
                await self._es.index(
                    index=self._index,
                    id=self._id(seq + 1),
                    document=_to_doc(sealed),
                    op_type="create",
                )
            except ConflictError:
                # Another appender took seq + 1 (and maybe more after it).
                end = await self._ahead(seq, prev_hash)
                seq, prev_hash = end if end[0] > seq else await self._entry_head(seq + 1)
                continue
            self._known = (seq + 1, str(sealed.hash))
            self._remember([sealed])
            return sealed
        raise StoreError(
            f"audit index {self._index}: no free sequence number in {self._name} after "
            f"{_MAX_APPEND_ATTEMPTS} attempts"
        )

    async def _write_batch(self, batch: builtins.list[_Waiting]) -> None:
        """Seal the entries after the known head and create them in one `_bulk`."""
        sealed: builtins.list[_Waiting] = []
        try:
            seq, prev_hash = self._known if self._known else await self.head()
            for event, done in batch:
                try:
                    entry = seal(
                        event, seq=seq + 1, prev_hash=prev_hash, key=self._key, chain=self._chain
                    )
                except ValueError as exc:
                    done.set_exception(exc)  # nothing written for it; the rest go on
                    continue
                sealed.append((entry, done))
                seq, prev_hash = seq + 1, str(entry.hash)
            if not sealed:
                return
            operations: builtins.list[dict[str, Any]] = []
            for entry, _ in sealed:
                operations += [
                    {"create": {"_index": self._index, "_id": self._id(int(entry.seq or 0))}},
                    _to_doc(entry),
                ]
            self.requests += 1
            try:
                resp = await self._es.bulk(operations=operations)
                refused = [i for i, item in enumerate(resp["items"]) if item["create"].get("error")]
            except (ApiError, TransportError):
                refused = builtins.list(range(len(sealed)))  # outcome unknown: settle each
            for i in refused:
                await self._settle(sealed[i][0])
        except Exception as exc:
            self._known = None  # read the head again before the next append
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        if sealed:
            last = sealed[-1][0]
            self._known = (int(last.seq or 0), str(last.hash))
            self._remember([entry for entry, _ in sealed])
        for entry, done in sealed:
            done.set_result(entry)

    def _remember(self, entries: builtins.list[AuditEvent]) -> None:
        """Keep what was just appended, after what was kept only if it follows on."""
        if self._recent and self._recent[-1].seq != (entries[0].seq or 0) - 1:
            self._recent.clear()  # another appender's entries came between
        self._recent.extend(entries)

    async def _settle(self, entry: AuditEvent) -> None:
        """Create one entry of a batch the `_bulk` did not take (or whose answer was lost);
        a 409 is fine only if the stored entry is this one."""
        seq = int(entry.seq or 0)
        try:
            self.requests += 1
            await self._es.index(
                index=self._index, id=self._id(seq), document=_to_doc(entry), op_type="create"
            )
        except ConflictError:
            stored = await self._get(seq)
            if stored is None or stored.get("hash") != entry.hash:
                raise StoreError(
                    f"audit index {self._index}: entry {seq} of {self._name} was written by "
                    "another process while this one held the chain alone (a stall past its "
                    "lease?): the chain forks there, `audit verify` will name it"
                ) from None

    async def list(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        subject: str | None = None,
        action_prefix: str | None = None,
        newest_first: bool = False,
        every_chain: bool = False,
    ) -> builtins.list[AuditEvent]:
        """Entries in seq order (oldest first unless `newest_first`), optionally filtered;
        `every_chain` lists the entries of every chain of the index, in time order."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        if limit == 0:
            return []
        filters: builtins.list[dict[str, Any]] = [] if every_chain else [self._scope()]
        if subject is not None:
            filters.append({"term": {"subject": subject}})
        if action_prefix:
            # Keyword prefix queries are case-sensitive and take no wildcards, like SQLite's.
            filters.append({"prefix": {"action": action_prefix}})
        await self._refresh()
        resp = await self._es.search(
            index=self._index,
            query={"bool": {"filter": filters}},
            sort=[
                {field: "desc" if newest_first else "asc"}
                for field in (["at", "seq"] if every_chain else ["seq"])
            ],
            size=limit,
            from_=offset,
        )
        return self._decode(hit["_source"] for hit in resp["hits"]["hits"])

    async def entries_after(self, seq: int, *, limit: int) -> builtins.list[AuditEvent]:
        """Up to `limit` entries with a sequence number above `seq`, in chain order.

        Real-time `_mget`s of the next ids (a chain has no gaps): first a few, then,
        while every one was there, the rest of `limit`. No refresh, no search, and no
        paging window. Reading stops at the first missing entry: a chain with a hole
        in it is `audit verify`'s to report, not to be skipped over.
        """
        out: builtins.list[AuditEvent] = []
        want = min(limit, _PROBE)
        while want > 0:
            first = seq + len(out) + 1
            found = await self._read_ids(range(first, first + want), stop_at_missing=True)
            out += found
            if len(found) < want:
                break
            want = limit - len(out)
        return out

    async def appended_after(self, seq: int, *, limit: int) -> builtins.list[AuditEvent]:
        """Like `entries_after`, up to the last entry this object appended (what a worker
        exports before each commit): from memory when this object appended them all,
        else one real-time `_mget`, never a refresh. Entries others appended after that
        are theirs to export."""
        known = self._known[0] if self._known is not None else 0
        last = min(known, seq + limit)
        if last <= seq:
            return []
        kept = self._recent
        if kept and kept[0].seq is not None and kept[0].seq <= seq + 1 <= (kept[-1].seq or 0):
            first = seq + 1 - kept[0].seq
            return builtins.list(itertools.islice(kept, first, first + last - seq))
        return await self._read_ids(range(seq + 1, last + 1), stop_at_missing=False)

    async def _read_ids(self, seqs: range, *, stop_at_missing: bool) -> builtins.list[AuditEvent]:
        """Entries `seqs` by one real-time `_mget`: up to the first missing one, or a
        StoreError naming it."""
        resp = await self._es.mget(index=self._index, ids=[self._id(n) for n in seqs])
        sources: builtins.list[Mapping[str, Any]] = []
        for doc in resp["docs"]:
            if not doc.get("found"):
                if stop_at_missing:
                    break
                raise StoreError(f"audit index {self._index}: entry {doc['_id']} vanished")
            sources.append(doc["_source"])
        return self._decode(sources)

    def _decode(self, sources: Iterable[Mapping[str, Any]]) -> builtins.list[AuditEvent]:
        """Stored documents as events; one that no longer decodes is a StoreError."""
        try:
            return [_from_doc(src) for src in sources]
        except _Unreadable as exc:
            raise StoreError(f"{self._index}: {exc}") from exc

    async def head(self) -> tuple[int, str]:
        """`(seq, hash)` of the last entry, or `(0, GENESIS)` when empty: an anchor to keep."""
        resp = await self._es.search(
            index=self._index,
            query=self._scope(),
            sort=[{"seq": "desc"}],
            size=1,
            source_includes=["seq", "hash"],
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
        on_entry: Callable[[AuditEvent], None] | None = None,
    ) -> VerifyResult:
        """Verify the chain (after `since`, if given), streaming pages in seq order.

        See `verify_events` for the arguments; `on_entry` sees each entry read (in a
        worker thread), up to the first bad one.

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
                        event = _from_doc(hit["_source"])
                    except _Unreadable as exc:
                        unreadable.append(exc)
                        return
                    if on_entry is not None:
                        on_entry(event)
                    yield event
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

    async def entry_hash(self, seq: int) -> str | None:
        """The stored hash of entry `seq`, or None when there is no such entry."""
        doc = await self._get(seq)
        value = None if doc is None else doc.get("hash")
        return value if isinstance(value, str) else None

    async def chains(self) -> builtins.list[str]:
        """The names of every named chain in the index (the shared one has none)."""
        await self._refresh()
        names: builtins.list[str] = []
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {
                "size": _PAGE,
                "sources": [{"chain": {"terms": {"field": "chain"}}}],
            }
            if after is not None:
                composite["after"] = after
            resp = await self._es.search(
                index=self._index, size=0, aggs={"chains": {"composite": composite}}
            )
            agg = resp["aggregations"]["chains"]
            names.extend(str(b["key"]["chain"]) for b in agg["buckets"])
            after = agg.get("after_key")
            if after is None or len(agg["buckets"]) < _PAGE:
                return names

    # -- helpers ------------------------------------------------------------------

    async def _page(self, after: builtins.list[Any] | None) -> builtins.list[Any]:
        resp = await self._es.search(
            index=self._index,
            query=self._scope(),
            sort=[{"seq": "asc"}],
            size=_PAGE,
            search_after=after,
        )
        return builtins.list(resp["hits"]["hits"])

    async def _refresh(self) -> None:
        await self._es.indices.refresh(index=self._index)

    async def _get(self, seq: int) -> dict[str, Any] | None:
        try:
            resp = await self._es.get(index=self._index, id=self._id(seq))
        except NotFoundError as exc:
            if isinstance(exc.body, Mapping) and "error" in exc.body:
                raise StoreError(
                    f"audit index {self._index} is missing: call ensure_index() first"
                ) from exc
            return None
        return dict(resp["_source"])

    async def _ahead(self, seq: int, prev_hash: str) -> tuple[int, str]:
        """The chain's end at or after entry `seq` (hash `prev_hash`), read a page of ids
        at a time by real-time `_mget`s."""
        while found := await self._read_ids(range(seq + 1, seq + 1 + _PROBE), stop_at_missing=True):
            seq, prev_hash = seq + len(found), str(found[-1].hash)
            if len(found) < _PROBE:
                break
        return seq, prev_hash

    async def _entry_head(self, seq: int) -> tuple[int, str]:
        """`(seq, hash)` of an entry known to exist (another appender just created it)."""
        doc = await self._get(seq)
        if doc is None or not isinstance(doc.get("hash"), str):
            raise StoreError(
                f"audit index {self._index}: entry {seq} of {self._name} exists but is unreadable"
            )
        return seq, str(doc["hash"])

    @property
    def _name(self) -> str:
        return "the shared chain" if self._chain is None else f"chain {self._chain}"

    def _id(self, seq: int) -> str:
        return str(seq) if self._chain is None else f"{self._chain}{CHAIN_SEPARATOR}{seq}"

    def _scope(self) -> dict[str, Any]:
        """The query for this chain's documents (the shared chain's have no `chain`)."""
        if self._chain is None:
            return {"bool": {"must_not": {"exists": {"field": "chain"}}}}
        return {"term": {"chain": self._chain}}


def _never() -> bool:
    return False


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
    } | ({} if event.chain is None else {"chain": event.chain})


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
            chain=src.get("chain"),
        )
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise _Unreadable(seq, str(exc).splitlines()[0]) from exc

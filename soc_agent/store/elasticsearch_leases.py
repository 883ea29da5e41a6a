"""Leases in Elasticsearch: mutual exclusion between worker processes on different machines.

A lease is one document per name in a dedicated index (strict mapping:
`owner`, `token`, `expires_at` in epoch milliseconds). Acquiring creates it
with `op_type=create`; if it exists, the acquirer backs off (jittered, capped
at 100 ms) and reads it: one that has expired it takes over with
compare-and-set (`if_seq_no`/`if_primary_term`), one still held it reads
again after the next backoff. The reads of a process's waits that fall due
within 25 ms of each other go in one `_mget`.
While held, a background task pushes `expires_at` forward every `ttl/3`,
again with compare-and-set; release deletes the document conditionally, so a
lease that was taken over is never deleted from under its new holder. A process that dies (SIGKILL,
power loss) stops renewing and its leases expire after `ttl_seconds`.

Timing assumptions, as with every lease: expiry is judged by the reader's
wall clock, so clocks must be NTP-synchronised and the TTL must dwarf both
the clock skew and the longest stall a holder may suffer (GC, a frozen VM,
a partition). A holder stalled past its TTL loses the lease; it learns so at
its next renewal (`Lease.lost`, plus a warning), not before.

Each acquisition carries a fresh random token, written into the document:
when a write's answer is lost (a client-level retry answering 409 to its own
earlier success, a timeout) the token tells "my document" from another's.
Tasks of one process queue on an `asyncio.Lock` per name before touching
Elasticsearch, so in-process contention costs no requests.

`hold_all` takes every free name with one `_bulk` of creates and releases
with one `_bulk` of conditional deletes. It still behaves as acquisition in
sorted order: it only ever *waits* for a name while holding names that sort
before it (later names the bulk happened to take are let go first), so
overlapping sets on different machines cannot wait on each other in a cycle.

With `linger_seconds`, a lease its last local user lets go (of `hold_all`,
or of `lock(name, linger=True)`: not chores every machine takes turns at) stays held (and
renewed) for that long, "idle": a local task that wants it next takes it
without a request, and its delete rides on the next bulk this process sends
anyway, or on one of its own within another `linger_seconds`. Other
machines wait up to twice that longer for it, so the linger is kept to a
fraction of a second; `hold_all` never waits for a name while keeping idle
names that sort after it (they are deleted first, as taken ones are).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    ConflictError,
    NotFoundError,
    TransportError,
)

from soc_agent.elasticsearch_setup import KEYWORD, LONG, document_id, ensure_index
from soc_agent.errors import StoreError

__all__ = ["HandOver", "Lease", "LeaseManager"]

log = logging.getLogger(__name__)

# A lease another worker holds is rarely free within milliseconds: its holder keeps it
# for its decision and lets it linger (`lease_linger_seconds`) after. A first wait of 2 ms
# spent about a read per alert re-reading it at three workers; 10 ms, two thirds of that.
_BACKOFF_FIRST = 0.01
_BACKOFF_CAP = 0.1
_RELEASE_ATTEMPTS = 3
# A wait's re-read joins a round due this much sooner than it asked for.
_REREAD_TOGETHER = 0.025
# How long a lease taken for a hand-over (see `HandOver`) waits to be adopted: the
# caller's next step takes it within milliseconds, or never.
_HANDED_GRACE_SECONDS = 1.0
_CONFLICT = 409
_ES_ERRORS = (ApiError, TransportError)

_Version = tuple[int, int, int]  # seq_no, primary_term, expires_at (epoch ms)
_Found = tuple[Mapping[str, Any], int, int]  # a lease document: source, seq_no, primary_term


@dataclass(eq=False)
class _Held:
    """One acquisition: the document version last written by us, and its renewer."""

    name: str
    doc_id: str
    token: str
    seq_no: int
    primary_term: int
    expires_at_ms: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    renewer: asyncio.Task[None] | None = None
    lost: bool = False
    released: bool = False


@dataclass
class HandOver:
    """What `hold_all` yields: set `then` inside the block to a lease name, and the bulk
    that releases the block's leases also takes that one, for this process's next
    `lock(then).hold()` to adopt without a request of its own (a lease held by someone
    else is simply not taken; one nobody adopts is released after a second)."""

    then: str | None = None


@dataclass(eq=False)
class _Slot:
    """The in-process queue for one name; `users` counts holders and waiters."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Lease:
    """A named lease; get one from `LeaseManager.lock`. Implements `soc_agent.store.locks.Lock`."""

    def __init__(self, manager: LeaseManager, name: str, *, linger: bool = False) -> None:
        self._manager = manager
        self._name = name
        self._linger = linger
        self._held: _Held | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def lost(self) -> bool:
        """True when the current (or last) acquisition was taken over or expired unrenewed."""
        return self._held is not None and self._held.lost

    def remaining_seconds(self) -> float:
        """Time left before the current acquisition expires, by this process's clock; 0
        when it is not held (or was lost or released)."""
        held = self._held
        if held is None or held.lost or held.stop.is_set():
            return 0.0
        return max(0.0, (held.expires_at_ms - self._manager._now_ms()) / 1000)

    @asynccontextmanager
    async def hold(self, *, wait: bool = True) -> AsyncIterator[bool]:
        """Hold the lease for the block; with `wait=False`, yield False if someone else has it.

        "Someone else" includes another task of this process holding or
        queued for the same name. Cancelling a waiter leaves nothing held.
        """
        async with self._manager._hold(self, wait=wait) as acquired:
            yield acquired


class LeaseManager:
    """Acquires, renews and releases leases for one owner (one process) in one index.

    The client is the caller's: created once, closed by whoever created it,
    after `aclose()`.
    """

    def __init__(
        self,
        client: AsyncElasticsearch,
        *,
        index: str,
        owner: str,
        ttl_seconds: float = 15.0,
        number_of_replicas: int = 1,
        clock: Callable[[], float] = time.time,
        linger_seconds: float = 0.0,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        if not 0 <= linger_seconds <= ttl_seconds / 3:
            raise ValueError(f"linger_seconds must be in [0, ttl/3], got {linger_seconds}")
        self._es = client
        self._index = index
        self._owner = owner
        self._ttl_ms = int(ttl_seconds * 1000)
        self._replicas = number_of_replicas
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._held: dict[str, _Held] = {}
        self._handed: dict[str, _Held] = {}  # taken for a hand-over, not yet adopted
        self._linger = linger_seconds
        # Let go by every local user, still held: name -> (lease, monotonic time it is due).
        self._idle: dict[str, tuple[_Held, float]] = {}
        self._flusher: asyncio.Task[None] | None = None
        # Waits' re-reads due (monotonic time, document id, the waiter's future), read
        # together in rounds by `_reread_rounds`.
        self._rereads: list[tuple[float, str, asyncio.Future[_Found | None]]] = []
        self._rereader: asyncio.Task[None] | None = None
        self._reread_due = asyncio.Event()
        self._closing = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def owner(self) -> str:
        return self._owner

    @property
    def index(self) -> str:
        return self._index

    @property
    def ttl_seconds(self) -> float:
        return self._ttl_ms / 1000

    @property
    def held(self) -> frozenset[str]:
        """Names this manager holds right now."""
        return frozenset(self._held)

    async def ensure_index(self) -> None:
        """Create the lease index with its strict mapping; an existing one is kept."""
        await ensure_index(
            self._es,
            self._index,
            {"owner": KEYWORD, "token": KEYWORD, "expires_at": LONG},
            number_of_replicas=self._replicas,
            what="lease index",
        )

    def lock(self, name: str, *, linger: bool = False) -> Lease:
        """The lease `name`; with `linger`, let go as `hold_all` lets go (see the module)."""
        if not name:
            raise ValueError("a lease needs a non-empty name")
        return Lease(self, name, linger=linger)

    @asynccontextmanager
    async def hold_all(self, names: Iterable[str]) -> AsyncIterator[HandOver]:
        """Hold every named lease for the block, released on exit.

        Everyone acquires in one global order (all of a task's in-process
        queues by name, then the leases by name), so overlapping sets taken by
        different tasks or machines cannot wait on each other in a cycle. Free
        names cost one bulk create and one bulk delete together; see
        `_acquire_all` for what happens when some are taken.
        """
        ordered = sorted(set(names))
        if not all(ordered):
            raise ValueError("a lease needs a non-empty name")
        self._check_open()
        async with AsyncExitStack() as stack:
            for name in ordered:
                await stack.enter_async_context(self._queue(name))
            helds = await self._acquire_all(ordered)
            hand_over = HandOver()
            try:
                yield hand_over
            finally:
                await self._release_all(helds, then=hand_over.then, linger=True)

    async def aclose(self) -> None:
        """Refuse new acquisitions, release what is held and wait for pending cleanups."""
        self._closed = True
        self._handed.clear()
        self._idle.clear()
        self._closing.set()
        self._reread_due.set()
        await asyncio.gather(*(self._release(held) for held in list(self._held.values())))
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- holding -------------------------------------------------------------------------

    @asynccontextmanager
    async def _hold(self, lease: Lease, *, wait: bool) -> AsyncIterator[bool]:
        name = lease.name
        self._check_open()
        slot = self._slots.get(name)
        if not wait and slot is not None and slot.users:
            yield False
            return
        acquired = False
        async with self._queue(name):
            held = self._adopt(name) or await self._acquire(name, wait=wait)
            if held is not None:
                acquired = True
                lease._held = held
                try:
                    yield True
                finally:
                    if lease._linger and self._lingers(held):
                        self._rest(held)
                    else:
                        await self._release(held)
        if not acquired:
            # Yielded after the local queue is left, so local waiters are not held up.
            yield False

    @asynccontextmanager
    async def _queue(self, name: str) -> AsyncIterator[None]:
        """Wait for, then hold, this process's turn at `name`."""
        slot = self._slots.setdefault(name, _Slot())
        slot.users += 1
        try:
            async with slot.lock:
                yield
        finally:
            slot.users -= 1
            if not slot.users and self._slots.get(name) is slot:
                del self._slots[name]

    async def _acquire(
        self, name: str, *, wait: bool, token: str | None = None, taken: bool = False
    ) -> _Held | None:
        """Acquire one lease; None if someone else holds it and `wait` is false.

        `hold_all` passes the token its bulk create used, so a document that
        bulk wrote for us is recognised as ours, and `taken=True` when the bulk
        already reported the document present, to skip a create bound to conflict.
        """
        doc_id = document_id(name)
        token = token or uuid.uuid4().hex
        inflight: asyncio.Task[Any] | None = None
        attempt = 0
        reread: tuple[_Found | None] | None = None  # a wait's re-read, boxed: None is absent
        try:
            while True:
                self._check_open()
                if not taken:
                    inflight, expires_at = self._write(doc_id, token, create=True)
                    try:
                        resp = await asyncio.shield(inflight)
                    except ConflictError:
                        inflight = None
                    else:
                        return self._start(name, doc_id, token, _version(resp, expires_at))
                taken = False
                if reread is not None:
                    found = reread[0]
                elif wait:
                    # Found held a moment ago (a create refused, or a caller's probe read
                    # it held): it is not free a millisecond later, so read after a backoff.
                    found = await self._reread(doc_id, _backoff(attempt))
                    attempt += 1
                else:
                    found = await self._get(doc_id)
                reread = None
                if found is None:
                    continue  # released between our create and our read: try again now
                src, seq_no, primary_term = found
                if src.get("token") == token:
                    # Our own create landed, though its answer said otherwise (a retry).
                    version = (seq_no, primary_term, int(src["expires_at"]))
                    return self._start(name, doc_id, token, version)
                if int(src["expires_at"]) <= self._now_ms():
                    inflight, expires_at = self._write(doc_id, token, cas=(seq_no, primary_term))
                    try:
                        resp = await asyncio.shield(inflight)
                    except ConflictError:
                        inflight = None  # another acquirer took it over first
                    else:
                        return self._start(name, doc_id, token, _version(resp, expires_at))
                if not wait:
                    return None
                reread = (await self._reread(doc_id, _backoff(attempt)),)
                attempt += 1
                taken = True  # held when read: no create bound to fail before that read
        except BaseException:
            # Cancelled or failed mid-request: a write of ours may land anyway. Undo it
            # in the background so nobody holds the lease behind the caller's back.
            self._spawn(self._abandon(doc_id, token, inflight))
            raise

    def _start(self, name: str, doc_id: str, token: str, version: _Version) -> _Held:
        held = _Held(name, doc_id, token, *version)
        held.renewer = asyncio.create_task(self._renew(held), name=f"lease-renewal:{name[:80]}")
        self._held[name] = held
        return held

    async def _acquire_all(self, names: list[str]) -> list[_Held]:
        """Acquire the sorted `names`, in bulk while they are free; all or nothing.

        Each round bulk-creates the names still missing and walks them in
        order. A name the bulk could not take gets one attempt that does not
        wait (it may have expired, or be ours after a lost answer). If it is
        really held by someone else, the later names this round took are
        released *before* waiting for it, so every wait happens while holding
        only names that sort before the awaited one: ordered acquisition, hence
        no cycle of waiters across machines. The names after it start a new round.
        """
        owned: dict[str, _Held] = {}
        try:
            rest = names
            while rest:
                for name in rest:
                    idle = self._take_idle(name)
                    if idle is not None:
                        owned[name] = idle
                tokens = {name: uuid.uuid4().hex for name in rest if name not in owned}
                refused = await self._create_all(list(tokens), tokens, owned) if tokens else {}
                waited_at: int | None = None
                for i, name in enumerate(rest):
                    if name not in refused:
                        continue
                    taken = refused[name] == _CONFLICT
                    held = await self._acquire(name, wait=False, token=tokens[name], taken=taken)
                    if held is None:
                        later = [owned.pop(n) for n in rest[i + 1 :] if n in owned]
                        await self._release_all(later)
                        # Same token: a write of the bulk or of the attempt above that
                        # landed unreported is adopted, not waited for until it expires.
                        held = await self._acquire(name, wait=True, token=tokens[name], taken=True)
                        assert held is not None  # waiting never gives up
                        waited_at = i
                    owned[name] = held
                    if waited_at is not None:
                        break
                rest = [] if waited_at is None else rest[waited_at + 1 :]
        except BaseException:
            await self._release_all(list(owned.values()))
            raise
        return [owned[name] for name in names]

    async def _create_all(
        self, names: list[str], tokens: Mapping[str, str], owned: dict[str, _Held]
    ) -> dict[str, int]:
        """One bulk create of `names`; adds what it took to `owned`, returns the others' statuses.

        The bulk also deletes the idle leases that are due. The request runs
        shielded: if the caller is cancelled (or the answer is lost), whatever
        it created is deleted in the background.
        """
        self._check_open()
        expires_at = self._now_ms() + self._ttl_ms
        entries = [(name, document_id(name), tokens[name]) for name in names]
        operations: list[Mapping[str, Any]] = []
        for _, doc_id, token in entries:
            operations.append({"create": {"_index": self._index, "_id": doc_id}})
            operations.append({"owner": self._owner, "token": token, "expires_at": expires_at})
        # Not waiting for their renewers: a renewal in flight makes a delete conflict,
        # which `_settle` resolves by the token.
        due = self._retire(self._due_idle())
        operations += self._deletes(due)
        inflight = asyncio.ensure_future(self._es.bulk(operations=operations))
        if due:
            self._spawn(self._settle_after(inflight, due, skip=len(entries)))
        try:
            resp = await asyncio.shield(inflight)
        except BaseException:
            self._spawn(self._abandon_bulk(inflight, entries))
            raise
        # No await from here on: every lease taken is in `owned` before a cancellation
        # can strike, so the caller's cleanup sees it.
        refused: dict[str, int] = {}
        for (name, doc_id, token), item in zip(entries, resp["items"][: len(entries)], strict=True):
            result = item["create"]
            if "error" in result:
                refused[name] = int(result["status"])
            else:
                version = (int(result["_seq_no"]), int(result["_primary_term"]), expires_at)
                owned[name] = self._start(name, doc_id, token, version)
        return refused

    # -- renewal and release -------------------------------------------------------------

    async def _renew(self, held: _Held) -> None:
        """Every ttl/3, push the expiry forward; stop when told to or when the lease is lost.

        Stopping is by event, never by cancellation: a renewal cancelled
        mid-request could land after release and leave an unknown version behind.
        """
        interval = self._ttl_ms / 3000
        while True:
            try:
                await asyncio.wait_for(held.stop.wait(), timeout=interval)
            except TimeoutError:
                pass
            else:
                return
            try:
                if not await self._renew_once(held):
                    return
            except Exception as exc:
                # Unexpected: stop renewing rather than kill the release that awaits us.
                self._mark_lost(held, f"renewal crashed ({type(exc).__name__})")
                log.debug("lease renewal crashed", exc_info=True)
                return

    async def _renew_once(self, held: _Held) -> bool:
        """One renewal; false once the lease is lost."""
        try:
            task, expires_at = self._write(
                held.doc_id, held.token, cas=(held.seq_no, held.primary_term)
            )
            resp = await task
        except ConflictError:
            if held.released:
                return False  # deleted by a release that did not wait for us
            try:
                if await self._readopt(held):
                    return True
            except (*_ES_ERRORS, StoreError) as exc:
                return self._renewal_failed(held, exc)
            self._mark_lost(held, "taken over by another owner")
            return False
        except _ES_ERRORS as exc:
            return self._renewal_failed(held, exc)
        held.seq_no, held.primary_term, held.expires_at_ms = _version(resp, expires_at)
        return True

    def _renewal_failed(self, held: _Held, exc: Exception) -> bool:
        if self._now_ms() >= held.expires_at_ms:
            self._mark_lost(held, f"expired unrenewed ({type(exc).__name__})")
            return False
        log.warning("lease %r: renewal failed (%s), retrying", held.name[:80], type(exc).__name__)
        return True

    async def _readopt(self, held: _Held) -> bool:
        """After a conflict: if the document still carries our token, adopt its version."""
        found = await self._get(held.doc_id)
        if found is None or found[0].get("token") != held.token:
            return False
        src, held.seq_no, held.primary_term = found
        held.expires_at_ms = int(src["expires_at"])
        return True

    def _mark_lost(self, held: _Held, why: str) -> None:
        held.lost = True
        log.warning("lease %r held by %s was lost: %s", held.name[:80], self._owner, why)

    async def _release(self, held: _Held) -> None:
        # Shielded: a holder cancelled while leaving still gets its lease deleted.
        await asyncio.shield(self._spawn(self._do_release(held)))

    async def _do_release(self, held: _Held) -> None:
        if held.released:
            return
        held.released = True
        held.stop.set()
        if held.renewer is not None:
            await held.renewer
        if self._held.get(held.name) is held:
            del self._held[held.name]
        if held.lost:
            return
        await self._delete_own(held.doc_id, held.token, (held.seq_no, held.primary_term))

    def _adopt(self, name: str) -> _Held | None:
        """The lease a hand-over took for `name`, or an idle one, if still good."""
        held = self._handed.pop(name, None)
        return self._take_idle(name) if held is None else self._usable(held)

    def _usable(self, held: _Held) -> _Held | None:
        """`held` if still ours; a lost one is forgotten (there is nothing to delete)."""
        if held.lost:
            self._spawn(self._do_release(held))
            return None
        return None if held.released else held

    def _lingers(self, held: _Held) -> bool:
        """Whether `held`, let go by its last local user, stays idle (see the module)."""
        return bool(self._linger) and not (self._closed or held.lost or held.released)

    def _rest(self, held: _Held) -> None:
        """Keep a lease its last local user let go, for `linger` seconds (see the module)."""
        self._idle[held.name] = (held, time.monotonic() + self._linger)
        if self._flusher is None or self._flusher.done():
            self._flusher = self._spawn(self._flush_idle())

    def _take_idle(self, name: str) -> _Held | None:
        held, _ = self._idle.pop(name, (None, 0.0))
        return None if held is None else self._usable(held)

    def _due_idle(self) -> list[_Held]:
        now = time.monotonic()
        due = [held for held, at in self._idle.values() if at <= now]
        for held in due:
            del self._idle[held.name]
        return due

    async def _flush_idle(self) -> None:
        """Delete the idle leases no other bulk took along within a linger of falling due."""
        while self._idle and not self._closed:
            wake = min(at for _, at in self._idle.values()) + self._linger
            with suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), max(0.0, wake - time.monotonic()))
            due = self._due_idle()
            if due:
                await self._do_release_all(due)

    async def _release_all(
        self, helds: list[_Held], *, then: str | None = None, linger: bool = False
    ) -> None:
        # Shielded like `_release`; the deletes (and the hand-over's create) go as one bulk.
        if helds or then:
            await asyncio.shield(self._spawn(self._do_release_all(helds, then, linger=linger)))

    async def _do_release_all(
        self, helds: list[_Held], then: str | None = None, *, linger: bool = False
    ) -> None:
        if linger:
            resting = [held for held in helds if self._lingers(held)]
            for held in resting:
                self._rest(held)
            helds = [held for held in helds if held not in resting]
        if then in self._idle:
            self._rest(self._idle[then][0])  # kept for its adopter, not deleted below
        mine = self._retire([*helds, *self._due_idle()])
        # Renewers stop by event, so each one's last write is known before we delete.
        await asyncio.gather(*(held.renewer for held in mine if held.renewer is not None))
        live = [held for held in mine if not held.lost]
        operations = self._deletes(live)
        # Not for a name this process holds or queues for: its holder releases it later.
        if then in self._held or then in self._handed or then in self._slots or self._closed:
            then = None
        taking = (then, document_id(then), uuid.uuid4().hex) if then is not None else None
        expires_at = self._now_ms() + self._ttl_ms
        if taking is not None:
            operations.append({"create": {"_index": self._index, "_id": taking[1]}})
            operations.append({"owner": self._owner, "token": taking[2], "expires_at": expires_at})
        if not operations:
            return
        try:
            resp = await self._es.bulk(operations=operations)
        except _ES_ERRORS as exc:
            log.debug("bulk lease release failed (%s), releasing one by one", type(exc).__name__)
            statuses = [0] * len(live)
            if taking is not None:  # the create may have landed: ours to delete
                self._spawn(self._abandon(taking[1], taking[2], None))
        else:
            items = list(resp["items"])
            if taking is not None:
                self._hand_over(taking, items.pop()["create"], expires_at)
            statuses = [int(item["delete"]["status"]) for item in items]
        await self._settle(live, statuses)

    def _retire(self, helds: list[_Held]) -> list[_Held]:
        """Mark leases released and tell their renewers to stop; returns those not lost."""
        mine = [held for held in helds if not held.released]
        for held in mine:
            held.released = True
            held.stop.set()
            if self._held.get(held.name) is held:
                del self._held[held.name]
        return [held for held in mine if not held.lost]

    def _deletes(self, helds: list[_Held]) -> list[Mapping[str, Any]]:
        return [
            {
                "delete": {
                    "_index": self._index,
                    "_id": held.doc_id,
                    "if_seq_no": held.seq_no,
                    "if_primary_term": held.primary_term,
                }
            }
            for held in helds
        ]

    async def _settle(self, deleted: list[_Held], statuses: list[int]) -> None:
        """Finish the deletes a bulk answered with `statuses` (0: no answer)."""
        # Deleted (200) or gone (404) is done. A conflict means the version changed since
        # (a takeover, a renewal in flight, or our own write whose answer was lost): check
        # the token first. Anything else, including a failed request, is retried one by one.
        await asyncio.gather(
            *(
                self._delete_own(
                    held.doc_id,
                    held.token,
                    None if status == _CONFLICT else (held.seq_no, held.primary_term),
                )
                for held, status in zip(deleted, statuses, strict=True)
                if status not in (200, 404)
            )
        )

    async def _settle_after(
        self, inflight: asyncio.Future[Any], deleted: list[_Held], *, skip: int
    ) -> None:
        """`_settle` the deletes that follow `skip` other items in a bulk still in flight."""
        await asyncio.wait([inflight])
        statuses = [0] * len(deleted)
        if not inflight.cancelled() and inflight.exception() is None:
            items = inflight.result()["items"][skip:]
            statuses = [int(item["delete"]["status"]) for item in items]
        await self._settle(deleted, statuses)

    def _hand_over(
        self, taking: tuple[str, str, str], created: Mapping[str, Any], expires_at: int
    ) -> None:
        if "error" in created:
            return  # held by someone else: the caller acquires it as usual
        name, doc_id, token = taking
        held = self._start(name, doc_id, token, _version(created, expires_at))
        self._handed[name] = held
        self._spawn(self._forget_unadopted(held))

    async def _forget_unadopted(self, held: _Held) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(held.stop.wait(), _HANDED_GRACE_SECONDS)
        if self._handed.get(held.name) is held:
            del self._handed[held.name]
            await self._do_release(held)

    async def _abandon(self, doc_id: str, token: str, inflight: asyncio.Task[Any] | None) -> None:
        """Delete the lease document if a write of this (abandoned) acquisition created it."""
        cas: tuple[int, int] | None = None
        if inflight is not None:
            # Its failure, if any, already reached the acquirer; only a success matters here.
            await asyncio.wait([inflight])
            if not inflight.cancelled() and inflight.exception() is None:
                resp = inflight.result()
                cas = int(resp["_seq_no"]), int(resp["_primary_term"])
        await self._delete_own(doc_id, token, cas)

    async def _abandon_bulk(
        self, inflight: asyncio.Task[Any], entries: list[tuple[str, str, str]]
    ) -> None:
        """Delete what an abandoned bulk create made: by version if it answered, else by token."""
        await asyncio.wait([inflight])
        items: list[Any] = [None] * len(entries)
        if not inflight.cancelled() and inflight.exception() is None:
            items = [item["create"] for item in inflight.result()["items"][: len(entries)]]
        cleanups = []
        for (_, doc_id, token), result in zip(entries, items, strict=True):
            if result is not None and "error" not in result:
                cas: tuple[int, int] | None = int(result["_seq_no"]), int(result["_primary_term"])
            elif result is not None and result["status"] != _CONFLICT:
                continue  # refused outright: nothing was written
            else:
                cas = None  # unknown, or a conflict that may be our own earlier write
            cleanups.append(self._delete_own(doc_id, token, cas))
        await asyncio.gather(*cleanups)

    async def _delete_own(self, doc_id: str, token: str, cas: tuple[int, int] | None) -> None:
        """Delete the document if it is ours; a takeover or a missing document is left alone."""
        try:
            for _ in range(_RELEASE_ATTEMPTS):
                if cas is None:
                    found = await self._get(doc_id)
                    if found is None or found[0].get("token") != token:
                        return
                    cas = found[1], found[2]
                try:
                    await self._es.delete(
                        index=self._index, id=doc_id, if_seq_no=cas[0], if_primary_term=cas[1]
                    )
                except NotFoundError:
                    return
                except ConflictError:
                    cas = None  # changed since: read again, it may still be ours
                else:
                    return
        except (*_ES_ERRORS, StoreError) as exc:
            log.warning(
                "lease document %r not released (%s); it expires on its own",
                doc_id[:80],
                type(exc).__name__,
            )

    # -- waiting -------------------------------------------------------------------------

    async def _reread(self, doc_id: str, delay: float) -> _Found | None:
        """The lease document read again in about `delay` seconds, with the other waits'.

        A round falls due when the most eager wait's delay has passed; one `_mget` reads
        every document whose wait falls due within `_REREAD_TOGETHER` of it (a wait read
        a little sooner than it asked only learns sooner). Reading every wait in every
        round instead re-read the patient ones at the eager ones' pace, for no saving.
        """
        future: asyncio.Future[_Found | None] = asyncio.get_running_loop().create_future()
        self._rereads.append((time.monotonic() + delay, doc_id, future))
        self._reread_due.set()
        if self._rereader is None or self._rereader.done():
            self._rereader = self._spawn(self._reread_rounds())
        return await future

    async def _reread_rounds(self) -> None:
        while True:
            self._rereads = [entry for entry in self._rereads if not entry[2].done()]
            if not self._rereads:
                return
            if self._closed:
                for _, _, future in self._rereads:
                    future.set_exception(self._closed_error())
                return
            wait = min(at for at, _, _ in self._rereads) - time.monotonic()
            if wait > 0:
                self._reread_due.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._reread_due.wait(), wait)
                continue
            horizon = time.monotonic() + _REREAD_TOGETHER
            due = [entry for entry in self._rereads if entry[0] <= horizon]
            self._rereads = [entry for entry in self._rereads if entry[0] > horizon]
            ids = sorted({doc_id for _, doc_id, _ in due})
            try:
                found = dict(zip(ids, await self._get_many(ids), strict=True))
            except Exception as exc:  # each wait raises it, as its own read would have
                for _, _, future in due:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, doc_id, future in due:
                if not future.done():
                    future.set_result(found[doc_id])

    # -- requests ------------------------------------------------------------------------

    def _write(
        self, doc_id: str, token: str, *, create: bool = False, cas: tuple[int, int] | None = None
    ) -> tuple[asyncio.Task[Any], int]:
        """Create (or CAS-overwrite) the lease document as a task, so callers can shield it.

        Returns the task and the expiry it writes.
        """
        expires_at = self._now_ms() + self._ttl_ms
        body = {"owner": self._owner, "token": token, "expires_at": expires_at}
        options: dict[str, Any] = {"op_type": "create"} if create else {}
        if cas is not None:
            options = {"if_seq_no": cas[0], "if_primary_term": cas[1]}
        task = asyncio.ensure_future(
            self._es.index(index=self._index, id=doc_id, document=body, **options)
        )
        return task, expires_at

    async def _get(self, doc_id: str) -> _Found | None:
        try:
            resp = await self._es.get(index=self._index, id=doc_id)
        except NotFoundError as exc:
            if isinstance(exc.body, Mapping) and "error" in exc.body:
                raise StoreError(
                    f"lease index {self._index} is missing: call ensure_index() first"
                ) from exc
            return None
        return _found(resp.body)

    async def _get_many(self, doc_ids: list[str]) -> list[_Found | None]:
        if len(doc_ids) == 1:
            return [await self._get(doc_ids[0])]
        resp = await self._es.mget(index=self._index, ids=doc_ids)
        out: list[_Found | None] = []
        for doc in resp["docs"]:
            if "error" in doc:
                raise StoreError(f"lease index {self._index} cannot be read: {doc['error']}")
            out.append(_found(doc) if doc.get("found") else None)
        return out

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _closed_error(self) -> StoreError:
        return StoreError(f"lease manager of {self._owner} is closed")

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _found(doc: Mapping[str, Any]) -> _Found:
    return dict(doc["_source"]), int(doc["_seq_no"]), int(doc["_primary_term"])


def _version(resp: Mapping[str, Any], expires_at: int) -> _Version:
    return int(resp["_seq_no"]), int(resp["_primary_term"]), expires_at


def _backoff(attempt: int) -> float:
    """Full jitter over an exponential ceiling capped at 100 ms."""
    ceiling = min(_BACKOFF_CAP, _BACKOFF_FIRST * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security

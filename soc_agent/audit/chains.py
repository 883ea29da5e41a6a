"""Each worker its own audit chain, their heads anchored in the shared one.

With one chain for every worker, each audit entry is a conditional write that
no two workers can make at once: the chain bounds how far workers scale. So a
writer appends to a chain of its own (`elasticsearch.audit_chain`, by default
`<agent_id>@<hostname>`), which it holds by a lease and so writes in batches
(`ElasticsearchAuditLog.write_alone_while`), and every
`elasticsearch.audit_chain_anchor_seconds` (and when it stops) appends that
chain's head to the shared chain as an `audit.anchor` entry naming the chain,
the sequence number and the hash. The shared chain is what `audit_anchor_file`
and the Kafka audit topic anchor in turn, so one verification covers all:

- the shared chain verifies alone, against the external anchors given;
- each named chain verifies alone, and must contain, unchanged, every head the
  shared chain anchored for it: a chain whose tail was cut, or that was rebuilt,
  or that vanished, fails, however consistent it is on its own.

What a worker appended after its last anchor is protected by its own chain
only (and by the audit topic, where the worker exported it); the anchor
interval is that window.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from soc_agent.audit.base import Later
from soc_agent.audit.chain import VerifyResult
from soc_agent.models import AuditEvent

if TYPE_CHECKING:  # the embedded runtime imports this module without the client library
    from soc_agent.audit.elasticsearch_log import ElasticsearchAuditLog

__all__ = ["ANCHOR_ACTION", "ChainedAuditLog"]

log = logging.getLogger(__name__)

ANCHOR_ACTION = "audit.anchor"


class ChainedAuditLog:
    """Appends to this process's chain; reads, heads and verifies across every chain.

    `own` is None for a process that only reads (its rare appends go to the
    shared chain). Call `start()` to anchor on a timer and `aclose()` to stop
    and anchor the final head.
    """

    def __init__(
        self,
        shared: ElasticsearchAuditLog,
        own: ElasticsearchAuditLog | None,
        *,
        actor: str,
        anchor_seconds: float,
    ) -> None:
        if shared.chain is not None or (own is not None and own.chain is None):
            raise ValueError("the shared chain has no name and a process's own chain has one")
        self._shared = shared
        self._own = own
        self._actor = actor
        self._interval = anchor_seconds
        self._anchored: tuple[int, str] | None = None
        self._appends = 0  # to its own chain, since start
        self._appends_anchored = 0  # how many of those the last anchor covers
        self._task: asyncio.Task[None] | None = None

    @property
    def shared(self) -> ElasticsearchAuditLog:
        return self._shared

    @property
    def own(self) -> ElasticsearchAuditLog | None:
        return self._own

    @property
    def serial_seconds(self) -> float:
        """Wall time this process spent appending to the chain every worker contends for."""
        return self._shared.append_seconds

    async def append(self, event: AuditEvent) -> AuditEvent:
        if self._own is None:
            return await self._shared.append(event)
        self._appends += 1
        return await self._own.append(event)

    def append_later(self, event: AuditEvent) -> Later:
        if self._own is None:
            return self._shared.append_later(event)
        self._appends += 1
        return self._own.append_later(event)

    async def list(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        subject: str | None = None,
        action_prefix: str | None = None,
        newest_first: bool = False,
    ) -> builtins.list[AuditEvent]:
        """Entries of every chain, in time order."""
        return await self._shared.list(
            limit=limit,
            offset=offset,
            subject=subject,
            action_prefix=action_prefix,
            newest_first=newest_first,
            every_chain=True,
        )

    async def entries_after(self, seq: int, *, limit: int) -> builtins.list[AuditEvent]:
        """This process's chain's entries after `seq` (what it must export)."""
        return await (self._own or self._shared).entries_after(seq, limit=limit)

    async def head(self) -> tuple[int, str]:
        """The shared chain's head: anchoring it anchors every chain it anchored."""
        return await self._shared.head()

    async def anchor(self) -> None:
        """Append this process's chain head to the shared chain, if it appended since the
        last anchor (a process that only read writes nothing)."""
        appends = self._appends
        if self._own is None or appends == self._appends_anchored:
            return
        # The head this process appended is in the chain for good: no search needed.
        seq, digest = self._own.last_appended or await self._own.head()
        if seq == 0 or self._anchored == (seq, digest):
            return
        name = str(self._own.chain)
        await self._shared.append(
            AuditEvent(
                actor=self._actor,
                action=ANCHOR_ACTION,
                subject=name,
                reason=f"head of audit chain {name}",
                outcome=f"seq {seq}",
                details={"chain": name, "seq": seq, "hash": digest},
                at=datetime.now(UTC),
            )
        )
        self._anchored, self._appends_anchored = (seq, digest), appends

    def start(self) -> None:
        if self._own is not None and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="audit-chain-anchors")

    async def aclose(self) -> None:
        """Stop the timer and anchor the final head."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.anchor()
        except Exception:  # closing must go on; the head stays in the chain's own entries
            log.exception("cannot anchor audit chain %s on close", self._own and self._own.chain)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.anchor()
            except Exception:  # the next tick retries; a failure is loud in the logs
                log.exception("cannot anchor audit chain %s", self._own and self._own.chain)

    async def verify(
        self,
        *,
        expected_head: str | None = None,
        expected_count: int | None = None,
        anchors: Mapping[int, str] | None = None,
        since: VerifyResult | None = None,
    ) -> VerifyResult:
        """The shared chain (against the anchors given), then every named chain against
        the heads the shared chain anchored for it. `count` totals every chain; `head`
        is the shared chain's; a failure names its chain."""
        parts = dict(since.parts) if since is not None else {}
        found: builtins.list[AuditEvent] = []

        def collect(event: AuditEvent) -> None:
            if event.action == ANCHOR_ACTION:
                found.append(event)

        shared = await self._shared.verify(
            expected_head=expected_head,
            expected_count=expected_count,
            anchors=anchors,
            since=parts.get(""),
            on_entry=collect,
        )
        results: dict[str, VerifyResult] = {"": shared}
        if not shared.ok:
            return _combined(shared, results, failed="")
        heads, problem = _anchored_heads(found)
        if problem is not None:
            bad_seq, text = problem
            return replace(shared, ok=False, first_bad_seq=bad_seq, problem=text)
        names = sorted(set(await self._shared.chains()) | set(heads) | (parts.keys() - {""}))
        for name in names:
            chain = self._shared.sibling(name)
            earlier = parts.get(name)
            wanted = heads.get(name, {})
            if earlier is not None:
                # Heads anchored since the last check but inside what it already read.
                for seq, digest in sorted(wanted.items()):
                    if seq <= earlier.count and await chain.entry_hash(seq) != digest:
                        bad = VerifyResult(
                            False,
                            seq - 1,
                            "",
                            seq,
                            f"entry {seq} is an anchored head but its hash differs from the "
                            "anchor: the chain was rewritten",
                        )
                        results[name] = bad
                        return _combined(shared, results, failed=name)
                wanted = {s: d for s, d in wanted.items() if s > earlier.count}
            results[name] = await chain.verify(anchors=wanted, since=earlier)
            if not results[name].ok:
                return _combined(shared, results, failed=name)
        return _combined(shared, results, failed=None)


def _anchored_heads(
    entries: builtins.list[AuditEvent],
) -> tuple[dict[str, dict[int, str]], tuple[int | None, str] | None]:
    """Per chain, the heads the shared chain's anchor entries name; or what is wrong."""
    heads: dict[str, dict[int, str]] = {}
    for entry in entries:
        name, seq, digest = (entry.details.get(k) for k in ("chain", "seq", "hash"))
        if not isinstance(name, str) or not isinstance(seq, int) or not isinstance(digest, str):
            return heads, (entry.seq, f"shared entry {entry.seq} is not a readable chain anchor")
        if heads.setdefault(name, {}).setdefault(seq, digest) != digest:
            text = f"chain {name} entry {seq} is anchored with two different hashes"
            return heads, (entry.seq, text)
    return heads, None


def _combined(
    shared: VerifyResult, results: dict[str, VerifyResult], *, failed: str | None
) -> VerifyResult:
    count = sum(r.count for r in results.values())
    parts = tuple(sorted(results.items()))
    if failed is None:
        return replace(shared, count=count, parts=parts)
    bad = results[failed]
    where = "the shared chain" if failed == "" else f"chain {failed}"
    return replace(
        shared,
        ok=False,
        count=count,
        first_bad_seq=bad.first_bad_seq,
        problem=f"{where}: {bad.problem}",
        parts=parts,
    )

"""What every audit log offers: SQLite (embedded) and Elasticsearch (shared by workers)."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, Protocol

from soc_agent.audit.chain import VerifyResult
from soc_agent.models import AuditEvent

__all__ = ["AuditLog", "AuditSink", "Later"]


class Later:
    """An entry queued for the log's next batch, written when another caller's `append`
    writes a batch or when this is awaited, whichever comes first; awaiting it returns
    the entry as written, or raises what writing it raised.

    For entries that need not be on disk before the caller goes on (nothing
    irreversible follows until an awaited append, which writes every entry queued
    before it, in order): they then share that append's batch and its one write.
    """

    def __init__(
        self,
        done: asyncio.Future[AuditEvent],
        drain: Callable[[asyncio.Future[Any]], Awaitable[None]],
    ) -> None:
        self._done, self._drain = done, drain

    def __await__(self) -> Generator[Any, None, AuditEvent]:
        return self._written().__await__()

    async def _written(self) -> AuditEvent:
        await self._drain(self._done)
        return self._done.result()


class AuditSink(Protocol):
    """Where the core writes audit events: what the gateway, executor, proposal service
    and agent need (every AuditLog is one)."""

    async def append(self, event: AuditEvent) -> AuditEvent: ...
    def append_later(self, event: AuditEvent) -> Later: ...


class AuditLog(Protocol):
    """The hash-chained audit log: append, read back, and verify the chain."""

    async def append(self, event: AuditEvent) -> AuditEvent: ...
    def append_later(self, event: AuditEvent) -> Later: ...
    async def list(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        subject: str | None = None,
        action_prefix: str | None = None,
        newest_first: bool = False,
    ) -> builtins.list[AuditEvent]: ...
    async def entries_after(self, seq: int, *, limit: int) -> builtins.list[AuditEvent]: ...
    async def head(self) -> tuple[int, str]: ...
    async def verify(
        self,
        *,
        expected_head: str | None = None,
        expected_count: int | None = None,
        anchors: Mapping[int, str] | None = None,
        since: VerifyResult | None = None,
    ) -> VerifyResult: ...

"""What every audit log offers: SQLite (embedded) and Elasticsearch (shared by workers)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Protocol

from soc_agent.audit.chain import VerifyResult
from soc_agent.models import AuditEvent

__all__ = ["AuditLog", "AuditSink"]


class AuditSink(Protocol):
    """Where the core writes audit events: the one method the gateway, executor and
    proposal service need (every AuditLog is one)."""

    async def append(self, event: AuditEvent) -> AuditEvent: ...


class AuditLog(Protocol):
    """The hash-chained audit log: append, read back, and verify the chain."""

    async def append(self, event: AuditEvent) -> AuditEvent: ...
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

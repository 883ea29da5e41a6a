"""Recording executor: containment actions for the demo and for tests.

It performs nothing against an external system. Each call is appended to a
journal (JSON lines, fsynced) saying what it *would* have done, and the
journal is the state that `check_state` verifies against. Swap it for a real
EDR / IdP / firewall connector by granting that connector's scopes instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from soc_agent.errors import ConnectorError
from soc_agent_connectors import Connector, capability
from soc_agent_connectors._local_data import (
    DATA_PATH,
    open_own_for_read,
    open_private_for_append,
)

__all__ = ["RecordingExecutor"]

NOTE = "recorded only: no external system was changed (recording executor)"


class RecordingExecutorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    journal: str = Field(
        default="soc-agent-containment.jsonl",
        description="JSON lines file the recorded actions are appended to",
        json_schema_extra=DATA_PATH,
    )


class TargetInput(BaseModel):
    target: str = Field(min_length=1, max_length=2048)
    reason: str = Field(default="", max_length=4096)
    idempotency_key: str | None = None


class ActionOutput(BaseModel):
    action: str
    target: str
    state: Literal["contained", "released", "done"]
    changed: bool = Field(description="false when the target was already in that state")
    note: str = NOTE
    recorded_at: datetime


class StateInput(BaseModel):
    """The verify contract: does the effect of `action` on `target` hold now?"""

    action: str = Field(min_length=1, max_length=64)
    target: str = Field(min_length=1, max_length=2048)


class StateOutput(BaseModel):
    action: str
    target: str
    in_effect: bool
    last_action: str | None = None


# action -> (state kind, True if it contains / False if it releases)
_EFFECT: dict[str, tuple[str, bool]] = {
    "isolate_host": ("host_isolation", True),
    "release_host": ("host_isolation", False),
    "disable_user": ("user_disabled", True),
    "enable_user": ("user_disabled", False),
    "revoke_sessions": ("sessions_revoked", True),
    "block_ip": ("ip_block", True),
    "unblock_ip": ("ip_block", False),
    "block_domain": ("domain_block", True),
    "unblock_domain": ("domain_block", False),
    "quarantine_file": ("file_quarantine", True),
    "release_file": ("file_quarantine", False),
    "quarantine_email": ("email_quarantine", True),
    "release_email": ("email_quarantine", False),
}


class RecordingExecutor(Connector):
    """Containment actions recorded to a journal instead of sent to a vendor."""

    name = "containment"
    description = "Recording executor: records containment actions, changes nothing external"
    config_model = RecordingExecutorConfig

    def __init__(self, config: RecordingExecutorConfig) -> None:
        super().__init__(config)
        self._path = Path(config.journal)
        self._lock = asyncio.Lock()
        # The journal as read so far: reading it whole on every call grew with its length
        # (16 ms a call at 100k lines). Each call reads only what was appended since, by
        # this process or another; a journal that shrank or was replaced is read afresh.
        self._known: dict[tuple[str, str], tuple[bool, str]] = {}
        self._read_to = 0
        self._identity: tuple[int, int] | None = None
        self._partial = b""
        self._reading = threading.Lock()  # `_state` runs in worker threads

    async def _record(self, action: str, args: TargetInput) -> ActionOutput:
        kind, contains = _EFFECT[action]
        target = args.target.strip().lower()
        async with self._lock:
            state = await asyncio.to_thread(self._state)
            was = state.get((kind, target), (False, None))[0]
            now = datetime.now(UTC)
            entry = {
                "at": now.isoformat(),
                "action": action,
                "kind": kind,
                "target": target,
                "contains": contains,
                "reason": args.reason,
                "idempotency_key": args.idempotency_key,
                "note": NOTE,
            }
            await asyncio.to_thread(self._append, entry)
        changed = was != contains or kind == "sessions_revoked"
        return ActionOutput(
            action=action,
            target=target,
            state="done"
            if kind == "sessions_revoked"
            else ("contained" if contains else "released"),
            changed=changed,
            recorded_at=now,
        )

    def _append(self, entry: dict[str, object]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with open_private_for_append(self._path) as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _state(self) -> dict[tuple[str, str], tuple[bool, str]]:
        with self._reading:
            return self._read_new()

    def _read_new(self) -> dict[tuple[str, str], tuple[bool, str]]:
        try:
            fh = open_own_for_read(self._path)
        except FileNotFoundError:
            return {}
        with fh:
            info = os.fstat(fh.fileno())
            if (info.st_dev, info.st_ino) != self._identity or info.st_size < self._read_to:
                self._known, self._read_to, self._partial = {}, 0, b""
                self._identity = (info.st_dev, info.st_ino)
            fh.seek(self._read_to)
            added = fh.read()
        self._read_to += len(added)
        lines = (self._partial + added).split(b"\n")
        self._partial = lines.pop()  # an unfinished last line: completed by a later append
        for line in lines:
            try:
                e = json.loads(line)
                self._known[(e["kind"], e["target"])] = (bool(e["contains"]), e["action"])
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
                continue  # a torn line after a crash: the action did not complete
        return dict(self._known)

    @capability(kind="query", scopes=["containment:read"])
    async def check_state(self, args: StateInput) -> StateOutput:
        """Whether the effect of an action currently holds on a target."""
        if args.action not in _EFFECT:
            raise ConnectorError(f"containment cannot verify unknown action {args.action!r}")
        kind, contains = _EFFECT[args.action]
        state = await asyncio.to_thread(self._state)
        active, last = state.get((kind, args.target.strip().lower()), (False, None))
        in_effect = active if kind == "sessions_revoked" else active == contains
        return StateOutput(
            action=args.action, target=args.target, in_effect=in_effect, last_action=last
        )

    @capability(
        kind="action",
        scopes=["host:contain"],
        target="host",
        reversible=True,
        rollback="release_host",
        verify="check_state",
        risk="high",
    )
    async def isolate_host(self, args: TargetInput) -> ActionOutput:
        """Network-isolate a host (EDR containment)."""
        return await self._record("isolate_host", args)

    @capability(
        kind="action",
        scopes=["host:contain"],
        target="host",
        reversible=True,
        rollback="isolate_host",
        verify="check_state",
        risk="low",
    )
    async def release_host(self, args: TargetInput) -> ActionOutput:
        """Lift network isolation of a host."""
        return await self._record("release_host", args)

    @capability(
        kind="action",
        scopes=["user:disable"],
        target="user",
        reversible=True,
        rollback="enable_user",
        verify="check_state",
        risk="high",
    )
    async def disable_user(self, args: TargetInput) -> ActionOutput:
        """Disable (suspend) a user account in the identity provider."""
        return await self._record("disable_user", args)

    @capability(
        kind="action",
        scopes=["user:disable"],
        target="user",
        reversible=True,
        rollback="disable_user",
        verify="check_state",
        risk="low",
    )
    async def enable_user(self, args: TargetInput) -> ActionOutput:
        """Re-enable a user account."""
        return await self._record("enable_user", args)

    @capability(
        kind="action", scopes=["session:revoke"], target="user", reversible=False, risk="medium"
    )
    async def revoke_sessions(self, args: TargetInput) -> ActionOutput:
        """Revoke a user's sign-in sessions and refresh tokens (cannot be undone)."""
        return await self._record("revoke_sessions", args)

    @capability(
        kind="action",
        scopes=["network:block"],
        target="ip",
        reversible=True,
        rollback="unblock_ip",
        verify="check_state",
        risk="low",
    )
    async def block_ip(self, args: TargetInput) -> ActionOutput:
        """Block an IP address at the perimeter."""
        return await self._record("block_ip", args)

    @capability(
        kind="action",
        scopes=["network:block"],
        target="ip",
        reversible=True,
        rollback="block_ip",
        verify="check_state",
        risk="low",
    )
    async def unblock_ip(self, args: TargetInput) -> ActionOutput:
        """Lift a block on an IP address."""
        return await self._record("unblock_ip", args)

    @capability(
        kind="action",
        scopes=["network:block"],
        target="domain",
        reversible=True,
        rollback="unblock_domain",
        verify="check_state",
        risk="low",
    )
    async def block_domain(self, args: TargetInput) -> ActionOutput:
        """Block a domain in DNS / the web proxy."""
        return await self._record("block_domain", args)

    @capability(
        kind="action",
        scopes=["network:block"],
        target="domain",
        reversible=True,
        rollback="block_domain",
        verify="check_state",
        risk="low",
    )
    async def unblock_domain(self, args: TargetInput) -> ActionOutput:
        """Lift a block on a domain."""
        return await self._record("unblock_domain", args)

    @capability(
        kind="action",
        scopes=["file:quarantine"],
        target="file_hash",
        reversible=True,
        rollback="release_file",
        verify="check_state",
        risk="medium",
    )
    async def quarantine_file(self, args: TargetInput) -> ActionOutput:
        """Quarantine a file by hash on every endpoint."""
        return await self._record("quarantine_file", args)

    @capability(
        kind="action",
        scopes=["file:quarantine"],
        target="file_hash",
        reversible=True,
        rollback="quarantine_file",
        verify="check_state",
        risk="low",
    )
    async def release_file(self, args: TargetInput) -> ActionOutput:
        """Release a quarantined file."""
        return await self._record("release_file", args)

    @capability(
        kind="action",
        scopes=["email:quarantine"],
        target="email",
        reversible=True,
        rollback="release_email",
        verify="check_state",
        risk="medium",
    )
    async def quarantine_email(self, args: TargetInput) -> ActionOutput:
        """Pull a reported message from every mailbox (by sender address)."""
        return await self._record("quarantine_email", args)

    @capability(
        kind="action",
        scopes=["email:quarantine"],
        target="email",
        reversible=True,
        rollback="quarantine_email",
        verify="check_state",
        risk="low",
    )
    async def release_email(self, args: TargetInput) -> ActionOutput:
        """Return quarantined messages to mailboxes."""
        return await self._record("release_email", args)

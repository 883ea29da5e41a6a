"""Chain heads kept where the store's writer cannot rewrite them.

The chain alone cannot show that its tail was cut off, or that someone with
the key rebuilt it. A head (`seq`, `hash`) recorded elsewhere can: the agent
appends one to `audit_anchor_file` every `audit_anchor_seconds` (and when it
stops), and `audit verify --against FILE` checks that each is still in the
chain. The file is opened append-only; make it so at the file system level
too (`chattr +a`, a WORM volume, or a log shipper that forwards each line).
The Kafka runtime's audit topic is a second such place (`--against kafka`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from soc_agent.audit.base import AuditLog
from soc_agent.errors import ConfigError

__all__ = ["AnchorWriter", "append_anchor", "read_anchors"]

log = logging.getLogger(__name__)


def append_anchor(path: Path, seq: int, head: str) -> None:
    """Append one head as a JSON line (creating the file 0600)."""
    line = json.dumps({"seq": seq, "head": head, "at": datetime.now(UTC).isoformat()})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_anchors(path: Path) -> dict[int, str]:
    """Every recorded head, `seq` to hash; a line that is not one names the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = f"cannot read the anchor file: {exc.strerror}"
        raise ConfigError(problem, source=str(path)) from None
    anchors: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            seq, head = doc["seq"], doc["head"]
            if not isinstance(seq, int) or not isinstance(head, str) or seq < 0:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                'not an anchor (expected {"seq": N, "head": "…"})', source=str(path), line=number
            ) from None
        if anchors.get(seq, head) != head:
            raise ConfigError(
                f"entry {seq} is anchored with two different hashes", source=str(path), line=number
            )
        anchors[seq] = head
    return anchors


class AnchorWriter:
    """Appends the chain's head to the anchor file whenever it moved, on a timer."""

    def __init__(self, audit: AuditLog, path: Path, *, interval_seconds: float) -> None:
        self._audit = audit
        self._path = path
        self._interval = interval_seconds
        self._last: tuple[int, str] | None = None
        self._task: asyncio.Task[None] | None = None

    async def record(self) -> None:
        """Append the current head unless it is the one appended last."""
        head = await self._audit.head()
        if head != self._last and head[0] > 0:
            await asyncio.to_thread(append_anchor, self._path, *head)
            self._last = head

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="audit-anchors")

    async def stop(self) -> None:
        """Stop the timer and record the final head."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.record()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.record()
            except Exception:  # the next tick retries; a failure is loud in the logs
                log.exception("cannot append the audit head to %s", self._path)

"""Per-partition commit tracking: never commit past an offset whose work is unfinished.

Messages of one partition finish out of order (investigations run
concurrently), but a Kafka commit means "everything before this offset is
done". The tracker keeps, per partition, the offsets started and not yet
finished; the committable position is the lowest unfinished offset, or one
past the highest finished offset when nothing is pending.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

__all__ = ["OffsetTracker", "PartitionOffsets"]


@dataclass
class PartitionOffsets:
    """Offsets of one partition: started-but-unfinished, and the highest finished."""

    pending: set[int] = field(default_factory=set)
    _heap: list[int] = field(default_factory=list)
    finished_upto: int | None = None  # one past the highest finished offset
    committed: int | None = None  # the position last handed out for commit

    def start(self, offset: int) -> None:
        if offset in self.pending:
            return
        self.pending.add(offset)
        heapq.heappush(self._heap, offset)

    def finish(self, offset: int) -> None:
        self.pending.discard(offset)
        nxt = offset + 1
        if self.finished_upto is None or nxt > self.finished_upto:
            self.finished_upto = nxt
        while self._heap and self._heap[0] not in self.pending:
            heapq.heappop(self._heap)

    def position(self) -> int | None:
        """The offset to commit: every message before it is finished.

        Offsets are started in fetch order from the committed position, so the
        lowest unfinished offset is the answer while anything is pending.
        """
        if self._heap:
            return self._heap[0]
        return self.finished_upto


class OffsetTracker:
    """Tracks every assigned partition; keys are (topic, partition)."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int], PartitionOffsets] = {}

    def start(self, topic: str, partition: int, offset: int) -> None:
        self._parts.setdefault((topic, partition), PartitionOffsets()).start(offset)

    def finish(self, topic: str, partition: int, offset: int) -> None:
        part = self._parts.get((topic, partition))
        if part is not None:  # a revoked partition's late finisher is ignored
            part.finish(offset)

    def in_flight(self, topic: str | None = None) -> int:
        return sum(
            len(p.pending) for (t, _), p in self._parts.items() if topic is None or t == topic
        )

    def pending_of(self, topic: str, partition: int) -> set[int]:
        part = self._parts.get((topic, partition))
        return set(part.pending) if part else set()

    def committable(self) -> dict[tuple[str, int], int]:
        """Positions that moved since the last `mark_committed`, safe to commit."""
        out: dict[tuple[str, int], int] = {}
        for key, part in self._parts.items():
            pos = part.position()
            if pos is not None and (part.committed is None or pos > part.committed):
                out[key] = pos
        return out

    def mark_committed(self, positions: dict[tuple[str, int], int]) -> None:
        for key, pos in positions.items():
            part = self._parts.get(key)
            if part is not None and (part.committed is None or pos > part.committed):
                part.committed = pos

    def forget(self, topic: str, partition: int) -> None:
        """The partition was revoked: its unfinished work must not be committed by us."""
        self._parts.pop((topic, partition), None)

"""Entity risk in hopping windows, exact under redelivery, and the risk alerts it raises.

Each alert adds the points the risk rules give each entity it names to every
window that holds the alert's event time (`window_seconds / hop_seconds` of
them). A window keeps its contributions by alert id, so an alert seen twice
adds nothing the second time, and at-least-once delivery still gives exact
totals. When an entity's total in a window reaches the threshold, one risk
record is raised for that entity and window (its id derived from both); the
overlapping windows that follow do not raise it again, a window starting a
whole window later may.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from soc_agent.models import Alert, Entity, EntityType
from soc_agent.risk.config import RiskConfig
from soc_agent.risk.rules import RiskRules

__all__ = ["RISK_FORMAT", "Contribution", "RiskLedger", "RiskWindow", "risk_record_id"]

logger = logging.getLogger(__name__)

RISK_FORMAT = "soc_risk"
HISTORY_LIMIT = 100  # distinct tactics, techniques and rules a rule sees in `history`
RECORD_CONTRIBUTIONS = 50  # contributions a risk record lists (the highest-scoring)


@dataclass(frozen=True)
class Contribution:
    alert_id: str
    at: datetime
    title: str
    points: int
    rules: tuple[tuple[str, int], ...]
    tactics: tuple[str, ...]
    techniques: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "at": self.at.isoformat(),
            "title": self.title,
            "points": self.points,
            "rules": [{"id": rule, "points": points} for rule, points in self.rules],
            "tactics": list(self.tactics),
            "techniques": list(self.techniques),
        }


@dataclass
class RiskWindow:
    """One entity's contributions in one window, each alert at most once."""

    start: int  # epoch seconds
    contributions: dict[str, Contribution] = field(default_factory=dict)
    dropped: int = 0  # alerts past max_contributions: not added, counted

    @property
    def total(self) -> int:
        return max(0, sum(c.points for c in self.contributions.values()))

    def history(self) -> dict[str, Any]:
        """What a rule sees of the entity's past in this window."""
        return {
            "alerts": len(self.contributions),
            "total": self.total,
            "tactics": _distinct(t for c in self.contributions.values() for t in c.tactics),
            "techniques": _distinct(t for c in self.contributions.values() for t in c.techniques),
            "rules": _distinct(r for c in self.contributions.values() for r, _ in c.rules),
        }


def _distinct(values: Iterator[str]) -> list[str]:
    out: dict[str, None] = {}
    for value in values:
        out.setdefault(value)
        if len(out) >= HISTORY_LIMIT:
            break
    return list(out)


def risk_record_id(entity_key: str, window_start: int) -> str:
    """The one id of the risk record for an entity and window."""
    digest = hashlib.sha256(f"{entity_key}|{window_start}".encode()).hexdigest()
    return f"risk-{digest[:24]}"


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


class RiskLedger:
    """The embedded runtime's risk state (the stream app keeps the same in Kafka tables)."""

    def __init__(self, rules: RiskRules, config: RiskConfig) -> None:
        self.rules, self.config = rules, config
        self._windows: dict[tuple[str, int], RiskWindow] = {}
        self._raised: dict[str, int] = {}  # entity key -> start of the last window raised
        self._watermark = 0  # the latest event time seen
        self._swept = 0  # the watermark at the last eviction
        self.late = 0  # alerts older than every window still kept
        self.unevaluated = 0  # rule evaluations that failed

    def starts(self, moment: int) -> list[int]:
        """The starts of the windows that hold `moment`, oldest first."""
        hop, size = self.config.hop_seconds, self.config.window_seconds
        last = moment - moment % hop
        return list(range(last - size + hop, last + 1, hop))

    def add(self, alert: Alert) -> list[dict[str, Any]]:
        """Add the alert's risk; the risk records it raises (usually none)."""
        if alert.format == RISK_FORMAT:
            return []  # risk alerts never add risk of their own
        moment = _epoch(alert.created_at)
        if moment < self._watermark - 2 * self.config.window_seconds:
            self.late += 1
            return []
        self._watermark = max(self._watermark, moment)
        starts = self.starts(moment)
        context = alert.context()
        raised: list[dict[str, Any]] = []
        for entity in self._entities(alert):
            key = entity.key
            oldest = self._window(key, starts[0])
            if alert.id in oldest.contributions:
                continue  # seen before: redelivered or replayed
            score = self.rules.score(
                context,
                {"type": entity.type.value, "value": entity.value, "role": entity.role},
                oldest.history(),
            )
            if score.unevaluated:
                self.unevaluated += len(score.unevaluated)
                logger.warning(
                    "risk rules not evaluated for %s on alert %s: %s",
                    key,
                    alert.id,
                    "; ".join(score.unevaluated),
                )
            if not score.fired:
                continue
            contribution = Contribution(
                alert_id=alert.id,
                at=alert.created_at,
                title=alert.title[:200],
                points=score.points,
                rules=score.fired,
                tactics=tuple(alert.tactics),
                techniques=tuple(alert.techniques),
            )
            for start in starts:
                window = self._window(key, start)
                if len(window.contributions) >= self.config.max_contributions:
                    window.dropped += 1
                    continue
                window.contributions[alert.id] = contribution
                if window.total >= self.config.threshold and self._may_raise(key, start):
                    self._raised[key] = start
                    raised.append(self._record(entity, window, alert.created_at))
        self._evict()
        return raised

    def lookup(
        self, entity_type: str, value: str, moment: datetime | None = None
    ) -> dict[str, Any]:
        """An entity's risk in the window ending soonest after `moment` (default: the latest
        event time seen), i.e. about the last `window_seconds`. A value that is no valid
        entity raises ValueError."""
        entity_key = Entity(type=EntityType(entity_type), value=value).key
        at = _epoch(moment) if moment is not None else self._watermark
        start = self.starts(at)[0]
        window = self._windows.get((entity_key, start), RiskWindow(start))
        top = sorted(window.contributions.values(), key=lambda c: -c.points)
        return {
            "entity": entity_key,
            "total": window.total,
            "threshold": self.config.threshold,
            "window_start": _iso(start),
            "window_end": _iso(start + self.config.window_seconds),
            "alert_count": len(window.contributions),
            "dropped": window.dropped,
            **{k: v for k, v in window.history().items() if k in ("tactics", "techniques")},
            "contributions": [c.to_json() for c in top[:RECORD_CONTRIBUTIONS]],
        }

    def _entities(self, alert: Alert) -> list[Entity]:
        kinds = set(self.config.entity_types)
        seen: dict[str, Entity] = {}
        for entity in alert.entities:
            if entity.type in kinds:
                seen.setdefault(entity.key, entity)
        return list(seen.values())

    def _window(self, key: str, start: int) -> RiskWindow:
        window = self._windows.get((key, start))
        if window is None:
            window = self._windows[(key, start)] = RiskWindow(start)
        return window

    def _may_raise(self, key: str, start: int) -> bool:
        last = self._raised.get(key)
        return last is None or start >= last + self.config.window_seconds

    def _evict(self) -> None:
        """Drop windows no alert can reach any more (memory follows the alert rate)."""
        if self._watermark - self._swept < self.config.hop_seconds:
            return  # once per hop of event time, not per alert
        self._swept = self._watermark
        horizon = self._watermark - 3 * self.config.window_seconds
        self._windows = {k: w for k, w in self._windows.items() if k[1] >= horizon}
        self._raised = {k: s for k, s in self._raised.items() if s >= horizon}

    def _record(self, entity: Entity, window: RiskWindow, crossed_at: datetime) -> dict[str, Any]:
        top = sorted(window.contributions.values(), key=lambda c: -c.points)
        history = window.history()
        return {
            RISK_FORMAT: {
                "version": 1,
                "id": risk_record_id(entity.key, window.start),
                "entity": {"type": entity.type.value, "value": entity.value},
                "window": {
                    "start": _iso(window.start),
                    "end": _iso(window.start + self.config.window_seconds),
                },
                "total": window.total,
                "threshold": self.config.threshold,
                "created_at": crossed_at.isoformat(),
                "alert_count": len(window.contributions),
                "dropped": window.dropped,
                "tactics": history["tactics"],
                "techniques": history["techniques"],
                "contributions": [c.to_json() for c in top[:RECORD_CONTRIBUTIONS]],
            }
        }

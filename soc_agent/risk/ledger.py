"""Entity risk in hopping windows, exact under redelivery, and the risk alerts it raises.

Each entity keeps the contributions of the alerts that named it, by alert id,
each with its event time: an alert seen twice adds nothing the second time, so
at-least-once delivery still gives exact totals. A window's total is the sum
of the contributions whose time it holds; windows are `window_seconds` long
and one starts every `hop_seconds`. When an entity's total in a window reaches
the threshold, one risk record is raised for that entity and window (its id
derived from both, so raising it again gives the same id), unless the entity
already has a record for an overlapping window. The entity keeps the windows
it raised, not only the last one, so whatever order its alerts arrive in, its
records never overlap and every window that reaches the threshold overlaps
one of them. Which of the overlapping windows carries the record follows the
order of arrival: in event order it is the earliest to reach the threshold.

`EntityRisk` is one entity's state, serialisable, so the embedded runtime
keeps it in memory and the stream app in a Kafka table, with the same code.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from soc_agent.models import Alert, Entity, EntityType
from soc_agent.playbooks.context import alert_context
from soc_agent.risk.config import RiskConfig
from soc_agent.risk.rules import RiskRules

__all__ = [
    "RISK_FORMAT",
    "Contribution",
    "EntityRisk",
    "RiskLedger",
    "risk_entities",
    "risk_record_id",
]

logger = logging.getLogger(__name__)

RISK_FORMAT = "soc_risk"
HISTORY_LIMIT = 100  # distinct tactics, techniques and rules a rule sees in `history`
RECORD_CONTRIBUTIONS = 50  # contributions a risk record lists (the highest-scoring)
UNKNOWN = "unknown"  # the criticality of an entity the asset file does not list


@dataclass(frozen=True)
class Contribution:
    alert_id: str
    at: int  # event time, epoch seconds
    title: str
    points: int
    rules: tuple[tuple[str, int], ...]
    tactics: tuple[str, ...]
    techniques: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "at": _iso(self.at),
            "title": self.title,
            "points": self.points,
            "rules": [{"id": rule, "points": points} for rule, points in self.rules],
            "tactics": list(self.tactics),
            "techniques": list(self.techniques),
        }

    def pack(self) -> list[Any]:
        """The compact form kept in state (the changelog rewrites it on every update)."""
        rules = [[rule, points] for rule, points in self.rules]
        return [self.alert_id, self.at, self.title, self.points, rules,
                list(self.tactics), list(self.techniques)]  # fmt: skip

    @classmethod
    def unpack(cls, data: list[Any]) -> Contribution:
        alert_id, at, title, points, rules, tactics, techniques = data
        return cls(
            alert_id=str(alert_id),
            at=int(at),
            title=str(title),
            points=int(points),
            rules=tuple((str(r), int(p)) for r, p in rules),
            tactics=tuple(str(x) for x in tactics),
            techniques=tuple(str(x) for x in techniques),
        )


class _Summary:
    """One window's `history`, built from its contributions in the order they were added
    (as a walk over them finds them), so a new one is added without walking the rest."""

    __slots__ = ("alerts", "points", "rules", "size", "start", "tactics", "techniques")

    def __init__(self, start: int, size: int) -> None:
        self.start, self.size = start, size
        self.alerts = self.points = 0
        self.tactics: dict[str, None] = {}
        self.techniques: dict[str, None] = {}
        self.rules: dict[str, None] = {}

    def add(self, contribution: Contribution) -> None:
        if not self.start <= contribution.at < self.start + self.size:
            return
        self.alerts += 1
        self.points += contribution.points
        _extend(self.tactics, contribution.tactics)
        _extend(self.techniques, contribution.techniques)
        _extend(self.rules, (rule for rule, _ in contribution.rules))

    def history(self) -> dict[str, Any]:
        return {
            "alerts": self.alerts,
            "total": max(0, self.points),
            "tactics": list(self.tactics),
            "techniques": list(self.techniques),
            "rules": list(self.rules),
        }


def _extend(seen: dict[str, None], values: Iterable[str]) -> None:
    """Add values not seen yet, in order, up to `HISTORY_LIMIT` (the first distinct ones)."""
    for value in values:
        if len(seen) >= HISTORY_LIMIT:
            return
        seen.setdefault(value)


def risk_record_id(entity_key: str, window_start: int) -> str:
    """The one id of the risk record for an entity and window."""
    digest = hashlib.sha256(f"{entity_key}|{window_start}".encode()).hexdigest()
    return f"risk-{digest[:24]}"


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def window_starts(moment: int, config: RiskConfig) -> list[int]:
    """The starts of the windows that hold `moment`, oldest first."""
    hop, size = config.hop_seconds, config.window_seconds
    last = moment - moment % hop
    return list(range(last - size + hop, last + 1, hop))


def risk_entities(alert: Alert, config: RiskConfig) -> list[Entity]:
    """The distinct entities of the alert that gather risk (none for a risk alert)."""
    if alert.format == RISK_FORMAT:
        return []  # risk alerts never add risk of their own
    kinds = set(config.entity_types)
    seen: dict[str, Entity] = {}
    for entity in alert.entities:
        if entity.type in kinds:
            seen.setdefault(entity.key, entity)
    return list(seen.values())


def _window_totals(hops: Mapping[int, int], starts: list[int], config: RiskConfig) -> list[int]:
    """The totals of consecutive windows (one hop apart, on hop boundaries) from the points
    per hop: one running sum, which adds the hop entering and drops the hop leaving."""
    span = config.window_seconds // config.hop_seconds
    first = starts[0] // config.hop_seconds
    points = [hops.get(first + i, 0) for i in range(len(starts) + span - 1)]
    running = sum(points[:span])
    totals = [max(0, running)]
    for i in range(1, len(starts)):
        running += points[i + span - 1] - points[i - 1]
        totals.append(max(0, running))
    return totals


@dataclass
class EntityRisk:
    """One entity's contributions (within three windows of its newest alert)."""

    key: str
    contributions: dict[str, Contribution] = field(default_factory=dict)
    # Starts of the windows a risk record was raised for, oldest first (those that may
    # still overlap a window an alert can reach).
    raised: list[int] = field(default_factory=list)
    watermark: int = 0  # the newest event time seen for this entity
    dropped: int = 0  # alerts past max_contributions: not added, counted
    late: int = 0  # alerts older than every window still kept
    # Derived from `contributions`, kept up to date as they are added and dropped when
    # any is forgotten (not serialised): a storm's alerts on one entity mostly fall in
    # one window, and walking all of its contributions for each alert grew with the storm.
    _summary: _Summary | None = field(default=None, init=False, repr=False, compare=False)
    _hops: tuple[int, dict[int, int]] | None = field(
        default=None, init=False, repr=False, compare=False
    )  # (hop_seconds, points per hop)
    _oldest_at: int | None = field(default=None, init=False, repr=False, compare=False)

    def total(self, start: int, config: RiskConfig) -> int:
        return _window_totals(self._hop_sums(config), [start], config)[0]

    def _within(self, start: int, end: int) -> Iterable[Contribution]:
        return (c for c in self.contributions.values() if start <= c.at < end)

    def history(self, start: int, config: RiskConfig) -> dict[str, Any]:
        """What a rule sees of the entity's past in the window starting at `start`."""
        summary = self._summary
        if summary is None or (summary.start, summary.size) != (start, config.window_seconds):
            summary = self._summary = _Summary(start, config.window_seconds)
            for contribution in self.contributions.values():
                summary.add(contribution)  # it keeps those in its window
        return summary.history()

    def add(
        self, alert: Alert, context: Mapping[str, Any], entity: Entity, rules: RiskRules,
        config: RiskConfig, *, criticality: str = UNKNOWN,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Add the alert's risk to this entity; the risk records it raises (usually none)."""
        if alert.id in self.contributions:
            return []  # seen before: redelivered or replayed
        moment = _epoch(alert.created_at)
        if moment < self.watermark - 2 * config.window_seconds:
            self.late += 1
            return []
        starts = window_starts(moment, config)
        score = rules.score(
            context,
            {
                "type": entity.type.value,
                "value": entity.value,
                "role": entity.role,
                "criticality": criticality,
            },
            self.history(starts[0], config),
        )
        if score.unevaluated:
            logger.warning(
                "risk rules not evaluated for %s on alert %s: %s",
                self.key,
                alert.id,
                "; ".join(score.unevaluated),
            )
        if not score.fired:
            return []
        if len(self.contributions) >= config.max_contributions:
            self.dropped += 1
            return []
        contribution = Contribution(
            alert_id=alert.id,
            at=moment,
            title=alert.title[:200],
            points=score.points,
            rules=score.fired,
            tactics=tuple(alert.tactics),
            techniques=tuple(alert.techniques),
        )
        self.contributions[alert.id] = contribution
        self._added(contribution)
        raised: list[dict[str, Any]] = []
        totals = _window_totals(self._hop_sums(config), starts, config)
        for start, total in zip(starts, totals, strict=True):
            if total >= config.threshold and self._may_raise(start, config):
                self.raised = sorted([*self.raised, start])
                raised.append(self._record(entity, start, alert.created_at, config))
        if moment > self.watermark:
            self.watermark = moment
            horizon = moment - 3 * config.window_seconds
            if self._oldest() < horizon:
                self.contributions = {
                    k: c for k, c in self.contributions.items() if c.at >= horizon
                }
                self._summary = self._hops = self._oldest_at = None
            # An alert is counted from two windows behind the watermark, so the windows it
            # reaches start after `horizon`; a raised window overlaps one of them only if it
            # starts less than a window before that.
            self.raised = [r for r in self.raised if r > horizon - config.window_seconds]
        return raised

    @property
    def last_raised(self) -> int | None:
        """Start of the newest window a risk record was raised for."""
        return self.raised[-1] if self.raised else None

    def _hop_sums(self, config: RiskConfig) -> dict[int, int]:
        """Points per hop: each overlapping window's total is a sum of hops."""
        if self._hops is None or self._hops[0] != config.hop_seconds:
            sums: dict[int, int] = {}
            for c in self.contributions.values():
                hop = c.at // config.hop_seconds
                sums[hop] = sums.get(hop, 0) + c.points
            self._hops = (config.hop_seconds, sums)
        return self._hops[1]

    def _added(self, contribution: Contribution) -> None:
        """Bring what is derived from the contributions up to date with a new one."""
        if self._summary is not None:
            self._summary.add(contribution)
        if self._hops is not None:
            size, sums = self._hops
            hop = contribution.at // size
            sums[hop] = sums.get(hop, 0) + contribution.points
        if self._oldest_at is not None:
            self._oldest_at = min(self._oldest_at, contribution.at)

    def _oldest(self) -> int:
        if self._oldest_at is None:
            self._oldest_at = min((c.at for c in self.contributions.values()), default=0)
        return self._oldest_at

    def _may_raise(self, start: int, config: RiskConfig) -> bool:
        """No record yet for a window overlapping this one, before or after it: an alert
        arriving late (redelivered after a failover, or from a lagging partition) may
        raise an earlier window, never one overlapping a window already raised."""
        return all(abs(start - r) >= config.window_seconds for r in self.raised)

    def lookup(self, start: int, config: RiskConfig) -> dict[str, Any]:
        """The entity's risk in the window starting at `start`."""
        held = sorted(
            self._within(start, start + config.window_seconds), key=lambda c: (-c.points, c.at)
        )
        history = self.history(start, config)
        return {
            "entity": self.key,
            "total": history["total"],
            "threshold": config.threshold,
            "window_start": _iso(start),
            "window_end": _iso(start + config.window_seconds),
            "alert_count": history["alerts"],
            "dropped": self.dropped,
            "tactics": history["tactics"],
            "techniques": history["techniques"],
            "contributions": [c.to_json() for c in held[:RECORD_CONTRIBUTIONS]],
        }

    def _record(
        self, entity: Entity, start: int, crossed_at: datetime, config: RiskConfig
    ) -> dict[str, Any]:
        found = self.lookup(start, config)
        return {
            RISK_FORMAT: {
                "version": 1,
                "id": risk_record_id(self.key, start),
                "entity": {"type": entity.type.value, "value": entity.value},
                "window": {"start": found["window_start"], "end": found["window_end"]},
                "total": found["total"],
                "threshold": config.threshold,
                "created_at": crossed_at.isoformat(),
                "alert_count": found["alert_count"],
                "dropped": self.dropped,
                "tactics": found["tactics"],
                "techniques": found["techniques"],
                "contributions": found["contributions"],
            }
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "contributions": [c.pack() for c in self.contributions.values()],
            "raised": self.last_raised,  # as states written before `raised_windows`
            "raised_windows": list(self.raised),
            "watermark": self.watermark,
            "dropped": self.dropped,
            "late": self.late,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EntityRisk:
        contributions = [Contribution.unpack(c) for c in data.get("contributions", [])]
        windows = data.get("raised_windows")
        if windows is None:  # written before the state kept every raised window
            last = data.get("raised")
            windows = [] if last is None else [last]
        return cls(
            key=str(data["key"]),
            contributions={c.alert_id: c for c in contributions},
            raised=sorted(int(r) for r in windows),
            watermark=int(data.get("watermark", 0)),
            dropped=int(data.get("dropped", 0)),
            late=int(data.get("late", 0)),
        )


class RiskLedger:
    """The embedded runtime's risk state: every entity's `EntityRisk`, in memory."""

    def __init__(
        self, rules: RiskRules, config: RiskConfig, assets: Mapping[str, str] | None = None
    ) -> None:
        self.rules, self.config, self.assets = rules, config, dict(assets or {})
        self._entities: dict[str, EntityRisk] = {}
        self._newest = 0  # the newest event time of any alert
        self._swept = 0  # `_newest` at the last sweep

    def starts(self, moment: int) -> list[int]:
        return window_starts(moment, self.config)

    def add(self, alert: Alert) -> list[dict[str, Any]]:
        """Add the alert's risk to each entity it names; the risk records it raises."""
        entities = risk_entities(alert, self.config)
        if not entities:
            return []
        context = self.rules.alert_view(alert_context(alert))
        raised: list[dict[str, Any]] = []
        for entity in entities:
            state = self._entities.get(entity.key)
            if state is None:
                state = self._entities[entity.key] = EntityRisk(entity.key)
            criticality = self.assets.get(entity.key, UNKNOWN)
            raised += state.add(
                alert, context, entity, self.rules, self.config, criticality=criticality
            )
        self._sweep(_epoch(alert.created_at))
        return raised

    def _sweep(self, moment: int) -> None:
        """Forget entities quiet for three windows (memory follows the alert rate); once
        per hop of event time, not per alert."""
        self._newest = max(self._newest, moment)
        if self._newest - self._swept < self.config.hop_seconds:
            return
        self._swept = self._newest
        horizon = self._newest - 3 * self.config.window_seconds
        self._entities = {k: s for k, s in self._entities.items() if s.watermark >= horizon}

    @property
    def late(self) -> int:
        return sum(s.late for s in self._entities.values())

    def lookup(
        self, entity_type: str, value: str, moment: datetime | None = None
    ) -> dict[str, Any]:
        """An entity's risk in the window ending soonest after `moment` (default: the
        entity's newest alert), i.e. about the last `window_seconds`. A value that is no
        valid entity raises ValueError."""
        key = Entity(type=EntityType(entity_type), value=value).key
        state = self._entities.get(key) or EntityRisk(key)
        at = _epoch(moment) if moment is not None else state.watermark
        return state.lookup(window_starts(at, self.config)[0], self.config)

"""Score thresholds: which band an investigation score falls in, and why in words."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from soc_agent.models.decision import ActionCandidate
from soc_agent.policy.config import PolicyConfig
from soc_agent.policy.rules import PolicyRule

__all__ = ["Band", "BandResult", "Thresholds", "classify", "fmt", "resolve_thresholds"]


class Band(StrEnum):
    EXECUTE = "execute"
    PROPOSE = "propose"
    NOTIFY = "notify"
    BELOW = "below"


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """The thresholds in force for one candidate: its own, else the config defaults."""

    execute_at: float
    propose_at: float
    notify_at: float | None = None


@dataclass(frozen=True, kw_only=True)
class BandResult:
    band: Band
    rule: PolicyRule
    reason: str


def resolve_thresholds(candidate: ActionCandidate, config: PolicyConfig) -> Thresholds:
    """execute_at/propose_at fall back to the config defaults; notify_at has no default."""
    return Thresholds(
        execute_at=(
            config.default_execute_at if candidate.execute_at is None else candidate.execute_at
        ),
        propose_at=(
            config.default_propose_at if candidate.propose_at is None else candidate.propose_at
        ),
        notify_at=candidate.notify_at,
    )


def fmt(value: float) -> str:
    """A number as a reason shows it: `72`, `72.5`."""
    return f"{value:g}"


def classify(score: float, thresholds: Thresholds) -> BandResult:
    """The band `score` falls in; thresholds are inclusive (score == execute_at executes).

    execute_at is checked first, so a candidate whose execute_at lies below its
    propose_at still executes at execute_at. A NaN score falls in no band above BELOW.
    """
    s, t = fmt(score), thresholds
    if score >= t.execute_at:
        return BandResult(
            band=Band.EXECUTE,
            rule=PolicyRule.EXECUTE,
            reason=f"score {s} is at or above execute_at {fmt(t.execute_at)}",
        )
    if score >= t.propose_at:
        return BandResult(
            band=Band.PROPOSE,
            rule=PolicyRule.PROPOSE,
            reason=(
                f"score {s} is below execute_at {fmt(t.execute_at)} "
                f"and at or above propose_at {fmt(t.propose_at)}"
            ),
        )
    if t.notify_at is None:
        return BandResult(
            band=Band.BELOW,
            rule=PolicyRule.BELOW_PROPOSE,
            reason=f"score {s} is below propose_at {fmt(t.propose_at)} and no notify_at is set",
        )
    if score >= t.notify_at:
        return BandResult(
            band=Band.NOTIFY,
            rule=PolicyRule.NOTIFY,
            reason=(
                f"score {s} is below propose_at {fmt(t.propose_at)} "
                f"and at or above notify_at {fmt(t.notify_at)}"
            ),
        )
    return BandResult(
        band=Band.BELOW,
        rule=PolicyRule.BELOW_NOTIFY,
        reason=f"score {s} is below notify_at {fmt(t.notify_at)}",
    )

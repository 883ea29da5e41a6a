"""Memory of past cases in expressions: how analysts closed incidents on this rule and entity.

Score and respond expressions may call

- `history.verdicts(rule, entity, days)`: counts of the latest verdicts of incidents
  closed in the last `days` (at most 90) that held detection rule `rule` (an
  alert's `alert.rule_key`) and entity `entity` (a key such as
  `"host:" + alert.hosts[0]`, any of the entity's names):
  `{true_positive, benign_true_positive, false_positive, total}`;
- `history.last_verdict(entity)`: the most recent verdict on an incident naming
  the entity, or null.

A decision loads the verdicts naming its incident's entities once (one store
query, only for playbooks that call these functions) and the functions answer
from that. Outside a decision (a playbook test without recorded history, a
match expression) the call is an evaluation error, never an empty answer: a
rule that could not read the history is unevaluated, not false.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from soc_agent.models import Entity, IncidentVerdict
from soc_agent.models.verdict import count_verdicts, latest_verdict

if TYPE_CHECKING:  # the schema compiles expressions, which call these functions
    from soc_agent.playbooks.schema import Playbook

__all__ = [
    "HISTORY_FUNCTIONS",
    "MAX_HISTORY_DAYS",
    "HistoryView",
    "entity_key",
    "history_in_effect",
    "playbook_reads_history",
]

MAX_HISTORY_DAYS = 90
MAX_ENTITY_NAMES = 500
"""Entity names one decision asks the history about (the incident's, all aliases)."""

_VIEW: ContextVar[HistoryView | None] = ContextVar("soc_agent_history", default=None)


class HistoryView:
    """The verdicts one decision may read, as of `now` (the alert's time, so a replay of
    past alerts sees only what analysts had concluded by then)."""

    def __init__(self, verdicts: Sequence[IncidentVerdict], now: datetime) -> None:
        self._verdicts = list(verdicts)
        self._now = now

    def verdicts(self, rule: str, entity: str, days: int) -> dict[str, int]:
        since = self._now - timedelta(days=_days(days))
        key = entity_key(entity)
        return count_verdicts(self._verdicts, rule=rule, entity=key, since=since, until=self._now)

    def last_verdict(self, entity: str) -> str | None:
        found = latest_verdict(self._verdicts, entity=entity_key(entity), until=self._now)
        return found.value if found else None


def _days(days: Any) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_HISTORY_DAYS:
        raise ValueError(f"history days must be a whole number from 1 to {MAX_HISTORY_DAYS}")
    return days


def entity_key(entity: Any) -> str:
    """`host:WS-01` as entities are stored (`host:ws-01`); anything else is a ValueError."""
    return Entity.from_key(str(entity)).key


def _view() -> HistoryView:
    view = _VIEW.get()
    if view is None:
        raise RuntimeError("the history of verdicts is not available here")
    return view


def _verdicts(rule: Any, entity: Any, days: Any) -> dict[str, int]:
    return _view().verdicts(str(rule), entity, days)


def _last_verdict(entity: Any) -> str | None:
    return _view().last_verdict(entity)


HISTORY_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "history.verdicts": _verdicts,
    "history.last_verdict": _last_verdict,
}


@contextmanager
def history_in_effect(view: HistoryView | None) -> Iterator[None]:
    """Expressions evaluated inside read `view` (per task: concurrent decisions never mix)."""
    token = _VIEW.set(view)
    try:
        yield
    finally:
        _VIEW.reset(token)


def playbook_reads_history(playbook: Playbook) -> bool:
    """Whether the playbook's score or respond rules call the history (so a decision
    must load it)."""
    texts = [r.when for r in playbook.score.rules]
    texts += [t for r in playbook.respond for t in (r.when, r.for_each) if t is not None]
    return any("history." in text for text in texts)

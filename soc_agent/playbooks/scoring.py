"""From evidence to a score, candidate actions, and which playbook applies at all.

All three are pure functions of the playbook and an expression context
(`build_context`). Failures never raise: a scoring rule that cannot be
evaluated contributes nothing and says why; a respond rule that cannot be
evaluated puts nothing forward and is reported in `diagnostics`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from soc_agent.errors import ExpressionError
from soc_agent.models import ActionCandidate, Alert, Entity, Incident, ScoreContribution
from soc_agent.models.alert import ENTITIES_TRUNCATED, ENTITIES_TRUNCATED_TYPES
from soc_agent.models.entity_index import key_index
from soc_agent.playbooks.context import alert_context, incident_context
from soc_agent.playbooks.expressions import (
    EvaluationError,
    evaluate,
    evaluate_bool,
    free_variables,
    step_references,
)
from soc_agent.playbooks.schema import Playbook, RespondRule
from soc_agent.playbooks.templates import ItemTemplates, render

__all__ = [
    "MatchError",
    "Selection",
    "candidates",
    "match_playbooks",
    "model_share",
    "score",
    "score_bound",
    "select_playbook",
]

log = logging.getLogger(__name__)


def score(
    playbook: Playbook, ctx: Mapping[str, Any], *, max_model_points: float = 20.0
) -> tuple[float, list[ScoreContribution]]:
    """Base plus the points of every rule whose `when` holds, clamped to [0, 100].

    A rule that reads the model's assessment (`agent.*`) is model-derived: together
    such rules add (or take away) at most `max_model_points` (policy.model.max_points),
    and each says so in its reason.

    The breakdown lists the base (when non-zero), every rule that fired, and
    every rule that could not be evaluated (`evaluated=False`, 0 points, with
    the missing step or the expression error as reason). A rule that is false
    while a step it reads ended error, denied or not run is listed the same
    way: it could not have fired, and the analyst should see that. Rules that
    were evaluated on complete evidence and did not hold are not listed.
    """
    total = playbook.score.base
    breakdown: list[ScoreContribution] = []
    if playbook.score.base:
        breakdown.append(
            ScoreContribution(rule="base", points=playbook.score.base, reason="playbook base score")
        )
    model_total = 0.0
    truncated, kept, types = _entities_truncated(ctx)
    if truncated:
        breakdown.append(
            ScoreContribution(
                rule=ENTITIES_TRUNCATED,
                points=0,
                reason=f"the alert named more entities than are kept: kept {kept} of "
                f"{kept + truncated}"
                + (f" (not kept: {types})" if types else "")
                + "; rules saw only those",
                evaluated=False,
            )
        )
    for rule in playbook.score.rules:
        try:
            fired = evaluate_bool(rule.when, ctx)
        except ExpressionError as exc:
            breakdown.append(
                ScoreContribution(
                    rule=rule.id,
                    points=0,
                    reason=_not_evaluated(rule.when, ctx, exc),
                    evaluated=False,
                )
            )
            continue
        if not fired:
            missing = _missing_evidence(rule.when, ctx)
            if truncated:
                # Whatever it reads (the alert, the lookups of its entities, the incident it
                # joined) came from the kept entities only: it might have fired on the rest.
                missing.append(f"the rule saw {kept} of the alert's {kept + truncated} entities")
            if missing:
                # Did not fire, but could not have: say so instead of a silent zero.
                breakdown.append(
                    ScoreContribution(
                        rule=rule.id,
                        points=0,
                        reason="not evaluated, evidence missing: " + "; ".join(missing),
                        evaluated=False,
                    )
                )
            continue
        try:
            reason = str(render(rule.reason, ctx))
        except ExpressionError as exc:
            reason = f"{rule.reason} (reason could not be rendered: {exc})"
        points, derived = float(rule.points), "agent" in free_variables(rule.when)
        if derived:
            capped = max(-max_model_points, min(max_model_points, model_total + points))
            points, model_total = capped - model_total, capped
            capping = f", capped: {points:g} of {rule.points:g}" if points != rule.points else ""
            reason = f"{reason} (model-derived{capping})"
        total += points
        breakdown.append(
            ScoreContribution(rule=rule.id, points=points, reason=reason, model_derived=derived)
        )
    return max(0.0, min(100.0, float(total))), breakdown


def model_share(total: float, breakdown: Sequence[ScoreContribution]) -> float:
    """How far the model's rules moved the clamped score `total`.

    90 from the steps plus 15 from the model clamps to 100: the model added 10,
    and 90 is what the policy judges without it.
    """
    if not any(c.model_derived for c in breakdown):
        return 0.0
    without = sum(c.points for c in breakdown if not c.model_derived)
    return total - max(0.0, min(100.0, without))


def _entities_truncated(ctx: Mapping[str, Any]) -> tuple[int, int, str]:
    """(entities normalisation did not keep past its cap, entities kept, by type)."""
    alert = ctx.get("alert")
    if not isinstance(alert, Mapping):
        return 0, 0, ""
    labels = alert.get("labels") or {}
    try:
        truncated = int(labels.get(ENTITIES_TRUNCATED, 0))
    except (TypeError, ValueError):
        truncated = 0
    return (
        truncated,
        len(alert.get("entities") or []),
        str(labels.get(ENTITIES_TRUNCATED_TYPES, "")),
    )


def _not_evaluated(expression: str, ctx: Mapping[str, Any], exc: ExpressionError) -> str:
    missing = _missing_evidence(expression, ctx, include_skipped=True)
    if missing:
        return "not evaluated, evidence missing: " + "; ".join(missing)
    kind = "missing data" if isinstance(exc, EvaluationError) and exc.missing_data else "error"
    return f"not evaluated ({kind}): {exc}"


_MISSING = {"error", "denied", "not_run"}


def _missing_evidence(
    expression: str, ctx: Mapping[str, Any], *, include_skipped: bool = False
) -> list[str]:
    """Steps the expression reads whose evidence is absent (failed, denied, not run)."""
    steps = ctx.get("steps", {})
    missing: list[str] = []
    for ref in step_references(expression):
        entry = steps.get(ref) if isinstance(steps, Mapping) else None
        if entry is None:
            missing.append(f"step {ref!r} has no evidence")
            continue
        status = entry.get("status")
        if status in _MISSING or (include_skipped and not entry.get("ok")):
            detail = f": {entry['error']}" if entry.get("error") else ""
            missing.append(f"step {ref!r} ended {status}{detail}")
        elif entry.get("overflow"):
            looked = len(entry.get("result") or [])
            missing.append(
                f"step {ref!r} looked up {looked} of {looked + entry['overflow']} items "
                "(its max_items): the alert names more than the playbook expects"
            )
    return missing


def score_bound(playbook: Playbook, total: float, breakdown: Iterable[ScoreContribution]) -> float:
    """The highest score the decision could have reached had every unevaluated rule fired.

    Equal to `total` when every rule was evaluated; the policy escalates the actions
    this bound reaches but the score does not.
    """
    points = {rule.id: rule.points for rule in playbook.score.rules}
    missed = sum(max(0.0, points.get(c.rule, 0.0)) for c in breakdown if not c.evaluated)
    return max(0.0, min(100.0, total + missed))


def candidates(
    playbook: Playbook,
    ctx: Mapping[str, Any],
    *,
    known: Sequence[Entity] = (),
    diagnostics: list[str] | None = None,
) -> list[ActionCandidate]:
    """The actions the playbook puts forward: respond rules whose `when` holds.

    One candidate per for_each element; a target that renders empty or null
    is dropped, as is one that is not a valid entity. Every drop or expression
    failure is appended to `diagnostics` when a list is given (and logged).
    A target naming one of the `known` entities (the incident's) under any of its
    names becomes that entity, value and aliases: one person is one target however
    the playbook named them, and a connector can pick the alias it needs.
    """
    index = key_index(known)

    def named(key: str) -> Entity | None:
        i = index.get(key)
        return None if i is None else known[i]

    out: list[ActionCandidate] = []
    for rule in playbook.respond:
        out.extend(_rule_candidates(rule, ctx, named, diagnostics))
    return out


def _resolved(target: Entity, named: Callable[[str], Entity | None]) -> Entity:
    entity = named(target.key)
    if entity is None:
        return target
    # Already validated and normalised as the incident's entity: built without validating
    # again, with the same fields set as `Entity(type=, value=, aliases=)`.
    return Entity.model_construct(type=entity.type, value=entity.value, aliases=entity.aliases)


def _rule_candidates(
    rule: RespondRule,
    ctx: Mapping[str, Any],
    named: Callable[[str], Entity | None],
    diagnostics: list[str] | None,
) -> list[ActionCandidate]:
    def note(message: str) -> None:
        log.info("respond rule %s: %s", rule.id, message)
        if diagnostics is not None:
            diagnostics.append(f"respond rule {rule.id!r}: {message}")

    # Rendered in this order, so the first failure is the one reported.
    parts = [rule.target.type, rule.target.value, rule.args]
    try:
        if rule.when is not None and not evaluate_bool(rule.when, ctx):
            return []
        if rule.for_each is None:
            renders: list[Callable[[], Any]] = [lambda: render(parts, ctx)]
        else:
            items = evaluate(rule.for_each, ctx)
            if not isinstance(items, list):
                note(f"for_each must yield a list, got {type(items).__name__}")
                return []
            # The part no item reads is rendered once for the rule, not once per item.
            templates = ItemTemplates(parts, ctx)
            renders = [functools.partial(templates.render, item) for item in items]
    except ExpressionError as exc:
        note(f"not applied: {exc}")
        return []
    out: list[ActionCandidate] = []
    seen: set[str] = set()
    for rendering in renders:
        try:
            kind, value, args = rendering()
        except ExpressionError as exc:
            note(f"target not rendered: {exc}")
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            note("target is empty; no candidate")
            continue
        try:
            target = _resolved(Entity.model_validate({"type": kind, "value": str(value)}), named)
        except ValidationError as exc:
            note(f"target {kind}:{value!s:.80} is not a valid entity: {exc.errors()[0]['msg']}")
            continue
        if target.key in seen:
            continue
        seen.add(target.key)
        out.append(
            ActionCandidate(
                playbook_rule=rule.id,
                action=rule.action,
                target=target,
                args=args,
                execute_at=rule.execute_at,
                propose_at=rule.propose_at,
                notify_at=rule.notify_at,
                autonomy=rule.autonomy,
                revert_after_seconds=rule.revert_after_seconds,
                requires=list(rule.requires),
            )
        )
    return out


@dataclass(frozen=True)
class MatchError:
    """A playbook whose `match` failed to evaluate for an alert (treated as not matching)."""

    playbook: str
    message: str


@dataclass(frozen=True)
class Selection:
    """The result of matching: the winner, every playbook that matched, and match errors."""

    playbook: Playbook | None
    matched: list[str] = field(default_factory=list)
    errors: list[MatchError] = field(default_factory=list)


def match_playbooks(playbooks: Iterable[Playbook], alert: Alert, incident: Incident) -> Selection:
    """Evaluate every playbook's `match`; the highest priority wins, ties by name.

    A `match` that fails to evaluate (or is not boolean) counts as not
    matching, is logged as a warning and is returned in `errors` so the
    caller can audit it.
    """
    ctx = _match_context(alert, incident)
    matched: list[Playbook] = []
    errors: list[MatchError] = []
    for playbook in playbooks:
        outcome = _matches(playbook, ctx, alert.id)
        if isinstance(outcome, MatchError):
            errors.append(outcome)
        elif outcome:
            matched.append(playbook)
    matched.sort(key=_priority)
    return Selection(matched[0] if matched else None, [p.name for p in matched], errors)


def select_playbook(
    playbooks: Iterable[Playbook], alert: Alert, incident: Incident
) -> Playbook | None:
    """The playbook that applies: the same one as `match_playbooks` (whose errors it
    hides), found by evaluating `match` in priority order and stopping at the first
    that holds, so most alerts evaluate few expressions."""
    ctx = _match_context(alert, incident)
    for playbook in sorted(playbooks, key=_priority):
        if _matches(playbook, ctx, alert.id) is True:
            return playbook
    return None


def _priority(playbook: Playbook) -> tuple[int, str]:
    return (-playbook.priority, playbook.name)


def _match_context(alert: Alert, incident: Incident) -> dict[str, Any]:
    return {"alert": alert_context(alert), "incident": incident_context(incident)}


def _matches(playbook: Playbook, ctx: dict[str, Any], alert_id: str) -> bool | MatchError:
    """Whether the playbook's `match` holds; a failure is logged and returned, not raised."""
    try:
        return evaluate_bool(playbook.match, ctx)
    except ExpressionError as exc:
        log.warning("playbook %s: match failed for alert %s: %s", playbook.name, alert_id, exc)
        return MatchError(playbook.name, str(exc))

"""Replay labelled past alerts in shadow mode and record what the policy did with each action.

A labelled history is JSON lines, one past alert per line with the analyst's
conclusion: `{"verdict": "false_positive", "reason": "...", "closed_by":
"token:alice", "closed_at": "...", "alert": {<the vendor record>}}`. Each alert
goes through the real pipeline (normalise, correlate, investigate, decide) on a
store of its own, in shadow mode, so nothing executes and no production state
is touched. For every action the playbooks put forward the pure policy is asked
again at each `execute_at` of the sweep, with nothing else changed.

An action is labelled with the verdict of the alert whose arrival decided it.
After each alert its label closes its incident in the replay's store (at
`closed_at`, else an hour after the alert), so rules that read the memory of
past cases (`history.*`) see what analysts had concluded by each alert's time. A
store's own history (`--from-store`) supplies the same shape: each alert of an
incident closed with a verdict, labelled with that verdict, and also each alert
of an incident where an analyst judged an action (approved, rejected, upheld or
rolled it back). Such a judgement labels that action (same name, same target)
more finely than the incident's verdict, and an incident with judgements but no
verdict is labelled by them alone.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soc_agent.calibration.model import ActionOutcome
from soc_agent.calibration.stats import DEFAULT_THRESHOLDS
from soc_agent.errors import ConfigError, NormalizationError
from soc_agent.ingest import load_mappings, normalize
from soc_agent.models import (
    Alert,
    Approver,
    AutonomyLevel,
    IncidentVerdict,
    Role,
    RunMode,
    Verdict,
)
from soc_agent.models.identity import LOCAL_OPERATOR
from soc_agent.pipeline.closing import close_incident
from soc_agent.policy import PolicyConfig, PolicyInput, decide
from soc_agent.policy import Verdict as PolicyVerdict
from soc_agent.settings import Settings
from soc_agent.store.base import Store

__all__ = [
    "SUGGESTED_LEVELS",
    "LabelledAlert",
    "labelled_from_store",
    "read_labelled",
    "replay_labelled",
]

MAX_LABELLED = 1_000_000


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    reason: str = Field(default="", max_length=2000)
    closed_by: str | None = Field(default=None, max_length=256)
    closed_at: datetime | None = None
    alert: dict[str, Any]


@dataclass(frozen=True)
class LabelledAlert:
    """One past alert, normalised, with the verdict its incident was closed with (None:
    not closed), by whom and when (an hour after the alert when the history does not
    say), and the analysts' judgements of its incident's actions: {(action, target
    key): endorsed}, the last judgement of each standing."""

    alert: Alert
    verdict: Verdict | None
    reason: str
    closed_by: str = LOCAL_OPERATOR
    closed_at: datetime | None = None
    judged: Mapping[tuple[str, str], bool] = field(default_factory=dict)

    @property
    def closing_time(self) -> datetime:
        return self.closed_at or self.alert.created_at + timedelta(hours=1)


def read_labelled(path: Path, settings: Settings) -> list[LabelledAlert]:
    """The labelled alerts of a history file, in alert-time order; the first bad line is a
    ConfigError naming the file, the line and what is wrong (nothing is silently left out)."""
    mappings = load_mappings(settings.mappings)
    out: list[LabelledAlert] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the labelled history: {exc}", source=str(path)) from None
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        if len(out) >= MAX_LABELLED:
            raise ConfigError(f"more than {MAX_LABELLED} labelled alerts", source=str(path))
        try:
            line = _Line.model_validate(json.loads(text))
            alert = normalize(line.alert, mappings=mappings)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not JSON: {exc.msg}", source=str(path), line=number) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(first["msg"], source=str(path), line=number, key=where) from None
        except NormalizationError as exc:
            raise ConfigError(str(exc), source=str(path), line=number, key="alert") from None
        closer = line.closed_by or LOCAL_OPERATOR
        try:
            closer = Approver(name=closer, role=Role.ANALYST).name
        except ValidationError:
            raise ConfigError(
                "closed_by must be a namespaced identity (token:NAME, oidc:NAME)",
                source=str(path),
                line=number,
                key="closed_by",
            ) from None
        out.append(LabelledAlert(alert, line.verdict, line.reason, closer, line.closed_at))
    return sorted(out, key=lambda labelled: labelled.alert.created_at)


async def labelled_from_store(store: Store, *, limit: int = 100_000) -> list[LabelledAlert]:
    """Every alert of every incident closed with a verdict (its latest) or with an action
    an analyst judged, with those judgements; read-only."""
    closings: dict[str, IncidentVerdict] = {}
    offset, page = 0, 500
    while len(closings) < limit:
        batch = await store.list_verdicts(limit=page, offset=offset)
        if not batch:
            break
        offset += page
        for record in batch:  # newest first: the first seen is the incident's verdict
            closings.setdefault(record.incident_id, record)
    judged_incidents: set[str] = set()
    offset = 0
    while len(closings.keys() | judged_incidents) < limit:
        labels = await store.list_action_labels(limit=page, offset=offset)
        if not labels:
            break
        offset += page
        judged_incidents.update(label.incident_id for label in labels)
    out: list[LabelledAlert] = []
    for incident_id in sorted(closings.keys() | judged_incidents):
        judged = {
            (label.action, label.target): label.judgement.endorses
            for label in await store.action_labels(incident_id)  # oldest first: last stands
        }
        closing = closings.get(incident_id)
        for alert in await store.alerts_of(incident_id):
            if closing is None:
                out.append(LabelledAlert(alert, None, "", judged=judged))
                continue
            out.append(
                LabelledAlert(
                    alert,
                    closing.verdict,
                    closing.reason,
                    closing.closed_by.name,
                    closing.closed_at,
                    judged,
                )
            )
    return sorted(out, key=lambda labelled: labelled.alert.created_at)


def _sweep(inp: PolicyInput, policy: PolicyConfig, thresholds: Iterable[int]) -> dict[int, str]:
    """The disposition the live policy gives this input at each execute_at."""
    out: dict[int, str] = {}
    for threshold in thresholds:
        candidate = inp.candidate.model_copy(update={"execute_at": float(threshold)})
        out[threshold] = decide(replace(inp, candidate=candidate), policy).disposition.value
    return out


SUGGESTED_LEVELS = (AutonomyLevel.CONSULTANT, AutonomyLevel.APPROVER, AutonomyLevel.OBSERVER)


def _levels(inp: PolicyInput, policy: PolicyConfig) -> dict[int, str]:
    """The disposition the live policy gives this input with its action at each level."""
    action = inp.candidate.action
    out: dict[int, str] = {}
    for level in SUGGESTED_LEVELS:
        config = policy.model_copy(
            update={
                "agent_autonomy": AutonomyLevel.OBSERVER,
                "action_autonomy": {**policy.action_autonomy, action: level},
            }
        )
        out[int(level)] = decide(inp, config).disposition.value
    return out


def _outcome(
    inp: PolicyInput,
    verdict: PolicyVerdict,
    labelled: LabelledAlert,
    incident_id: str,
    policy: PolicyConfig,
    thresholds: Sequence[int],
) -> ActionOutcome:
    # Shadow mode skips everything and says what would have happened in `intended`.
    disposition = verdict.intended or verdict.disposition
    rule = verdict.intended_rule or verdict.rule
    return ActionOutcome(
        alert_id=labelled.alert.id,
        incident_id=incident_id,
        playbook=inp.playbook or "",
        action=inp.candidate.action,
        target=inp.candidate.target.key,
        score=inp.score,
        disposition=disposition.value,
        rule=rule.value,
        verdict=labelled.verdict,
        at_threshold=_sweep(inp, policy, thresholds),
        at_level=_levels(inp, policy),
        endorsed=labelled.judged.get((inp.candidate.action, inp.candidate.target.key)),
    )


async def replay_labelled(
    settings: Settings,
    labelled: Sequence[LabelledAlert],
    *,
    thresholds: Sequence[int] = tuple(DEFAULT_THRESHOLDS),
    clock: Callable[[], datetime] | None = None,
) -> list[ActionOutcome]:
    """Every action the playbooks put forward for the labelled alerts, as the policy of
    `settings` disposed of it (shadow mode, a temporary store), with the sweep."""
    from soc_agent.runtime.components import open_components

    live = settings.policy.model_copy(update={"mode": RunMode.LIVE})
    seen: list[tuple[PolicyInput, PolicyVerdict]] = []
    outcomes: list[ActionOutcome] = []
    with tempfile.TemporaryDirectory(prefix="soc-agent-calibrate-") as tmp:
        shadow = settings.model_copy(
            update={
                "store": Path(tmp) / "calibrate.db",
                "store_backend": "sqlite",
                "policy": settings.policy.model_copy(update={"mode": RunMode.SHADOW}),
                "audit_anchor_file": None,
            }
        )
        async with open_components(
            shadow, clock=clock, policy_observer=lambda i, v: seen.append((i, v))
        ) as components:
            for one in labelled:
                seen.clear()
                outcome = await components.agent.handle(one.alert)
                incident = outcome.incident.id
                if outcome.fresh:  # a redelivered alert decided nothing new
                    outcomes += [_outcome(i, v, one, incident, live, thresholds) for i, v in seen]
                if one.verdict is None:
                    continue  # judged actions only: no conclusion to remember
                # The analyst's conclusion becomes history for the alerts that follow.
                await close_incident(
                    components.store,
                    components.audit,
                    incident_id=incident,
                    verdict=one.verdict,
                    reason=one.reason or "labelled in the history",
                    closed_by=Approver(name=one.closed_by, role=Role.ANALYST),
                    at=one.closing_time,
                )
    return outcomes

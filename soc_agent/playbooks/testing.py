"""Playbook unit tests for responders: alert fixture + recorded results -> expected decision.

A case lives in `playbooks/tests/<playbook-name>/<case>.yaml`:

```yaml
description: Falcon blocks a known-bad binary on a finance workstation
alert: {...}                 # vendor JSON, or canonical Alert JSON (has "format" and "original")
format_hint: crowdstrike     # optional, passed to the normalizer
incident: {duplicate_count: 2}   # optional overrides of the single-alert incident
steps:                       # recordings, shaped like the connectors' outputs
  host_asset: {result: {type: host, value: ws-fin-042, found: true, criticality: high, ...}}
  hash_intel:                # a for_each step: one entry per item
    - {item: "<sha256>", result: {indicator: "<sha256>", verdict: malicious, ...}}
  related_events: {error: "event_store.search: timed out after 30s"}
assessment:                  # investigator: hybrid|agent only: the model's recorded answer
  {verdict: malicious, confidence: 0.9, narrative: "...", findings: []}
history:                     # how analysts closed earlier incidents (history.* reads these;
  - {verdict: false_positive, rule: "elastic:<rule id>", entity: "host:build-01", days_ago: 3}
expect:
  playbook: malware-on-endpoint          # defaults to the folder name
  score: 95                              # or score_min / score_max
  concluded: true
  evidence: {host_asset: ok}             # optional step statuses
  actions:
    - {action: isolate_host, target: {type: host, value: ws-fin-042}, threshold: execute}
    - action: quarantine_file
      target: {type: file_hash, value: "<sha256>"}
      disposition: executed                # checked only when a policy is given
      rule: threshold.execute
  no_actions:
    - {action: disable_user}
```
`threshold` is the band the score reaches on the action's own thresholds
(execute/propose/notify/below), checked always; `disposition` and `rule` are
what the policy decided and are checked only when a `decide` callable is given.
A playbook that uses the model reads `assessment` as `agent.*`; without one, its
`agent.*` rules are not evaluated, as after a model run that escalated.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from soc_agent.errors import PlaybookError
from soc_agent.models import (
    ActionCandidate,
    Alert,
    Approver,
    Entity,
    EvidenceStatus,
    Incident,
    IncidentVerdict,
    Investigation,
    Role,
    ScoreContribution,
    Verdict,
)
from soc_agent.models.assessment import Assessment, ModelReport
from soc_agent.models.identity import LOCAL_OPERATOR
from soc_agent.playbooks.context import build_context
from soc_agent.playbooks.history import HistoryView, entity_key, history_in_effect
from soc_agent.playbooks.loader import PlaybookValidationError, format_path, parse_yaml
from soc_agent.playbooks.recordings import RecordedCall, RecordedStepExecutor
from soc_agent.playbooks.runner import investigate
from soc_agent.playbooks.schema import Playbook
from soc_agent.playbooks.scoring import candidates, match_playbooks, score
from soc_agent.yaml_input import locate

__all__ = [
    "Case",
    "CaseResult",
    "Decide",
    "Expectation",
    "ExpectedAction",
    "Normalize",
    "OutputModel",
    "load_cases",
    "run_case",
    "threshold_band",
]

Normalize = Callable[[Any, str | None], Alert]
Decide = Callable[
    [
        Playbook,
        Alert,
        Incident,
        Investigation,
        float,
        list[ScoreContribution],
        list[ActionCandidate],
    ],
    Awaitable[list[tuple[ActionCandidate, str, str]]],
]
Band = Literal["execute", "propose", "notify", "below"]
# connector, capability -> the capability's output model (None: not known here)
OutputModel = Callable[[str, str], type[BaseModel] | None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExpectedTarget(_Strict):
    type: str = Field(description="entity type")
    value: str = Field(description="entity value (compared normalised)")


class ExpectedAction(_Strict):
    """An action the playbook must (actions) or must not (no_actions) put forward."""

    action: str
    target: ExpectedTarget | None = Field(default=None, description="omit to match any target")
    threshold: Band | None = Field(
        default=None, description="band reached on the action's thresholds"
    )
    disposition: str | None = Field(default=None, description="policy disposition (needs decide)")
    rule: str | None = Field(default=None, description="policy rule that decided (needs decide)")


class Expectation(_Strict):
    playbook: str | None = Field(default=None, description="defaults to the case's folder name")
    score: float | None = None
    score_min: float | None = None
    score_max: float | None = None
    concluded: bool | None = None
    evidence: dict[str, EvidenceStatus] = Field(default_factory=dict)
    actions: list[ExpectedAction] = Field(default_factory=list)
    no_actions: list[ExpectedAction] = Field(default_factory=list)


class PastVerdict(_Strict):
    """An earlier incident's closing, as `history.verdicts` and `last_verdict` read it."""

    verdict: Verdict
    rule: str = Field(min_length=1, max_length=512, description="that incident's alert.rule_key")
    entity: str = Field(min_length=3, max_length=2048, description="an entity key it named")
    days_ago: float = Field(ge=0, le=3650, description="how long before this case's alert")

    @field_validator("entity")
    @classmethod
    def _entity_key(cls, value: str) -> str:
        return entity_key(value)


class Case(_Strict):
    """One playbook test case, loaded from YAML."""

    description: str
    alert: dict[str, Any]
    format_hint: str | None = None
    incident: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, RecordedCall | list[RecordedCall]] = Field(default_factory=dict)
    assessment: Assessment | None = Field(
        default=None,
        description="the reasoning investigator's recorded answer (investigator: hybrid|agent)",
    )
    history: list[PastVerdict] = Field(
        default_factory=list,
        max_length=10_000,
        description="earlier closings; without any, the history is empty (not unknown)",
    )
    expect: Expectation
    _name: str = PrivateAttr(default="case")
    _folder: str | None = PrivateAttr(default=None)
    _file: str | None = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        return self._name

    @property
    def file(self) -> str | None:
        return self._file

    @property
    def expected_playbook(self) -> str | None:
        return self.expect.playbook or self._folder

    @classmethod
    def from_file(cls, path: Path, *, folder: str | None = None) -> Case:
        data, root = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        if not isinstance(data, dict):
            raise PlaybookError("a test case must be a YAML mapping", file=str(path), line=1)
        try:
            case = cls.model_validate(data)
        except ValidationError as exc:
            errors = []
            for err in exc.errors():
                loc = tuple(err["loc"])
                errors.append(
                    PlaybookError(
                        str(err["msg"]),
                        file=str(path),
                        line=locate(root, loc),
                        field=format_path(loc),
                    )
                )
            raise PlaybookValidationError(errors) from None
        case._folder = folder
        case._name = f"{folder}/{path.stem}" if folder else path.stem
        case._file = str(path)
        return case


def load_cases(directory: str | Path) -> list[Case]:
    """Cases under `directory/<playbook>/<case>.yaml` (or `directory/<case>.yaml`)."""
    root = Path(directory)
    errors: list[PlaybookError] = []
    cases: list[Case] = []
    direct = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    nested = sorted([*root.glob("*/*.yaml"), *root.glob("*/*.yml")])
    for path in itertools.chain(direct, nested):
        folder = root.name if path.parent == root else path.parent.name
        try:
            cases.append(Case.from_file(path, folder=folder))
        except PlaybookValidationError as exc:
            errors.extend(exc.errors)
        except PlaybookError as exc:
            errors.append(exc)
    if errors:
        raise PlaybookValidationError(errors)
    return cases


@dataclass
class CaseResult:
    """What a case found; `failures` says, one line each, what differed from `expect`."""

    name: str
    ok: bool
    failures: list[str] = field(default_factory=list)
    playbook: str | None = None
    score: float | None = None
    breakdown: list[ScoreContribution] = field(default_factory=list)
    candidates: list[ActionCandidate] = field(default_factory=list)
    dispositions: list[tuple[ActionCandidate, str, str]] = field(default_factory=list)
    investigation: Investigation | None = None
    diagnostics: list[str] = field(default_factory=list)


def threshold_band(candidate: ActionCandidate, value: float) -> Band:
    """Which of the action's own thresholds the score reaches (policy not applied)."""
    if candidate.execute_at is not None and value >= candidate.execute_at:
        return "execute"
    if candidate.propose_at is not None and value >= candidate.propose_at:
        return "propose"
    if candidate.notify_at is not None and value >= candidate.notify_at:
        return "notify"
    return "below"


async def run_case(
    case: Case,
    playbooks: Sequence[Playbook],
    *,
    normalize: Normalize,
    decide: Decide | None = None,
    output_model: OutputModel | None = None,
) -> CaseResult:
    """Run one case end to end through the real engine with recorded connector results;
    with `output_model`, each recorded result must be what its capability returns."""
    result = CaseResult(name=case.name, ok=False)
    fail = result.failures.append
    try:
        alert = _alert(case, normalize)
    except Exception as exc:  # any normaliser failure is the case's failure, reported
        fail(f"alert could not be normalised: {type(exc).__name__}: {exc}")
        return result
    try:
        incident = _incident(case, alert)
    except ValidationError as exc:
        fail(f"incident overrides are invalid: {exc.errors()[0]['msg']}")
        return result

    selection = match_playbooks(playbooks, alert, incident)
    result.diagnostics.extend(f"match {e.playbook}: {e.message}" for e in selection.errors)
    playbook = selection.playbook
    result.playbook = playbook.name if playbook else None
    expected = case.expected_playbook
    if playbook is None:
        fail(f"no playbook matched (expected {expected})")
        return result
    if expected and playbook.name != expected:
        fail(
            f"playbook {playbook.name} was selected, expected {expected} "
            f"(matched: {', '.join(selection.matched)})"
        )
        return result

    known = {s.id for s in playbook.steps} if playbook.investigator != "agent" else set()
    for step_id in sorted(set(case.steps) - known):
        fail(f"recording for {step_id!r}, which is not a step {playbook.name} runs")
    if case.assessment is not None and playbook.investigator == "steps":
        fail(f"an assessment is recorded, but {playbook.name} does not use the model")
    if output_model is not None:
        _check_recorded_results(case, playbook, output_model, fail)
    executor = RecordedStepExecutor({k: _dump(v) for k, v in case.steps.items()})
    investigation = Investigation(
        id=f"test:{case.name}",
        incident_id=incident.id,
        playbook=playbook.name,
        started_at=alert.created_at,
    )
    if playbook.investigator != "agent":  # the model plans alone: the steps do not run
        investigation = await investigate(
            playbook,
            alert,
            incident,
            executor,
            investigation_id=f"test:{case.name}",
            now=lambda: alert.created_at,
            monotonic=lambda: 0.0,
        )
    if playbook.investigator != "steps" and case.assessment is not None:
        report = ModelReport(
            model="recorded",
            prompt_version="recorded",
            prompt_sha256="",
            mode=playbook.investigator,
            assessment=case.assessment,
        )
        investigation = investigation.model_copy(update={"model_run": report})
    result.investigation = investigation
    unrecorded = sorted({c[0] for c in executor.calls} - executor.step_ids)
    for step_id in unrecorded:
        fail(
            f"step {step_id!r} ran but the case has no recording for it "
            "(record an `error:` to test a failure)"
        )

    ctx = build_context(alert, incident, investigation, playbook.settings)
    with history_in_effect(_recorded_history(case, alert)):
        value, breakdown = score(playbook, ctx)
        found = candidates(playbook, ctx, known=incident.entities, diagnostics=result.diagnostics)
    result.score, result.breakdown, result.candidates = value, breakdown, found
    if decide is not None:
        result.dispositions = await decide(
            playbook, alert, incident, investigation, value, breakdown, found
        )

    _check_score(case.expect, value, breakdown, fail)
    if case.expect.concluded is not None and investigation.concluded != case.expect.concluded:
        fail(
            f"concluded is {investigation.concluded} ({investigation.reason}), "
            f"expected {case.expect.concluded}"
        )
    statuses = {e.step: e for e in investigation.evidence}
    for step_id, status in case.expect.evidence.items():
        got = statuses.get(step_id)
        if got is None or got.status is not status:
            detail = f"{got.status.value} ({got.error})" if got else "no evidence"
            fail(f"step {step_id!r} ended {detail}, expected {status.value}")
    _check_actions(case.expect, value, found, result.dispositions, decide is not None, fail)
    result.ok = not result.failures
    return result


def _check_recorded_results(
    case: Case, playbook: Playbook, output_model: OutputModel, fail: Callable[[str], None]
) -> None:
    """A recording the real capability could never return would test a fiction."""
    for step in playbook.steps:
        recorded = case.steps.get(step.id)
        model = output_model(step.connector, step.capability)
        if recorded is None or model is None:
            continue
        entries = recorded if isinstance(recorded, list) else [recorded]
        for n, entry in enumerate(entries):
            if entry.result is None:
                continue
            try:
                model.model_validate(entry.result)
            except ValidationError as exc:
                error = exc.errors()[0]
                at = f"{step.id}[{n}]" if isinstance(recorded, list) else step.id
                fail(
                    f"recording for {at!r} is not what {step.connector}.{step.capability} "
                    f"returns: {format_path(tuple(error['loc']))}: {error['msg']}"
                )


def _alert(case: Case, normalize: Normalize) -> Alert:
    if "format" in case.alert and "original" in case.alert:
        return Alert.model_validate(case.alert)
    return normalize(case.alert, case.format_hint)


def _incident(case: Case, alert: Alert) -> Incident:
    base: dict[str, Any] = {
        "id": f"incident:{alert.id}",
        "title": alert.title,
        "severity": alert.severity,
        "alert_ids": [alert.id],
        "entities": alert.entities,
        "first_seen": alert.created_at,
        "last_seen": alert.created_at,
    }
    return Incident.model_validate({**base, **case.incident})


def _dump(value: RecordedCall | list[RecordedCall]) -> Any:
    if isinstance(value, list):
        return [v.model_dump(exclude_unset=True) for v in value]
    return value.model_dump(exclude_unset=True)


def _check_score(
    expect: Expectation,
    value: float,
    breakdown: list[ScoreContribution],
    fail: Callable[[str], None],
) -> None:
    summary = ", ".join(
        f"{c.rule}={c.points:g}" if c.evaluated else f"{c.rule}=n/a" for c in breakdown
    )
    if expect.score is not None and abs(value - expect.score) > 1e-6:
        fail(f"score is {value:g}, expected {expect.score:g} [{summary}]")
    if expect.score_min is not None and value < expect.score_min:
        fail(f"score is {value:g}, expected at least {expect.score_min:g} [{summary}]")
    if expect.score_max is not None and value > expect.score_max:
        fail(f"score is {value:g}, expected at most {expect.score_max:g} [{summary}]")


def _recorded_history(case: Case, alert: Alert) -> HistoryView:
    """The case's past closings as verdict records, each its own earlier incident."""
    analyst = Approver(name=LOCAL_OPERATOR, role=Role.ANALYST)
    records = [
        IncidentVerdict(
            id=f"case-verdict-{i}",
            incident_id=f"case-past-{i}",
            verdict=past.verdict,
            reason="recorded in the test case",
            closed_by=analyst,
            closed_at=alert.created_at - timedelta(days=past.days_ago),
            rules=[past.rule],
            entities=[past.entity],
        )
        for i, past in enumerate(case.history)
    ]
    return HistoryView(records, alert.created_at)


def _matches(want: ExpectedAction, candidate: ActionCandidate) -> bool:
    if candidate.action != want.action:
        return False
    if want.target is None:
        return True
    try:
        target = Entity.model_validate({"type": want.target.type, "value": want.target.value})
    except ValidationError:
        return False
    # Any name the target goes by: a case may name the person as the alert did.
    return target.key in candidate.target.keys


def _check_actions(
    expect: Expectation,
    value: float,
    found: list[ActionCandidate],
    dispositions: list[tuple[ActionCandidate, str, str]],
    decided: bool,
    fail: Callable[[str], None],
) -> None:
    listing = ", ".join(f"{c.action} {c.target.key}" for c in found) or "none"
    for want in expect.actions:
        label = want.action + (f" on {want.target.type}:{want.target.value}" if want.target else "")
        hits = [c for c in found if _matches(want, c)]
        if not hits:
            fail(f"expected {label}; candidates were: {listing}")
            continue
        candidate = hits[0]
        band = threshold_band(candidate, value)
        if want.threshold is not None and band != want.threshold:
            fail(f"{label}: score {value:g} reaches {band}, expected {want.threshold}")
        if decided and (want.disposition is not None or want.rule is not None):
            decision = next((d for d in dispositions if d[0] is candidate), None)
            if decision is None:
                fail(f"{label}: the policy returned no disposition")
                continue
            _, disposition, rule = decision
            if want.disposition is not None and str(disposition) != want.disposition:
                fail(f"{label}: disposition {disposition} ({rule}), expected {want.disposition}")
            if want.rule is not None and rule != want.rule:
                fail(f"{label}: decided by {rule}, expected {want.rule}")
    for unwanted in expect.no_actions:
        hits = [
            c
            for c in found
            if _matches(unwanted, c)
            and (unwanted.threshold is None or threshold_band(c, value) == unwanted.threshold)
        ]
        if hits:
            fail(
                f"did not expect {unwanted.action} but got it on "
                f"{', '.join(c.target.key for c in hits)}"
            )

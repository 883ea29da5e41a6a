"""The agent: one alert in, a correlated, investigated, decided and acted-on incident out.

Plain async Python with no transport: the embedded runner and the Kafka
worker both drive it. Correlations on related alerts (a shared fingerprint or
entity) take turns in arrival order, unrelated ones run at once (see the
correlator); investigations run concurrently, one at a time per incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from soc_agent.actions.executor import Executor
from soc_agent.audit.base import AuditSink, Later
from soc_agent.by_identity import ByIdentity
from soc_agent.correlate import CorrelationResult, Correlator, IdentityBook, Outcome
from soc_agent.errors import SocAgentError
from soc_agent.failpoints import failpoint
from soc_agent.gateway import Gateway
from soc_agent.models import (
    ActionRequest,
    ActionStatus,
    Alert,
    AuditEvent,
    AutonomyLevel,
    DeadLetter,
    Decision,
    Disposition,
    ExecutionStatus,
    Incident,
    Investigation,
    RunMode,
)
from soc_agent.models.ids import decision_id, investigation_id
from soc_agent.pipeline.controls import runtime_flags
from soc_agent.pipeline.deciding import GatewayFacts, PolicyObserver, decide_all
from soc_agent.pipeline.proposals import ProposalService
from soc_agent.pipeline.steps import GatewayStepExecutor
from soc_agent.playbooks import (
    Playbook,
    build_context,
    candidates,
    investigate,
    score,
    score_bound,
    select_playbook,
)
from soc_agent.playbooks.history import (
    MAX_ENTITY_NAMES,
    MAX_HISTORY_DAYS,
    HistoryView,
    history_in_effect,
    playbook_reads_history,
)
from soc_agent.policy import (
    RUNTIME_FLAGS,
    PolicyConfig,
    apply_runtime_flags,
    budget_for,
    demote_for_flags,
    demote_over_budget,
)
from soc_agent.store.base import Store
from soc_agent.store.bounded import keep
from soc_agent.store.locks import IncidentLocks

if TYPE_CHECKING:  # the model's libraries load only when a model is configured
    from soc_agent.pipeline.reasoning import Reasoner

__all__ = ["Agent", "AlertOutcome", "IncidentLocks", "StripedLocks"]

log = logging.getLogger(__name__)

# The runtime flags (kill switch, autonomy) a decision read are trusted for this long;
# an execution starting later reads them again, so engaging the kill switch binds every
# execution that starts a second after it, at no extra read for a quick decision.
FLAGS_FRESH = timedelta(seconds=1)
# Ledger statuses whose effect was performed: the executor reports them, performing nothing.
_PERFORMED = (ActionStatus.EXECUTED, ActionStatus.ROLLING_BACK, ActionStatus.ROLLED_BACK)


class StripedLocks:
    """In-process per-incident locks: a fixed set of locks, so memory stays bounded."""

    def __init__(self, stripes: int = 256) -> None:
        self._locks = [asyncio.Lock() for _ in range(stripes)]

    def __getitem__(self, incident_id: str) -> asyncio.Lock:
        digest = hashlib.sha256(incident_id.encode()).digest()
        return self._locks[int.from_bytes(digest[:4], "big") % len(self._locks)]


@dataclass(frozen=True)
class AlertOutcome:
    """What one alert became: its correlation, its incident and the decision that answers it."""

    alert: Alert
    correlation: Outcome
    incident: Incident
    decision: Decision  # a suppressed duplicate's is its incident's standing decision
    fresh: bool  # false when the decision was made earlier (redelivery)
    elapsed_ms: float = 0.0  # time in the pipeline, from correlation to the last action


class Agent:
    """The hub: correlates, investigates, decides and acts on one alert, in stage order.

    Every disposition comes from the policy; every connector call goes through the
    gateway; every step is idempotent, so handling an alert again is always safe.
    """

    def __init__(
        self,
        *,
        agent_id: str,
        store: Store,
        audit: AuditSink,
        gateway: Gateway,
        correlator: Correlator,
        executor: Executor,
        proposals: ProposalService,
        playbooks: Sequence[Playbook],
        policy: PolicyConfig,
        clock: Callable[[], datetime],
        notify_channel: str = "soc",
        incident_locks: IncidentLocks | None = None,
        reasoner: Reasoner | None = None,
        identities: IdentityBook | None = None,
        policy_observer: PolicyObserver | None = None,
    ) -> None:
        self.agent_id = agent_id
        self._identities = identities or IdentityBook()
        self._observe = policy_observer
        self._store = store
        self._audit = audit
        self._gateway = gateway
        self._correlator = correlator
        self._executor = executor
        self._proposals = proposals
        self._playbooks = list(playbooks)
        self._policy = policy
        self._clock = clock
        self._channel = notify_channel
        self._facts = GatewayFacts(gateway, store, clock=clock)
        self._incident_locks: IncidentLocks = incident_locks or StripedLocks()
        self._reasoner = reasoner
        # incident id -> the decision id of its alert set as this process last placed an
        # alert in it: what a decision on it reads first (see `_decide`).
        self._newest: OrderedDict[str, str] = OrderedDict()

    async def effective_policy(self) -> PolicyConfig:
        """The configured policy with the runtime flags (kill switch, autonomy) applied."""
        return apply_runtime_flags(self._policy, await runtime_flags(self._store))

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self._store.save_dead_letter(letter)
        await self._audit.append(
            AuditEvent(
                actor=self.agent_id,
                action="alert.dead_letter",
                subject=letter.id,
                reason=letter.reason,
                outcome="dead_letter",
                details={"source": letter.source, "bytes": len(letter.original)},
                at=self._clock(),
            )
        )

    def resolve(self, alert: Alert) -> Alert:
        """The alert with the entities the identity file knows under their canonical names."""
        return self._identities.resolve(alert)

    async def _history(
        self, playbook: Playbook, alert: Alert, incident: Incident
    ) -> HistoryView | None:
        """The verdicts naming the incident's entities, as of the alert's time; loaded
        only for a playbook that reads them (one store query)."""
        if not playbook_reads_history(playbook):
            return None
        names = list(dict.fromkeys(k for e in incident.entities for k in e.keys))
        since = alert.created_at - timedelta(days=MAX_HISTORY_DAYS)
        found = await self._store.verdicts_naming(names[:MAX_ENTITY_NAMES], since)
        return HistoryView(found, alert.created_at)

    async def handle(self, alert: Alert) -> AlertOutcome:
        """Correlate, investigate, decide and act on one alert; safe to call again for it."""
        started = time.perf_counter()
        outcome = await self._handle(self.resolve(alert))
        return replace(outcome, elapsed_ms=(time.perf_counter() - started) * 1000)

    async def _handle(self, alert: Alert) -> AlertOutcome:
        result = await self._correlator.correlate(alert)
        keep(self._newest, result.incident.id, _decision_id(result.incident))
        await self._store.save_alert(alert, result.incident.id)
        failpoint("alert.stored")
        # Entries nothing irreversible waits on are written with the next awaited one (at
        # the latest its decision's, which precedes the actions it decides) or before the
        # outcome is reported: one write where each took its own.
        written = [
            self._audit.append_later(
                AuditEvent(
                    actor=self.agent_id,
                    action="alert.correlate",
                    subject=alert.id,
                    reason=f"{result.outcome} in {result.incident.id}",
                    outcome=result.outcome,
                    evidence_ref=result.incident.id,
                    at=self._clock(),
                )
            )
        ]
        try:
            outcome = await self._respond(alert, result, written)
        except BaseException:
            with contextlib.suppress(Exception):  # the failure raised is the one to report
                await _all_written(written)
            raise
        await _all_written(written)
        return outcome

    async def _respond(
        self, alert: Alert, result: CorrelationResult, written: list[Later]
    ) -> AlertOutcome:
        incident = result.incident
        if result.outcome == "duplicate":
            standing = await self._store.latest_decision(incident.id)
            if standing is not None and not _unfinished(standing):
                return AlertOutcome(alert, "duplicate", incident, standing, fresh=False)
        async with self._incident_locks[incident.id]:
            if result.outcome == "grouped" and not result.new_information:
                state = await self._store.decision_state(_decision_id(incident), incident.id)
                made, previous = state.made, state.latest
                if previous is not None and not _unfinished(previous):
                    if made is not None:  # another alert's turn decided the same alert set
                        return AlertOutcome(alert, "grouped", incident, made, fresh=False)
                    decision = await self._reaffirm(previous, incident, alert)
                    return AlertOutcome(alert, "grouped", incident, decision, fresh=True)
            correlation = result.outcome
            if correlation in ("redelivered", "duplicate"):
                previous = await self._store.latest_decision(incident.id)
                # A decision that covers this alert answers it, and the incident's decision
                # answers a suppressed duplicate. Otherwise the alert's first delivery (or,
                # for a duplicate, the first delivery of the alert it repeats) was never
                # decided (still queued elsewhere, or it crashed): decide now.
                answered = alert.id in (previous.alert_ids if previous else ())
                suppressed = alert.id not in incident.alert_ids
                if suppressed:
                    # A duplicate delivered again (its first answer was not committed) is
                    # answered as its first delivery was, not as a redelivered member.
                    correlation = "duplicate"
                if previous is not None and (answered or suppressed):
                    if _unfinished(previous):  # crashed between deciding and acting
                        previous = await self._act(previous, incident, alert)
                    return AlertOutcome(alert, correlation, incident, previous, fresh=False)
            decision, fresh = await self._decide(alert, result, written)
        return AlertOutcome(alert, correlation, incident, decision, fresh=fresh)

    async def _decide(
        self, alert: Alert, result: CorrelationResult, written: list[Later]
    ) -> tuple[Decision, bool]:
        """The incident's decision for its current alerts, and whether it is new."""
        # The incident as it is now (another alert may have grown it since correlation),
        # the decision of its alerts if made, its latest and the runtime flags: one read.
        # The alert set guessed is the newest this process placed (an alert correlated
        # while this one waited for the incident's turn grew it).
        guess = self._newest.get(result.incident.id) or _decision_id(result.incident)
        read_at = self._clock()
        state = await self._store.decision_state(
            guess, result.incident.id, with_incident=True, flags=RUNTIME_FLAGS, standing=True
        )
        incident = state.incident or result.incident
        dec_id = _decision_id(incident)
        inv_id = investigation_id(dec_id)
        existing = state.made if dec_id == guess else await self._store.get_decision(dec_id)
        previous = state.latest
        if existing is not None:  # the same alerts were decided before
            if _unfinished(existing):
                return await self._act(existing, incident, alert), False
            return existing, False
        policy = apply_runtime_flags(self._policy, state.flags)
        if alert.id not in incident.alert_ids:
            # A suppressed duplicate decides for the alert it repeats, so the decision is
            # the one that alert's own (crashed or queued) turn makes: same id, same trigger.
            alert = await self._store.get_alert(incident.alert_ids[-1]) or alert
        playbook, alert = await self._select(alert, incident, previous)
        now = self._clock()
        if playbook is None:
            decision = Decision(
                id=dec_id,
                incident_id=incident.id,
                alert_ids=list(incident.alert_ids),
                investigation_id=None,
                playbook=None,
                trigger_alert_id=alert.id,
                score=0.0,
                mode=policy.mode,
                summary="no playbook matched; recorded for an analyst",
                created_at=now,
            )
            await self._store.save_decision(decision)
            await self._audit_decision(decision)
            return decision, True
        try:
            investigation = await self._investigate(playbook, alert, incident, inv_id)
            failpoint("evidence.gathered")
            if self._clock() - read_at > FLAGS_FRESH:  # a long investigation (a model's, say)
                policy, read_at = await self.effective_policy(), self._clock()
            ctx = build_context(alert, incident, investigation, playbook.settings)
            with history_in_effect(await self._history(playbook, alert, incident)):
                most = self._policy.model.max_points
                total, breakdown = score(playbook, ctx, max_model_points=most)
                requests = await decide_all(
                    candidates(playbook, ctx, known=incident.entities),
                    self._facts,
                    breakdown=breakdown,
                    score_bound=score_bound(playbook, total, breakdown),
                    incident_id=incident.id,
                    playbook=playbook.name,
                    playbook_autonomy=_level(playbook.autonomy),
                    score=total,
                    investigation=investigation,
                    policy=policy,
                    injection=(
                        tuple(investigation.model_run.injection) if investigation.model_run else ()
                    ),
                    observe=self._observe,
                )
        finally:
            # The steps' read-only queries and the policy's look-ups of the targets, as one
            # entry written with the decision's (or before the outcome, if this failed).
            if (summary := self._gateway.audit_query_summary(inv_id)) is not None:
                written.append(summary)
        decision = Decision(
            id=dec_id,
            incident_id=incident.id,
            alert_ids=list(incident.alert_ids),
            investigation_id=investigation.id,
            playbook=playbook.name,
            playbook_version=str(playbook.version),
            trigger_alert_id=alert.id,
            score=total,
            breakdown=breakdown,
            actions=requests,
            concluded=investigation.concluded,
            mode=policy.mode,
            summary=_summary(playbook.name, total, requests, investigation),
            created_at=now,
            assessment=investigation.model_run.assessment if investigation.model_run else None,
            model_escalation=investigation.model_run.escalation
            if investigation.model_run
            else None,
        )
        await self._store.save_decision(decision, investigation=investigation)
        await self._audit_decision(decision)
        failpoint("decision.stored")
        return await self._act(decision, incident, alert, (policy, read_at)), True

    async def _investigate(
        self,
        playbook: Playbook,
        alert: Alert,
        incident: Incident,
        inv_id: str,
    ) -> Investigation:
        """The playbook's steps (unless the model plans alone), then the model if it runs."""
        reasoner = self._reasoner
        if reasoner is not None and reasoner.mode(playbook) == "agent":
            now = self._clock()
            investigation = Investigation(
                id=inv_id,
                incident_id=incident.id,
                playbook=playbook.name,
                started_at=now,
                finished_at=now,
            )
        else:
            investigation = await investigate(
                playbook,
                alert,
                incident,
                GatewayStepExecutor(self._gateway, ref=inv_id),
                investigation_id=inv_id,
                now=self._clock,
            )
        if reasoner is None:
            return investigation
        return await reasoner.extend(playbook, alert, investigation)

    async def _reaffirm(self, previous: Decision, incident: Incident, alert: Alert) -> Decision:
        """An alert that adds nothing new to an incident: the standing decision now covers it.

        No new investigation is run; the decision is re-issued with the incident's
        alert ids so every alert is accounted for by a decision. (The caller checked
        that no decision with that id was made: if another alert's turn decided the same
        alert set, that one stands: one id, one content.)
        """
        decision = previous.model_copy(
            update={
                "id": _decision_id(incident),
                "alert_ids": list(incident.alert_ids),
                "summary": f"{previous.summary}; unchanged: {alert.id} adds no new entity, "
                f"rule or severity (decision {previous.id} stands)",
                "created_at": self._clock(),
            }
        )
        await self._store.save_decision(decision)
        await self._audit_decision(decision)
        return decision

    async def _select(
        self, alert: Alert, incident: Incident, previous: Decision | None
    ) -> tuple[Playbook | None, Alert]:
        """The playbook for this alert, unless the incident already called for a stronger one.

        A low-severity alert joining an incident must not hand the incident to a
        weaker playbook than the one an earlier alert of it called for; the
        earlier decision's playbook then runs again, on that earlier alert.
        """
        playbook = select_playbook(self._playbooks, alert, incident)
        if previous is None or previous.playbook is None or previous.trigger_alert_id is None:
            return playbook, alert
        earlier = next((p for p in self._playbooks if p.name == previous.playbook), None)
        if earlier is None or (playbook is not None and playbook.priority >= earlier.priority):
            return playbook, alert
        trigger = await self._store.get_alert(previous.trigger_alert_id)
        return (earlier, trigger) if trigger is not None else (playbook, alert)

    async def _act(
        self,
        decision: Decision,
        incident: Incident,
        alert: Alert,
        made_under: tuple[PolicyConfig, datetime] | None = None,
    ) -> Decision:
        """Carry out the dispositions; idempotent, so a crashed run can simply redo it.
        `made_under` is the policy the decision was made under and when its flags were
        read, when it was made just now; an execution obeys the flags as they stand."""
        if made_under is None:
            made_under = await self.effective_policy(), self._clock()
        policy, read_at = made_under
        acted: list[ActionRequest] = []
        for req in decision.actions:
            outcome: str | None = None
            execution: ExecutionStatus | None = None
            queued: str | None = None
            criticality = str(req.blast_radius.get("criticality", "medium"))
            if req.disposition is Disposition.EXECUTED:
                if self._clock() - read_at > FLAGS_FRESH:
                    policy, read_at = await self.effective_policy(), self._clock()
                req = await self._unless_flags_forbid(req, decision, policy)
            if req.disposition is Disposition.EXECUTED:
                budget = budget_for(req.action, policy)
                result = await self._executor.execute(
                    req,
                    incident.id,
                    budget=(budget.max_executions, timedelta(seconds=budget.window_seconds)),
                )
                outcome, execution = f"{result.status}: {result.detail}", result.status
                if result.status is ExecutionStatus.OVER_BUDGET:
                    # Another decision used the budget first: a human decides this one.
                    req, execution = demote_over_budget(req, result.detail), None
                    proposal, created = await self._proposals.create(
                        decision, req, incident.severity, criticality, policy
                    )
                    queued = proposal.id
                    outcome = f"queued as {proposal.id}" if created else "already queued"
                elif req.review_sample:
                    proposal, _ = await self._proposals.create(
                        decision, req, incident.severity, criticality, policy, review=True
                    )
                    queued = proposal.id
            elif req.disposition is Disposition.PROPOSED:
                proposal, created = await self._proposals.create(
                    decision, req, incident.severity, criticality, policy
                )
                queued = proposal.id
                outcome = f"queued as {proposal.id}" if created else "already queued"
            acted.append(
                req.model_copy(
                    update={"outcome": outcome, "execution": execution, "proposal_id": queued}
                )
            )
        if acted != decision.actions:  # else it is stored as it stands
            decision = decision.model_copy(update={"actions": acted})
            await self._store.save_decision(decision)
        await self._notify(decision, incident, alert)
        failpoint("actions.done")
        return decision

    async def _unless_flags_forbid(
        self, req: ActionRequest, decision: Decision, policy: PolicyConfig
    ) -> ActionRequest:
        """`req`, or what the runtime flags in `policy` make of it if it is still due."""
        demoted = demote_for_flags(req, policy)
        if demoted is None:
            return req
        record = await self._store.get_action(req.idempotency_key)
        if record is not None and record.status in _PERFORMED:
            return req  # carried out before the flag (then a crash): reported, not repeated
        await self._audit.append(
            AuditEvent(
                actor=self.agent_id,
                action="action.demote",
                subject=req.idempotency_key,
                reason=f"{demoted.rule}: {demoted.reason}",
                outcome=demoted.disposition.value,
                evidence_ref=decision.id,
                details={"action": req.action, "target": req.target.key},
                at=self._clock(),
            )
        )
        return demoted

    async def _notify(self, decision: Decision, incident: Incident, alert: Alert) -> None:
        """One notification per decision that needs a human to know or act.

        A containment that was decided but failed to execute is escalated: the
        analyst must know that the threat is not contained.
        """
        wanted = {Disposition.NOTIFIED, Disposition.ESCALATED, Disposition.PROPOSED}
        failed = [a for a in decision.actions if a.execution is ExecutionStatus.FAILED]
        needed = any(a.disposition in wanted for a in decision.actions)
        if decision.mode is not RunMode.LIVE or not (failed or needed or not decision.concluded):
            return
        if "notifier" not in self._gateway.connectors:
            return
        lines = [
            f"- {a.action} {a.target.value}: {a.disposition.value} ({a.rule})"
            for a in decision.actions
        ]
        lines += [f"- FAILED {a.action} {a.target.value}: {a.outcome}" for a in failed]
        escalated = (
            bool(failed)
            or not decision.concluded
            or any(a.disposition is Disposition.ESCALATED for a in decision.actions)
        )
        try:
            await self._gateway.call(
                "notifier",
                "notify",
                {
                    "channel": self._channel,
                    "subject": f"[{'ESCALATED' if escalated else incident.severity.value}] "
                    f"{incident.title}"[:1000],
                    "body": f"{decision.summary}\n" + "\n".join(lines),
                    "severity": "high" if escalated else incident.severity.value,
                },
                reason="decision notification",
                ref=decision.id,
            )
        except SocAgentError as exc:
            log.warning("notification for %s failed: %s", decision.id, exc)

    async def _audit_decision(self, decision: Decision) -> None:
        await self._audit.append(
            AuditEvent(
                actor=self.agent_id,
                action="decision.make",
                subject=decision.id,
                reason=decision.summary,
                outcome=f"score {decision.score:g}",
                evidence_ref=decision.investigation_id,
                details={
                    "incident_id": decision.incident_id,
                    "playbook": decision.playbook,
                    "mode": decision.mode.value,
                    "actions": [
                        {
                            "action": a.action,
                            "target": a.target.key,
                            "disposition": a.disposition.value,
                            "rule": a.rule,
                        }
                        for a in decision.actions
                    ],
                },
                at=self._clock(),
            )
        )


async def _all_written(written: list[Later]) -> None:
    """Every queued entry on disk (written with a batch, or now), or the first failure."""
    for later in written:
        await later


def _unfinished(decision: Decision) -> bool:
    """Actions not yet carried out, or whose attempt may not have completed (retry them)."""
    todo = (Disposition.EXECUTED, Disposition.PROPOSED)
    retry = (ExecutionStatus.IN_PROGRESS, ExecutionStatus.FAILED)
    return any(
        a.disposition in todo and (a.outcome is None or a.execution in retry)
        for a in decision.actions
    )


# Asked several times per alert of the same (shared, never mutated) incident model; hashing
# its sorted alert ids grew with the incident.
_decision_id: ByIdentity[Incident, str] = ByIdentity(
    lambda incident: decision_id(incident.id, incident.alert_ids), size=64
)


def _level(value: object) -> AutonomyLevel | None:
    return AutonomyLevel(value) if isinstance(value, int) else None


def _summary(
    playbook: str, total: float, requests: list[ActionRequest], investigation: Investigation
) -> str:
    parts = [f"playbook {playbook} scored {total:g}"]
    report = investigation.model_run
    if report is not None and report.assessment is not None:
        answer = report.assessment
        parts.append(f"the model assessed {answer.verdict.value} ({answer.confidence:g})")
    if report is not None and report.injection:
        parts.append(f"{len(report.injection)} suspected injection(s) in what the model read")
    if not investigation.concluded:
        parts.append(f"investigation incomplete ({investigation.reason})")
    failed = [e.step for e in investigation.evidence if e.status.value in ("error", "denied")]
    if failed:
        parts.append(f"failed steps: {', '.join(failed)}")
    counts: dict[str, int] = {}
    for r in requests:
        counts[r.disposition.value] = counts.get(r.disposition.value, 0) + 1
    if counts:
        parts.append(", ".join(f"{n} {d}" for d, n in sorted(counts.items())))
    return "; ".join(parts)

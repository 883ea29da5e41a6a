"""The reasoning investigator in the pipeline: after (or instead of) a playbook's steps.

`Reasoner.extend` runs the model under its own identity and gateway, adds its
lookups to the investigation's evidence and its report (assessment or
escalation, suspected injections, usage, transcript) to the investigation.
A run that did not end in an assessment leaves the investigation unconcluded,
so the policy escalates whatever it would have proposed or executed; rules that
read `agent.*` cannot be evaluated and escalate through the score bound.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal

from pydantic_ai.models import Model

from soc_agent.audit.base import AuditSink
from soc_agent.gateway import Gateway
from soc_agent.investigator.injection import detect_injection
from soc_agent.investigator.loop import PROMPT_VERSION, run_investigator
from soc_agent.investigator.models import AuditedModel
from soc_agent.investigator.tools import LookupTool
from soc_agent.models import Alert, AuditEvent, Investigation
from soc_agent.models.assessment import ModelReport
from soc_agent.playbooks import Playbook
from soc_agent.settings.llm import LlmConfig

__all__ = ["TRIAGE_DEFAULT", "Reasoner"]

# The shipped catch-all: with a model configured, alerts no playbook anticipated get a
# real investigation instead of enrichment alone.
TRIAGE_DEFAULT = "triage-default"

Mode = Literal["steps", "agent", "hybrid"]


class Reasoner:
    """Runs the reasoning investigator for playbooks that ask for it."""

    def __init__(
        self,
        model: Model,
        *,
        model_name: str,
        config: LlmConfig,
        gateway: Gateway,
        tools: list[LookupTool],
        audit: AuditSink,
        clock: Callable[[], datetime],
        aclose: Callable[[], Awaitable[None]] | None = None,
        every_playbook: Literal["agent", "hybrid"] | None = None,
    ) -> None:
        self._model = model
        self._aclose = aclose
        self._every_playbook = every_playbook
        self._model_name = model_name
        self._config = config
        self._gateway = gateway
        self._tools = tools
        self._audit = audit
        self._clock = clock

    async def aclose(self) -> None:
        """Close the model's HTTP client (a model passed in is its owner's to close)."""
        if self._aclose is not None:
            await self._aclose()

    @property
    def tools(self) -> list[LookupTool]:
        return list(self._tools)

    def mode(self, playbook: Playbook) -> Mode:
        if self._every_playbook is not None:
            return self._every_playbook
        if playbook.investigator == "steps" and playbook.name == TRIAGE_DEFAULT:
            return "hybrid"
        return playbook.investigator

    async def extend(
        self, playbook: Playbook, alert: Alert, investigation: Investigation
    ) -> Investigation:
        """The investigation with the model's lookups and report added."""
        mode = self.mode(playbook)
        if mode == "steps":
            return investigation
        ref = investigation.id
        started = time.monotonic()
        seen = detect_injection(alert, investigation.evidence)
        run = await run_investigator(
            AuditedModel(
                self._model,
                audit=self._audit,
                actor=self._config.identity,
                ref=ref,
                model=self._model_name,
                clock=self._clock,
            ),
            gateway=self._gateway,
            tools=self._tools,
            alert=alert,
            evidence=investigation.evidence,
            allowed_actions=sorted({rule.action for rule in playbook.respond}),
            budget=self._config.budget,
            identity=self._config.identity,
            incident_ref=ref,
            redact=self._config.redact_fields,
            temperature=self._config.temperature,
            clock=self._clock,
        )
        injection = seen + detect_injection(None, run.evidence)
        report = ModelReport(
            model=self._model_name,
            prompt_version=PROMPT_VERSION,
            prompt_sha256=run.prompt_sha256,
            mode=mode,
            assessment=run.assessment,
            escalation=run.escalation,
            injection=injection,
            usage=run.usage,
            dropped_findings=run.dropped_findings,
            dropped_actions=run.dropped_actions,
            refused_calls=run.refused_calls,
            elapsed_ms=round((time.monotonic() - started) * 1000, 1),
            transcript=run.transcript,
        )
        await self._audit_run(report, ref)
        concluded = investigation.concluded and run.escalation is None
        reason = investigation.reason
        if run.escalation is not None:
            reason = f"the reasoning investigator escalated: {run.escalation}"
        return investigation.model_copy(
            update={
                "evidence": [*investigation.evidence, *run.evidence],
                "steps_used": investigation.steps_used + len(run.evidence),
                "model_run": report,
                "concluded": concluded,
                "reason": reason,
                "finished_at": self._clock(),
            }
        )

    async def _audit_run(self, report: ModelReport, ref: str) -> None:
        answer = report.assessment
        if report.escalation is not None:
            outcome, reason = f"escalated: {report.escalation}", report.escalation
        elif answer is not None:
            outcome = f"assessed {answer.verdict.value} ({answer.confidence:g})"
            reason = answer.narrative[:300]
        else:  # unreachable: a run ends in an answer or an escalation
            outcome = reason = "no answer"
        await self._audit.append(
            AuditEvent(
                actor=self._config.identity,
                action="model.investigate",
                subject=ref,
                reason=reason,
                outcome=outcome,
                evidence_ref=ref,
                details={
                    "model": report.model,
                    "prompt_version": report.prompt_version,
                    "prompt_sha256": report.prompt_sha256,
                    "usage": report.usage,
                    "injection": report.injection[:20],
                    "dropped_findings": report.dropped_findings,
                    "dropped_actions": report.dropped_actions,
                    "refused_calls": report.refused_calls,
                    "elapsed_ms": report.elapsed_ms,
                },
                at=self._clock(),
            )
        )

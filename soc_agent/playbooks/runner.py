"""The investigation runner: a playbook's steps as a DAG, under a budget, into evidence.

Independent steps run concurrently (bounded); a step runs once everything it
`needs` has succeeded. Every step ends with exactly one Evidence record, in
playbook order, whatever happened: ok, error, denied, skipped or not run.
Nothing here raises for a failed step; failures are evidence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from soc_agent.errors import ConnectorError, ExpressionError, ScopeDeniedError
from soc_agent.models import Alert, Evidence, EvidenceStatus, Incident, Investigation
from soc_agent.playbooks.context import alert_context, incident_context, step_context
from soc_agent.playbooks.expressions import evaluate, evaluate_bool
from soc_agent.playbooks.schema import Playbook, Step
from soc_agent.playbooks.templates import ItemTemplates, render

__all__ = [
    "DEFAULT_CONCURRENCY",
    "StepExecutor",
    "investigate",
]

DEFAULT_CONCURRENCY = 8


class StepExecutor(Protocol):
    """Runs one connector query; the gateway in production, recordings in tests."""

    async def run_step(
        self, step_id: str, connector: str, capability: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        """Return the capability's output; raise ConnectorError (ScopeDeniedError if denied)."""
        ...


async def investigate(
    playbook: Playbook,
    alert: Alert,
    incident: Incident,
    executor: StepExecutor,
    *,
    investigation_id: str,
    now: Callable[[], datetime],
    monotonic: Callable[[], float] = time.monotonic,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Investigation:
    """Run the playbook's steps for an incident and return the investigation.

    When the step or time budget runs out, the steps left get NOT_RUN evidence
    and the investigation has `concluded=False` with the reason: the policy
    escalates such an investigation instead of deciding on partial evidence.
    """
    run = _Run(playbook, alert, incident, executor, now, monotonic, max(1, concurrency))
    return await run.run(investigation_id)


@dataclass
class _Started:
    at: datetime
    query: dict[str, Any]


@dataclass
class _Run:
    playbook: Playbook
    alert: Alert
    incident: Incident
    executor: StepExecutor
    now: Callable[[], datetime]
    monotonic: Callable[[], float]
    concurrency: int
    evidence: dict[str, Evidence] = field(default_factory=dict)
    started: dict[str, _Started] = field(default_factory=dict)
    overflow: dict[str, int] = field(default_factory=dict)  # step -> for_each items cut
    running: dict[asyncio.Task[Evidence], Step] = field(default_factory=dict)
    pending: list[Step] = field(default_factory=list)
    steps_used: int = 0
    exhausted: str | None = None
    deadline: float = 0.0
    base: dict[str, Any] = field(default_factory=dict)
    semaphore: asyncio.Semaphore | None = None

    async def run(self, investigation_id: str) -> Investigation:
        started_at, start = self.now(), self.monotonic()
        self.deadline = start + self.playbook.budget.max_seconds
        self.semaphore = asyncio.Semaphore(self.concurrency)
        self.base = {
            "alert": alert_context(self.alert),
            "incident": incident_context(self.incident),
            "settings": self.playbook.settings,
        }
        self.pending = list(self.playbook.steps)
        try:
            while True:
                self._schedule()
                if not self.running:
                    break
                timeout = max(0.0, self.deadline - self.monotonic())
                done, _ = await asyncio.wait(
                    self.running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    step = self.running.pop(task)
                    self.evidence[step.id] = task.result()
                work_left = bool(self.running or self.pending)
                if work_left and (not done or self.monotonic() >= self.deadline):
                    self._exhaust(
                        f"time budget exhausted: {self.playbook.budget.max_seconds:g}s elapsed "
                        "before every step finished"
                    )
                    await self._cancel_running()
        finally:
            if self.running:  # the investigation itself was cancelled
                await self._cancel_running()
        for step in self.pending:  # only left behind if the loop was interrupted
            self.evidence.setdefault(step.id, self._not_run(step, self.exhausted or "not run"))
        return Investigation(
            id=investigation_id,
            incident_id=self.incident.id,
            playbook=self.playbook.name,
            evidence=[self.evidence[s.id] for s in self.playbook.steps if s.id in self.evidence],
            steps_used=self.steps_used,
            elapsed_ms=round((self.monotonic() - start) * 1000, 3),
            concluded=self.exhausted is None,
            reason=self.exhausted,
            started_at=started_at,
            finished_at=self.now(),
        )

    def _exhaust(self, reason: str) -> None:
        if self.exhausted is None:
            self.exhausted = reason

    async def _cancel_running(self) -> None:
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            step = self.running.pop(task)
            if not task.cancelled() and task.exception() is None:
                self.evidence[step.id] = task.result()
            else:
                self.evidence[step.id] = self._not_run(
                    step, f"cancelled: {self.exhausted or 'investigation cancelled'}"
                )

    # -- scheduling ----------------------------------------------------------------------

    def _schedule(self) -> None:
        progressed = True
        while progressed:
            progressed = False
            for step in list(self.pending):
                if any(n not in self.evidence for n in step.needs):
                    continue
                self.pending.remove(step)
                progressed = True
                self._start(step)

    def _start(self, step: Step) -> None:
        started_at = self.now()
        if self.exhausted:
            self.evidence[step.id] = self._not_run(step, f"not run: {self.exhausted}")
            return
        for need in step.needs:
            status = self.evidence[need].status
            if status is EvidenceStatus.NOT_RUN:
                self.evidence[step.id] = self._not_run(
                    step, f"not run: needs {need!r}, which did not run"
                )
                return
            if status is not EvidenceStatus.OK:
                self.evidence[step.id] = self._record(
                    step,
                    EvidenceStatus.SKIPPED,
                    started_at,
                    error=f"skipped: needs {need!r}, which ended {status.value}",
                )
                return
        context = {**self.base, "steps": self._steps_for(step)}
        try:
            if step.when is not None and not evaluate_bool(step.when, context):
                self.evidence[step.id] = self._record(
                    step,
                    EvidenceStatus.SKIPPED,
                    started_at,
                    error=f"skipped: `when` is false ({step.when})",
                )
                return
            calls = self._calls(step, context)
        except ExpressionError as exc:
            self.evidence[step.id] = self._record(
                step, EvidenceStatus.ERROR, started_at, error=str(exc)
            )
            return
        if step.for_each is None and calls[0].error is not None:
            self.evidence[step.id] = self._record(
                step, EvidenceStatus.ERROR, started_at, error=calls[0].error
            )
            return
        cost = sum(1 for c in calls if c.error is None)
        budget = self.playbook.budget
        if self.monotonic() >= self.deadline:
            self._exhaust(f"time budget exhausted: {budget.max_seconds:g}s elapsed")
        elif self.steps_used + cost > budget.max_steps:
            self._exhaust(
                f"step budget exhausted: {budget.max_steps} calls allowed, {self.steps_used} used, "
                f"step {step.id!r} needs {cost} more"
            )
        if self.exhausted:
            self.evidence[step.id] = self._not_run(step, f"not run: {self.exhausted}")
            return
        self.steps_used += cost
        query = (
            calls[0].args
            if step.for_each is None
            else {"for_each": [c.args if c.error is None else None for c in calls]}
        )
        self.started[step.id] = _Started(started_at, query)
        task = asyncio.create_task(self._execute(step, calls), name=f"step:{step.id}")
        self.running[task] = step

    def _steps_for(self, step: Step) -> dict[str, Any]:
        # A step reads the steps it needs (directly or transitively); all of them are done.
        seen: dict[str, Any] = {}
        todo = list(step.needs)
        while todo:
            need = todo.pop()
            if need in seen or need not in self.evidence:
                continue
            seen[need] = step_context(self.evidence[need])
            todo.extend(self.playbook.step(need).needs)
        return seen

    def _calls(self, step: Step, context: dict[str, Any]) -> list[_Call]:
        if step.for_each is None:
            try:
                return [_Call(None, render(step.args, context))]
            except ExpressionError as exc:
                return [_Call(None, {}, f"args: {exc}")]
        items = evaluate(step.for_each, context)
        if not isinstance(items, list):
            raise ExpressionError(
                f"for_each must yield a list, got {type(items).__name__} ({step.for_each})"
            )
        if len(items) > step.max_items:
            # Alert content decides how many items there are: look up a bounded number
            # and record the rest, which makes the rules reading this step unevaluated.
            self.overflow[step.id] = len(items) - step.max_items
            items = items[: step.max_items]
        # The args' shared part is rendered once for the step, not once per item.
        args = ItemTemplates(step.args, context)
        return [_render_item(args, item) for item in items]

    # -- execution -----------------------------------------------------------------------

    async def _execute(self, step: Step, calls: list[_Call]) -> Evidence:
        info = self.started[step.id]
        t0 = self.monotonic()
        if step.for_each is None:
            status, result, error = await self._invoke(step, calls[0].args)
            return self._record(
                step,
                status,
                info.at,
                query=info.query,
                result=result,
                error=error,
                latency_ms=(self.monotonic() - t0) * 1000,
            )
        entries = await asyncio.gather(*(self._item(step, call) for call in calls))
        status, error = _aggregate(entries)
        return self._record(
            step,
            status,
            info.at,
            query=info.query,
            result=entries,
            error=error,
            latency_ms=(self.monotonic() - t0) * 1000,
            overflow=self.overflow.get(step.id, 0),
        )

    async def _item(self, step: Step, call: _Call) -> dict[str, Any]:
        status: EvidenceStatus
        error: str | None
        if call.error is not None:
            status, result, error = EvidenceStatus.ERROR, None, call.error
        else:
            status, result, error = await self._invoke(step, call.args)
        return {
            "item": call.item,
            "ok": status is EvidenceStatus.OK,
            "status": status.value,
            "result": result,
            "error": error,
        }

    async def _invoke(
        self, step: Step, args: dict[str, Any]
    ) -> tuple[EvidenceStatus, Any, str | None]:
        assert self.semaphore is not None
        async with self.semaphore:
            try:
                result = await self.executor.run_step(
                    step.id, step.connector, step.capability, args
                )
            except ScopeDeniedError as exc:
                return EvidenceStatus.DENIED, None, str(exc)
            except ConnectorError as exc:
                return EvidenceStatus.ERROR, None, str(exc)
            except Exception as exc:  # a broken executor is evidence, never a crash
                return EvidenceStatus.ERROR, None, f"{type(exc).__name__}: {exc}"
        if not isinstance(result, dict):
            return (
                EvidenceStatus.ERROR,
                None,
                f"{step.connector}.{step.capability} returned "
                f"{type(result).__name__}, not an object",
            )
        return EvidenceStatus.OK, result, None

    def _record(
        self,
        step: Step,
        status: EvidenceStatus,
        at: datetime,
        *,
        query: dict[str, Any] | None = None,
        result: Any = None,
        error: str | None = None,
        latency_ms: float = 0.0,
        overflow: int = 0,
    ) -> Evidence:
        return Evidence(
            step=step.id,
            connector=step.connector,
            capability=step.capability,
            query=query or {},
            status=status,
            result=result,
            error=error,
            latency_ms=round(max(latency_ms, 0.0), 3),
            started_at=at,
            overflow=overflow,
        )

    def _not_run(self, step: Step, reason: str) -> Evidence:
        info = self.started.get(step.id)
        return self._record(
            step,
            EvidenceStatus.NOT_RUN,
            info.at if info else self.now(),
            query=info.query if info else None,
            error=reason,
        )


@dataclass
class _Call:
    item: Any
    args: dict[str, Any]
    error: str | None = None


def _render_item(args: ItemTemplates, item: Any) -> _Call:
    try:
        rendered: dict[str, Any] = args.render(item)
    except ExpressionError as exc:
        return _Call(item, {}, f"args: {exc}")
    return _Call(item, rendered)


def _aggregate(entries: list[dict[str, Any]]) -> tuple[EvidenceStatus, str | None]:
    failed = [e for e in entries if not e["ok"]]
    if not failed:
        return EvidenceStatus.OK, None
    summary = f"{len(failed)} of {len(entries)} items failed; first: {failed[0]['error']}"
    if len(failed) < len(entries):
        return EvidenceStatus.OK, summary
    if all(e["status"] == EvidenceStatus.DENIED.value for e in failed):
        return EvidenceStatus.DENIED, summary
    return EvidenceStatus.ERROR, summary


# --- recordings -----------------------------------------------------------------------

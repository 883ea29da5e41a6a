"""The embedded runtime: one process, files or stdin in, SQLite store out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TypeVar

from soc_agent.ingest import ByteStream, Filtered, read_records
from soc_agent.models import Alert, DeadLetter, ExecutionStatus
from soc_agent.pipeline.agent import AlertOutcome
from soc_agent.runtime.components import Components
from soc_agent.runtime.risk import raised_alerts

__all__ = ["RunReport", "default_alert_sources", "run_embedded"]

MAX_REPORTED_DEAD_LETTERS = 100


@dataclass
class RunReport:
    """Counts, not outcomes: memory stays flat however many alerts go through."""

    alerts: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    dead_letter_count: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    expired_proposals: int = 0
    resumed_proposals: int = 0  # approved before a crash, executed now
    reverted_actions: int = 0

    def count(self, outcome: AlertOutcome) -> None:
        self.alerts += 1
        self.counts[outcome.correlation] += 1
        if outcome.fresh:
            self.counts.update(
                "failed" if a.execution is ExecutionStatus.FAILED else a.disposition.value
                for a in outcome.decision.actions
            )


def default_alert_sources() -> list[Path]:
    """The demo alerts shipped with the package."""
    root = Path(str(files("soc_agent_samples").joinpath("alerts")))
    return sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("_"))


def _expand(sources: Iterable[str | Path]) -> list[str | Path]:
    out: list[str | Path] = []
    for src in sources:
        if str(src) == "-":
            out.append("-")
            continue
        path = Path(src)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.is_file()))
        else:
            out.append(path)
    return out


async def run_embedded(
    components: Components,
    sources: Iterable[str | Path],
    *,
    on_outcome: Callable[[AlertOutcome], Awaitable[None]] | None = None,
    format_hint: str | None = None,
) -> RunReport:
    """Process every alert in `sources` through the whole pipeline, bounded in concurrency;
    `format_hint` reads every record as that format or mapping instead of detecting it."""
    report = RunReport()
    report.expired_proposals = len(await components.proposals.expire_due())
    report.resumed_proposals = len(await components.proposals.resume_approved())
    report.reverted_actions = len(await components.executor.revert_due())
    agent = components.agent
    bounds = components.settings.runtime
    limit = components.settings.alerts_at_once(worker=False)
    running = asyncio.Semaphore(limit)
    # Outcomes are emitted in input order; the window of unemitted tasks is bounded too.
    window: deque[asyncio.Task[AlertOutcome]] = deque()

    async def one(alert: Alert) -> AlertOutcome:
        try:
            return await agent.handle(alert)
        finally:
            running.release()

    async def emit_head() -> None:
        outcome = await window.popleft()
        report.count(outcome)
        if on_outcome is not None:
            await on_outcome(outcome)

    try:
        async for item in _ingest(components, sources, format_hint):
            if isinstance(item, Filtered):
                report.counts["filtered"] += 1
                continue
            if isinstance(item, DeadLetter):
                await agent.dead_letter(item)
                report.dead_letter_count += 1
                if len(report.dead_letters) < MAX_REPORTED_DEAD_LETTERS:
                    report.dead_letters.append(item)
                continue
            item = agent.resolve(item)  # risk, like correlation, sees one entity per person
            raised = raised_alerts(components.risk, item, bounds.max_entities_per_alert)
            if raised:
                report.counts["risk alerts"] += len(raised)
            for alert in (item, *raised):
                # Backpressure: reading waits while `limit` alerts are in flight. Related
                # alerts correlate in arrival order (FIFO tasks queue on their keys at once).
                await running.acquire()
                task = asyncio.create_task(one(alert))
                window.append(task)
                if raised:
                    # A risk alert is decided after the alert that made its entity cross
                    # the threshold, never racing it into the same incident.
                    await asyncio.wait([task])
                while window and (window[0].done() or len(window) > 4 * limit):
                    await emit_head()
        while window:
            await emit_head()
    finally:
        for task in window:
            task.cancel()
    return report


async def _ingest(
    components: Components, sources: Iterable[str | Path], format_hint: str | None
) -> AsyncIterator[Alert | DeadLetter | Filtered]:
    bounds = components.settings.runtime
    for src in _expand(sources):
        name = "stdin" if src == "-" else str(src)
        with contextlib.ExitStack() as stack:
            if src == "-":
                stream: ByteStream = sys.stdin.buffer
            else:
                stream = stack.enter_context(await asyncio.to_thread(Path(src).open, "rb"))
            records = read_records(
                stream,
                source=name,
                clock=components.clock,
                max_record_bytes=bounds.max_alert_bytes,
                max_document_bytes=bounds.max_input_bytes,
                format_hint=format_hint,
                mappings=components.mappings,
                max_entities=bounds.max_entities_per_alert,
            )
            # Read and normalised off the event loop, a few records per thread hop (a hop per
            # record cost more than reading it): the pipeline's backpressure reaches the
            # file, and a large input is never held whole. Standard input may be a live
            # stream, so each of its records goes on as soon as it is read.
            batch = 1 if src == "-" else _READ_AHEAD
            while True:
                items, failure = await asyncio.to_thread(_take, records, batch)
                for item in items:
                    yield item
                if failure is not None:
                    raise failure
                if len(items) < batch:  # the end of this source
                    break


_READ_AHEAD = 16  # records read per hop from a file
_T = TypeVar("_T")


def _take(records: Iterator[_T], n: int) -> tuple[list[_T], Exception | None]:
    """Up to `n` records, and what stopped the reading, if it failed: the records read
    before a failure go on first, as they would one at a time."""
    items: list[_T] = []
    try:
        items.extend(itertools.islice(records, n))
    except Exception as exc:
        return items, exc
    return items, None

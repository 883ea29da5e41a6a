"""The embedded runtime: one process, files or stdin in, SQLite store out."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from soc_agent.ingest import parse_payload
from soc_agent.models import Alert, DeadLetter
from soc_agent.pipeline.agent import AlertOutcome
from soc_agent.runtime.components import Components

__all__ = ["RunReport", "default_alert_sources", "run_embedded"]

MAX_INPUT_BYTES = 256 * 1024 * 1024


@dataclass
class RunReport:
    outcomes: list[AlertOutcome] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    expired_proposals: int = 0
    reverted_actions: int = 0


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


async def _read(src: str | Path) -> tuple[str, bytes]:
    if src == "-":
        data = await asyncio.to_thread(sys.stdin.buffer.read, MAX_INPUT_BYTES)
        return "stdin", data
    path = Path(src)
    return str(path), await asyncio.to_thread(path.read_bytes)


async def run_embedded(
    components: Components,
    sources: Iterable[str | Path],
    *,
    on_outcome: Callable[[AlertOutcome], Awaitable[None]] | None = None,
) -> RunReport:
    """Process every alert in `sources` through the whole pipeline, bounded in concurrency."""
    report = RunReport()
    report.expired_proposals = len(await components.proposals.expire_due())
    report.reverted_actions = len(await components.executor.revert_due())
    agent = components.agent
    limit = asyncio.Semaphore(components.settings.runtime.max_concurrent_alerts)
    tasks: list[asyncio.Task[AlertOutcome]] = []

    async def one(alert_task: Awaitable[AlertOutcome]) -> AlertOutcome:
        try:
            outcome = await alert_task
        finally:
            limit.release()
        if on_outcome is not None:
            await on_outcome(outcome)
        return outcome

    async for letter_or_alert in _ingest(components, sources):
        if isinstance(letter_or_alert, DeadLetter):
            await agent.dead_letter(letter_or_alert)
            report.dead_letters.append(letter_or_alert)
            continue
        # Backpressure: reading waits while the limit is reached. Correlation inside
        # agent.handle is serialised in arrival order (tasks start FIFO, the lock is fair).
        await limit.acquire()
        tasks.append(asyncio.create_task(one(agent.handle(letter_or_alert))))
    report.outcomes = list(await asyncio.gather(*tasks))
    return report


async def _ingest(components: Components,
                  sources: Iterable[str | Path]) -> AsyncIterator[Alert | DeadLetter]:
    for src in _expand(sources):
        name, data = await _read(src)
        result = parse_payload(data, source=name, mappings=components.mappings,
                               received_at=components.clock())
        for letter in result.dead_letters:
            yield letter
        for alert in result.alerts:
            yield alert

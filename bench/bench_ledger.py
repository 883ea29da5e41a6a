"""Action ledger benchmark: the executor's queries on a large ledger, against a ceiling.

Claims N actions through the store's own `claim_action` (as the executor does),
then times the queries every decision and API call makes on that ledger: an
action by idempotency key, by action id (the API's rollback and detail pages),
and the blast-radius count of an action's claims in the last hour. The ceiling,
measured in the same run, is a primary-key read of the same store (a flag).

    .venv/bin/python bench/bench_ledger.py --rows 100000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from soc_agent.models import (
    ActionRequest,
    AutonomyLevel,
    Disposition,
    Entity,
    EntityType,
    RiskTier,
)
from soc_agent.models.ids import idempotency_key
from soc_agent.store import SQLiteStore

ACTIONS = ("block_ip", "isolate_host", "disable_user", "quarantine_file")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _request(n: int) -> ActionRequest:
    action = ACTIONS[n % len(ACTIONS)]
    entity = Entity(type=EntityType.HOST, value=f"ws-{n:06d}")
    key = idempotency_key(f"inc-{n // 3:06d}", action, entity)
    return ActionRequest(
        id=f"act-{key[:16]}",
        action=action,
        target=entity,
        connector="containment",
        capability=action,
        playbook_rule="contain",
        disposition=Disposition.EXECUTED,
        rule="threshold.execute",
        reason="bench",
        autonomy=AutonomyLevel.OBSERVER,
        reversible=False,
        risk=RiskTier.MEDIUM,
        idempotency_key=key,
    )


async def _times(
    query: Callable[[int], Awaitable[object]], picks: list[int]
) -> tuple[float, float]:
    took: list[float] = []
    for n in picks:
        t0 = time.perf_counter()
        await query(n)
        took.append(time.perf_counter() - t0)
    took.sort()
    return statistics.median(took) * 1000, took[int(0.95 * (len(took) - 1))] * 1000


async def main(rows: int, samples: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "ledger.db")
        requests = [_request(n) for n in range(rows)]
        t0 = time.perf_counter()
        for n, request in enumerate(requests):
            # Spread over 30 days, so the last hour holds a realistic few.
            at = T0 + timedelta(seconds=n * 30 * 86400 / rows)
            await store.claim_action(request, f"inc-{n // 3:06d}", at)
        fill = time.perf_counter() - t0
        now = T0 + timedelta(days=30)
        rng = random.Random(7)
        picks = [rng.randrange(rows) for _ in range(samples)]

        async def flag(_: int) -> object:
            return await store.get_flag("kill_switch")

        async def by_key(n: int) -> object:
            return await store.get_action(requests[n].idempotency_key)

        async def by_id(n: int) -> object:
            return await store.get_action(requests[n].id)

        async def budget(n: int) -> object:
            return await store.count_executions(ACTIONS[n % 4], now - timedelta(hours=1))

        print(f"ledger: {rows:,} claims written in {fill:.1f} s ({rows / fill:,.0f}/s)")
        ceiling = await _times(flag, picks)
        print(f"ceiling, primary-key read   : p50 {ceiling[0]:.3f} ms, p95 {ceiling[1]:.3f} ms")
        for name, query in (
            ("action by idempotency key", by_key),
            ("action by action id", by_id),
            ("claims in the last hour", budget),
        ):
            p50, p95 = await _times(query, picks)
            print(f"{name:28}: p50 {p50:.3f} ms, p95 {p95:.3f} ms ({p50 / ceiling[0]:.1f}x)")
        store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.samples))
    sys.exit(0)

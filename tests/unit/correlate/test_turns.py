"""Per-key turns: unrelated keys at once, related ones in arrival order, never a deadlock."""

from __future__ import annotations

import asyncio

from soc_agent.correlate.turns import KeyTurns


async def test_a_later_caller_never_overtakes_an_earlier_one_on_a_shared_key() -> None:
    turns = KeyTurns()
    log: list[str] = []
    release_x = asyncio.Event()

    async def holder() -> None:
        async with turns.hold_all(["x"]):
            log.append("holder")
            await release_x.wait()

    async def caller(name: str, keys: list[str]) -> None:
        async with turns.hold_all(keys):
            log.append(name)
            await asyncio.sleep(0)

    first = asyncio.create_task(holder())
    # "a" waits for x (held) and queues on y; "b" wants only y but came after "a".
    a = asyncio.create_task(caller("a", ["y", "x"]))
    b = asyncio.create_task(caller("b", ["y"]))
    c = asyncio.create_task(caller("c", ["z"]))  # unrelated: goes at once
    await asyncio.sleep(0.01)
    assert log == ["holder", "c"]
    release_x.set()
    await asyncio.gather(first, a, b, c)
    assert log == ["holder", "c", "a", "b"]
    assert not turns._queues  # nothing kept once nobody waits


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    turns = KeyTurns()
    gate = asyncio.Event()

    async def hold() -> None:
        async with turns.hold_all(["k"]):
            await gate.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter.cancel()
    gate.set()
    await holder
    async with asyncio.timeout(1):
        async with turns.hold_all(["k"]):
            pass
    assert waiter.cancelled()

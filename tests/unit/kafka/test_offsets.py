"""Commit positions: never past an unfinished offset, whatever order work finishes in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from soc_agent.runtime.kafka.offsets import OffsetTracker


def test_nothing_committable_before_anything_finishes() -> None:
    t = OffsetTracker()
    for o in (10, 11, 12):
        t.start("a", 0, o)
    assert t.committable() == {("a", 0): 10}  # the position already held: harmless


def test_out_of_order_finishes_commit_only_the_contiguous_prefix() -> None:
    t = OffsetTracker()
    for o in (10, 11, 12, 13):
        t.start("a", 0, o)
    t.finish("a", 0, 12)
    t.finish("a", 0, 13)
    assert t.committable() == {("a", 0): 10}
    t.finish("a", 0, 10)
    assert t.committable() == {("a", 0): 11}
    t.mark_committed({("a", 0): 11})
    assert t.committable() == {}
    t.finish("a", 0, 11)
    assert t.committable() == {("a", 0): 14}


def test_partitions_are_independent_and_a_revoked_one_is_forgotten() -> None:
    t = OffsetTracker()
    t.start("a", 0, 5)
    t.start("a", 1, 7)
    t.finish("a", 1, 7)
    assert t.committable() == {("a", 0): 5, ("a", 1): 8}
    t.forget("a", 0)
    t.finish("a", 0, 5)  # a late finisher of a revoked partition changes nothing
    assert t.committable() == {("a", 1): 8}
    assert t.in_flight() == 0


@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, unique=True), st.randoms())
def test_position_never_passes_an_unfinished_offset(offsets: list[int], rnd: object) -> None:
    import random

    assert isinstance(rnd, random.Random)
    offsets.sort()
    t = OffsetTracker()
    for o in offsets:
        t.start("a", 0, o)
    order = offsets[:]
    rnd.shuffle(order)
    done: set[int] = set()
    for o in order:
        t.finish("a", 0, o)
        done.add(o)
        pos = t.committable().get(("a", 0))
        if pos is not None:
            assert all(x in done for x in offsets if x < pos)
    assert t.committable()[("a", 0)] == offsets[-1] + 1

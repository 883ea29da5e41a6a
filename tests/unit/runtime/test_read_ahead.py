"""The embedded runtime reads a file a few records per thread hop; a read failing part
way through a batch still hands on the records read before it, then the failure."""

from __future__ import annotations

from collections.abc import Iterator

from soc_agent.runtime.embedded import _take


def _records() -> Iterator[int]:
    yield 1
    yield 2
    raise OSError("disk gone")


def test_records_before_a_failure_go_on_first() -> None:
    items, failure = _take(_records(), 16)
    assert items == [1, 2]
    assert isinstance(failure, OSError)


def test_a_batch_stops_at_its_size_and_at_the_end() -> None:
    records = iter(range(5))
    assert _take(records, 3) == ([0, 1, 2], None)
    assert _take(records, 3) == ([3, 4], None)
    assert _take(records, 3) == ([], None)

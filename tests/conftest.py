"""Shared fixtures: real components on temporary files, and a clock tests control."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soc_agent.audit import SQLiteAuditLog
from soc_agent.store import SQLiteStore


@dataclass
class Clock:
    """Injected wherever time matters, so tests move time instead of sleeping."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 20, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "soc-agent.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(db_path)
    yield s
    s.close()


@pytest.fixture
def audit(db_path: Path) -> Iterator[SQLiteAuditLog]:
    log = SQLiteAuditLog(db_path)
    yield log
    log.close()

"""How many alerts a process decides at once: configured, or the default for its runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc_agent.errors import ConfigError
from soc_agent.settings import load_settings


@pytest.mark.parametrize("backend", ["sqlite", "elasticsearch"])
def test_the_default_follows_the_runtime(tmp_path: Path, backend: str) -> None:
    settings = load_settings(store=tmp_path / "s.db", store_backend=backend)
    assert settings.alerts_at_once(worker=False) == 32
    assert settings.alerts_at_once(worker=True) == 8


@pytest.mark.parametrize("worker", [False, True])
def test_a_configured_bound_wins_in_either_runtime(tmp_path: Path, worker: bool) -> None:
    settings = load_settings(store=tmp_path / "s.db", runtime={"max_concurrent_alerts": 3})
    assert settings.alerts_at_once(worker=worker) == 3


def test_the_bound_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"runtime\.max_concurrent_alerts"):
        load_settings(store=tmp_path / "s.db", runtime={"max_concurrent_alerts": 0})

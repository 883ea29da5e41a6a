"""How many alerts a process decides at once: configured, or the default for its store."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc_agent.errors import ConfigError
from soc_agent.settings import load_settings


def test_the_default_follows_the_store_backend(tmp_path: Path) -> None:
    assert load_settings(store=tmp_path / "s.db").alerts_at_once == 32
    shared = load_settings(store=tmp_path / "s.db", store_backend="elasticsearch")
    assert shared.alerts_at_once == 8


@pytest.mark.parametrize("backend", ["sqlite", "elasticsearch"])
def test_a_configured_bound_wins_on_either_store(tmp_path: Path, backend: str) -> None:
    settings = load_settings(
        store=tmp_path / "s.db", store_backend=backend, runtime={"max_concurrent_alerts": 3}
    )
    assert settings.alerts_at_once == 3


def test_the_bound_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"runtime\.max_concurrent_alerts"):
        load_settings(store=tmp_path / "s.db", runtime={"max_concurrent_alerts": 0})

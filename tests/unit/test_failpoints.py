"""Failpoints: inert unless armed, fire on the chosen arrival, and refuse unknown names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from soc_agent import failpoints
from soc_agent.errors import ConfigError


@pytest.fixture(autouse=True)
def _disarmed() -> Iterator[None]:
    failpoints.disarm()
    yield
    failpoints.disarm()


def test_a_point_fires_on_its_chosen_arrival_only() -> None:
    fired: list[str] = []
    failpoints.arm("decision.stored", 3, lambda: fired.append("x"))
    for _ in range(5):
        failpoints.failpoint("decision.stored")
        failpoints.failpoint("alert.stored")  # not armed: inert
    assert fired == ["x"]


def test_an_armed_process_dies_as_if_killed_on_the_chosen_arrival() -> None:
    import os
    import subprocess
    import sys

    script = (
        "from soc_agent import failpoints\n"
        "failpoints.arm_from_env()\n"
        "failpoints.failpoint('alert.stored'); print('first', flush=True)\n"
        "failpoints.failpoint('alert.stored'); print('second', flush=True)\n"
    )
    env = {**os.environ, failpoints.ENV: "records.published@1, alert.stored@2"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 137
    assert done.stdout.split() == ["first"]


@pytest.mark.parametrize("spec", ["alert.stord@1", "alert.stored", "alert.stored@0", "x@y"])
def test_a_typo_is_refused_instead_of_testing_nothing(
    spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(failpoints.ENV, spec)
    with pytest.raises(ConfigError) as caught:
        failpoints.arm_from_env()
    assert caught.value.key == failpoints.ENV

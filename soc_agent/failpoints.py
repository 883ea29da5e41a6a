"""Named points where a test can make the process die, to prove crash recovery.

`failpoint("alert.stored")` does nothing unless that point is armed. The crash
tests arm points in worker processes through the environment,
`SOC_AGENT_FAILPOINTS=alert.stored@3` (the third time the point is reached,
the process exits at once with status 137, as if SIGKILLed: no cleanup, no
commit, no flush), or in-process with `arm(name, hit, action)`. Production
never sets the variable; an unknown point name in it is refused at start-up
so a typo cannot silently test nothing.

The points, in the order one alert passes them:
- `alert.stored`: correlated and stored, nothing decided
- `evidence.gathered`: investigated (steps and model), nothing decided
- `decision.stored`: the decision is stored, no action taken
- `actions.done`: executions and proposals done, the answer not published
- `records.published`: the brokers acknowledged the answer, the offset is not committed
- `dead_letters.published`: the same, reached only by a record that had dead letters
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from soc_agent.errors import ConfigError

__all__ = ["ENV", "POINTS", "arm", "arm_from_env", "disarm", "failpoint"]

ENV = "SOC_AGENT_FAILPOINTS"
POINTS = (
    "alert.stored",
    "evidence.gathered",
    "decision.stored",
    "actions.done",
    "records.published",
    "dead_letters.published",
)


def _exit() -> None:
    os._exit(137)


# Process-wide by nature: a failpoint stands for the process dying.
_armed: dict[str, tuple[int, Callable[[], None]]] = {}
_hits: dict[str, int] = {}
_lock = threading.Lock()


def failpoint(name: str) -> None:
    """Reach the point `name`: the armed action runs on its chosen hit."""
    if not _armed:
        return
    with _lock:
        armed = _armed.get(name)
        if armed is None:
            return
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] != armed[0]:
            return
    armed[1]()


def arm(name: str, hit: int = 1, action: Callable[[], None] = _exit) -> None:
    """Make the `hit`-th arrival at `name` run `action` (default: exit with status 137)."""
    if name not in POINTS:
        raise ConfigError(f"unknown failpoint {name!r}; known: {', '.join(POINTS)}", key=ENV)
    with _lock:
        _armed[name] = (hit, action)
        _hits[name] = 0


def disarm() -> None:
    with _lock:
        _armed.clear()
        _hits.clear()


def arm_from_env() -> None:
    """Arm `name@hit[,name@hit...]` from `SOC_AGENT_FAILPOINTS`, if set."""
    for spec in filter(None, (s.strip() for s in os.environ.get(ENV, "").split(","))):
        name, _, hit = spec.partition("@")
        if not hit.isdigit() or int(hit) < 1:
            raise ConfigError(
                f"failpoint {spec!r}: expected name@hit, e.g. alert.stored@3", key=ENV
            )
        arm(name, int(hit))

"""Every id the agent mints, in one place: each is a pure function of what it names.

Deterministic ids are what make the pipeline crash-safe: a redelivered alert,
a second worker or a retried approval computes the same id for the same
thing, so stores can insert-if-absent instead of coordinating. Alert ids are
the normalizers' own (one per vendor format) and are not minted here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from soc_agent.models.alert import Entity

__all__ = [
    "ACTION_ID_PREFIX",
    "action_id",
    "dead_letter_id",
    "decision_id",
    "idempotency_key",
    "incident_id",
    "investigation_id",
    "proposal_id",
]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def idempotency_key(incident: str, action: str, target: Entity) -> str:
    """One key per (incident, action, target): the unit that may take effect once."""
    return _sha256(f"{incident}\x1f{action}\x1f{target.key}".encode())[:32]


ACTION_ID_PREFIX = "act-"  # an idempotency key is hex: the two never look alike


def action_id(key: str) -> str:
    """The action request's id, derived from its idempotency key."""
    return f"{ACTION_ID_PREFIX}{key[:16]}"


def proposal_id(key: str, *, review: bool = False) -> str:
    """A proposal (or, for a level-3 review sample, a review item) of the keyed action."""
    return f"{'rev' if review else 'prop'}-{key[:16]}"


def incident_id(alert_id: str) -> str:
    """`inc-` + the first 16 hex digits of sha256(alert id): deterministic across replicas."""
    return "inc-" + _sha256(alert_id.encode("utf-8"))[:16]


def decision_id(incident: str, alert_ids: Iterable[str]) -> str:
    """Same incident with the same alerts -> same decision id, so re-processing is idempotent."""
    raw = incident + "|" + ",".join(sorted(alert_ids))
    return "dec-" + _sha256(raw.encode())[:20]


def investigation_id(decision: str) -> str:
    """The investigation behind a decision shares its digest: `dec-X` -> `inv-X`."""
    return f"inv-{decision.removeprefix('dec-')}"


def dead_letter_id(source: str, original: bytes) -> str:
    """Stable dead-letter id: the same bytes from the same source get the same id."""
    return _sha256(source.encode("utf-8", "surrogatepass") + b"\0" + original)[:24]

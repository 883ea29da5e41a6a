"""Alert fingerprints: what makes two alerts "the same thing from the same rule"."""

from __future__ import annotations

import hashlib
import json

from soc_agent.models import Alert

__all__ = ["fingerprint"]


def fingerprint(alert: Alert) -> str:
    """SHA-256 hex over the alert's format, rule and sorted distinct entity keys.

    The rule is identified by its id when the vendor gives one (a renamed rule
    stays the same rule), by its name otherwise. Time, alert id, title, severity
    and entity roles are left out on purpose: a rule firing again on the same
    entities is a duplicate whatever the vendor's id or wording. Every entity
    type counts, processes included, so a different command line is a
    different fingerprint.
    """
    rule = ["id", alert.rule.id] if alert.rule.id else ["name", alert.rule.name]
    keys = sorted({entity.key for entity in alert.entities})
    # JSON framing keeps field boundaries unambiguous ("a|b" + "c" != "a" + "b|c").
    material = json.dumps(
        {"format": alert.format, "rule": rule, "entities": keys},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()

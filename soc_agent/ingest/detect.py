"""Format detection and dispatch: which normalizer turns a record into an `Alert`.

Built-in formats are tried in a fixed order (most specific markers first), then
the declarative mappings in the order given. A `format_hint` names a built-in
format or a mapping and skips detection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from soc_agent.errors import NormalizationError
from soc_agent.ingest import (
    asff,
    crowdstrike,
    crowdstrike_alert,
    elastic,
    guardduty,
    ms_graph,
    ocsf,
    sentinel,
    soc_risk,
    splunk,
    suricata,
    wazuh,
)
from soc_agent.ingest.mapping import FieldMapping
from soc_agent.models import Alert
from soc_agent.models.alert import MAX_ENTITIES

__all__ = ["FORMATS", "detect_format", "normalize"]


@dataclass(frozen=True)
class _Normalizer:
    matches: Callable[[dict[str, Any]], bool]
    normalize: Callable[..., Alert]


_BY_NAME: dict[str, _Normalizer] = {
    module.FORMAT: _Normalizer(module.matches, module.normalize)
    for module in (
        elastic,
        ocsf,
        suricata,
        guardduty,
        ms_graph,
        crowdstrike,
        splunk,
        soc_risk,
        crowdstrike_alert,
        sentinel,
        asff,
        wazuh,
    )
}
FORMATS: tuple[str, ...] = tuple(_BY_NAME)
# Detection order: formats with unmistakable markers first, loose shapes last.
_DETECTION_ORDER = (
    "soc_risk",
    "elastic",
    "ocsf",
    "wazuh",
    "crowdstrike",
    "crowdstrike_alert",
    "sentinel",
    "ms_graph",
    # Before guardduty, whose {"Findings": [...]} test does not look inside the list.
    "asff",
    "guardduty",
    "splunk",
    "suricata",
)


def detect_format(doc: dict[str, Any]) -> str | None:
    """The built-in format a record is in, or None (declarative mappings are not tried)."""
    if not isinstance(doc, dict):
        return None
    for name in _DETECTION_ORDER:
        if _BY_NAME[name].matches(doc):
            return name
    return None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a JSON boolean"
    if value is None:
        return "JSON null"
    if isinstance(value, int | float):
        return "a JSON number"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, list):
        return "a JSON array"
    return f"a {type(value).__name__}"


def _keys(doc: dict[str, Any]) -> str:
    keys = [str(k)[:40] for k in list(doc)[:12]]
    more = f", ... ({len(doc) - 12} more)" if len(doc) > 12 else ""
    return ", ".join(keys) + more if keys else "none"


def normalize(
    doc: Any,
    *,
    format_hint: str | None = None,
    mappings: Sequence[FieldMapping] = (),
    received_at: datetime | None = None,
    max_entities: int = MAX_ENTITIES,
) -> Alert:
    """Turn one parsed record into an `Alert`, or raise `NormalizationError` saying why.

    The alert keeps the first `max_entities` entities; the rest are counted in its labels.
    """
    if not isinstance(doc, dict):
        raise NormalizationError(f"record is {_json_kind(doc)}, not a JSON object")
    try:
        if format_hint and format_hint != "auto":
            if format_hint in _BY_NAME:
                return _BY_NAME[format_hint].normalize(
                    doc, received_at=received_at, max_entities=max_entities
                )
            for mapping in mappings:
                if mapping.name == format_hint:
                    return mapping.normalize(
                        doc, received_at=received_at, max_entities=max_entities
                    )
            known = ", ".join([*FORMATS, *(m.name for m in mappings)])
            raise NormalizationError(f"unknown format hint {format_hint[:60]!r} (known: {known})")
        name = detect_format(doc)
        if name is not None:
            return _BY_NAME[name].normalize(doc, received_at=received_at, max_entities=max_entities)
        for mapping in mappings:
            if mapping.matches(doc):
                return mapping.normalize(doc, received_at=received_at, max_entities=max_entities)
    except RecursionError as exc:
        raise NormalizationError("record is nested too deeply to normalise") from exc
    raise NormalizationError(
        f"unrecognised format: no normalizer matches (top-level keys: {_keys(doc)})"
    )

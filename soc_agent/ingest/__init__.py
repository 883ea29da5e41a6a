"""Ingest: vendor alert JSON to canonical `Alert`s, with format detection and dead letters.

One module per vendor format (`elastic`, `ocsf`, `suricata`, `guardduty`,
`ms_graph`, `crowdstrike`, `splunk`), declarative YAML mappings for anything
else (`mapping`), detection and dispatch (`detect`), and the bytes-to-records
layer that never raises on bad input (`payload`).
"""

from __future__ import annotations

from soc_agent.ingest.detect import FORMATS, detect_format, normalize
from soc_agent.ingest.mapping import FieldMapping, load_mappings
from soc_agent.ingest.payload import IngestResult, parse_payload

__all__ = [
    "FORMATS",
    "FieldMapping",
    "IngestResult",
    "detect_format",
    "load_mappings",
    "normalize",
    "parse_payload",
]

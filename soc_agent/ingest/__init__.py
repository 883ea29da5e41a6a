"""Ingest: vendor alert JSON to canonical `Alert`s, with format detection and dead letters.

One module per vendor format (`elastic`, `ocsf`, `suricata`, `guardduty`,
`ms_graph`, `crowdstrike`, `splunk`), declarative YAML mappings for anything
else (`mapping`), detection and dispatch (`detect`), and the bytes-to-records
layer that never raises on bad input (`payload`), and the reader of files and
stdin that takes JSON lines one record at a time (`stream`).
"""

from __future__ import annotations

from soc_agent.ingest.detect import FORMATS, detect_format, normalize
from soc_agent.ingest.mapping import FieldMapping, load_mappings
from soc_agent.ingest.payload import (
    DEAD_LETTER_HEAD_BYTES,
    Filtered,
    IngestResult,
    iter_payload,
    parse_payload,
)
from soc_agent.ingest.stream import ByteStream, read_records

__all__ = [
    "DEAD_LETTER_HEAD_BYTES",
    "FORMATS",
    "ByteStream",
    "FieldMapping",
    "Filtered",
    "IngestResult",
    "detect_format",
    "iter_payload",
    "load_mappings",
    "normalize",
    "parse_payload",
    "read_records",
]

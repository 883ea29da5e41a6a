"""Large alerts and large inputs: bounded, streamed, and never silently lost.

The outside review sent alerts of 100,000 entities and 30 MB through `soc-agent run`
and saw minutes and over a gigabyte. One alert record and one document read at
once are capped in bytes, JSON lines are read one record at a time, and an alert
keeps a bounded number of entities, counting the rest by type, in every runtime.
"""

from __future__ import annotations

import json
from pathlib import Path

from soc_agent.ingest import normalize
from soc_agent.runtime.components import open_components
from soc_agent.runtime.kafka.alerts import AlertProcessor
from soc_agent.runtime.kafka.records import Source
from soc_agent.settings import load_settings

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "alerts"


def _sign_in(padding: int) -> dict[str, object]:
    doc: dict[str, object] = json.loads((SAMPLES / "ms_graph_impossible_travel.json").read_text())
    doc["evidence"] = [
        *doc["evidence"],  # type: ignore[list-item]
        *(
            {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": f"10.9.{i}.1"}
            for i in range(padding)
        ),
    ]
    return doc


async def test_the_kafka_worker_keeps_the_configured_number_of_entities(tmp_path: Path) -> None:
    settings = load_settings(store=tmp_path / "s.db", runtime={"max_entities_per_alert": 8})
    doc = _sign_in(100)
    async with open_components(settings) as c:
        processor = AlertProcessor(
            c.agent,
            c.store,
            settings.kafka.topics,
            mappings=c.mappings,
            clock=c.clock,
            max_concurrent_alerts=1,
            max_entities=settings.runtime.max_entities_per_alert,
        )
        result, _ = await processor.process(json.dumps(doc).encode(), Source("soc.alerts", 0, 7))
        alert = await c.store.get_alert(f"ms_graph:{doc['id']}")
    assert result.alerts == 1 and alert is not None
    assert len(alert.entities) == 8
    named = len(normalize(_sign_in(0)).entities) + 100
    assert alert.labels["ingest.entities_truncated"] == str(named - 8)

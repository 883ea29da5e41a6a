"""Real Elasticsearch and Apache Kafka, built from Maven Central, for these tests.

The fixtures live in `tests.infra.fixtures` so that other test packages (the
Elasticsearch connector and store, the Kafka worker's fault tests) can import
them the same way.
"""

from __future__ import annotations

from tests.infra.fixtures import elasticsearch_url, kafka_disk_broker

__all__ = ["elasticsearch_url", "kafka_disk_broker"]

"""A real Elasticsearch client that records the requests it sends, for round-trip tests."""

from __future__ import annotations

import time
from typing import Any

from elasticsearch import AsyncElasticsearch


class CountingClient(AsyncElasticsearch):
    """The real client, recording each HTTP request it sends as (method, path), and in
    `timeline` as (monotonic time sent, time answered, method, path)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[tuple[str, str]] = []
        self.timeline: list[tuple[float, float, str, str]] = []

    async def perform_request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.requests.append((method, path))
        sent = time.monotonic()
        try:
            return await super().perform_request(method, path, **kwargs)
        finally:
            self.timeline.append((sent, time.monotonic(), method, path))

    def sent(self, method: str, path_suffix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.endswith(path_suffix))

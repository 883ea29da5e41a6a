"""Webhook ingest: `POST /v1/alerts` publishes to the alert topic, for sources without Kafka.

The body is anything `soc-agent run` reads (one JSON document, a JSON array,
JSON lines), at most `kafka.webhook_max_bytes` and `kafka.webhook_max_records`
records (more is refused with 413, before anything is published); it is
parsed off the event loop. Each alert is published as its
own record, keyed by its first pivot entity (so one host's alerts share a
partition), with its detected format in the `soc-format` header; each record
that cannot become an alert goes to the dead-letter topic with its reason;
records of one request that failed the same way share one DLQ record (every
original kept, one per line; `soc-dlq-count` says how many).
Authentication is a shared bearer token (`kafka.webhook_token`). The answer
is 202 with the counts once the brokers acknowledged every record.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from soc_agent.correlate import Correlator, InMemoryCorrelationState
from soc_agent.errors import ConfigError
from soc_agent.ingest import load_mappings, parse_payload
from soc_agent.ingest.payload import TooManyRecords
from soc_agent.models import Alert, DeadLetter
from soc_agent.models.ids import dead_letter_id
from soc_agent.runtime.kafka.alerts import FORMAT_HEADER
from soc_agent.runtime.kafka.producer import Publisher
from soc_agent.runtime.kafka.records import DLQ_PREFIX, OutRecord, dead_letter_record
from soc_agent.settings import Settings

__all__ = ["build_webhook_app", "partition_key", "serve_webhook"]

log = logging.getLogger(__name__)

MAX_REASONS = 20
MIN_TOKEN_LENGTH = 16


class _TooLarge(Exception):
    pass


def _token(configured: SecretStr | None) -> bytes:
    """The shared token, trimmed like every secret; an empty or short one is refused,
    since `compare_digest(b"", b"")` is true and a short one can be guessed."""
    token = configured.get_secret_value().strip() if configured is not None else ""
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"the webhook needs a shared bearer token of at least {MIN_TOKEN_LENGTH} "
            "characters (e.g. `openssl rand -hex 32`)",
            key="kafka.webhook_token",
        )
    return token.encode()


def build_webhook_app(settings: Settings, publisher: Publisher) -> Starlette:
    """The ASGI app; `publisher` is the process's one producer."""
    config = settings.kafka
    token = _token(config.webhook_token)
    topics = config.topics
    mappings = load_mappings(settings.mappings)
    pivots = Correlator(InMemoryCorrelationState(), settings.correlation).pivots

    async def read_limited(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > config.webhook_max_bytes:
            raise _TooLarge
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.webhook_max_bytes:
                raise _TooLarge
        return bytes(body)

    async def post_alerts(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        scheme, _, presented = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), token):
            return JSONResponse(
                {"error": "a valid bearer token is required"},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        try:
            body = await read_limited(request)
        except _TooLarge:
            return JSONResponse(
                {"error": f"body larger than {config.webhook_max_bytes} bytes"}, status_code=413
            )
        hint = request.query_params.get("format") or None
        client = request.client.host if request.client else "unknown"
        try:
            # CPU-bound: off the event loop, so health checks and other requests go on.
            parsed = await asyncio.to_thread(
                parse_payload,
                body,
                source=f"webhook:{client}",
                format_hint=hint,
                mappings=mappings,
                headers={"soc-received-via": "webhook"},
                max_records=config.webhook_max_records,
                max_entities=settings.runtime.max_entities_per_alert,
            )
        except TooManyRecords:
            return JSONResponse(
                {"error": f"at most {config.webhook_max_records} records per request"},
                status_code=413,
            )
        records: list[OutRecord] = [
            _alert_record(topics.alerts, a, pivots(a), hint) for a in parsed.alerts
        ]
        records += [
            _dead_letter_record(topics.dlq, letters)
            for letters in _by_reason(parsed.dead_letters).values()
        ]
        try:
            await publisher.send_all(records)
        except Exception as exc:  # the broker did not take them: the sender must retry
            log.warning("webhook publish failed: %s", exc)
            return JSONResponse({"error": "could not publish; retry later"}, status_code=503)
        return JSONResponse(
            {
                "accepted": len(parsed.alerts),
                "dead_letters": len(parsed.dead_letters),
                "filtered": len(parsed.filtered),
                "dead_letter_reasons": [
                    {"source": d.source, "reason": d.reason}
                    for d in parsed.dead_letters[:MAX_REASONS]
                ],
                "topic": topics.alerts,
            },
            status_code=202,
        )

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/alerts", post_alerts, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )


# Which pivot keys a record: the most stable identity of what was attacked comes first.
_KEY_ORDER = ("host", "user", "email", "cloud_resource", "ip", "domain", "url", "file_hash")


def partition_key(alert: Alert, pivots: list[str]) -> bytes:
    """The alert's primary entity (`host:ws-01`), so one entity's alerts share a partition."""
    rank = {kind: i for i, kind in enumerate(_KEY_ORDER)}
    # An entity's own value, never one of its aliases (an EDR device id), names it.
    values = {e.key for e in alert.entities}
    named = [k for k in pivots if k in values] or pivots
    if not named:
        return alert.id.encode()
    best = min(named, key=lambda k: (rank.get(k.partition(":")[0], len(rank)), k))
    return best.encode()


def _by_reason(letters: list[DeadLetter]) -> dict[str, list[DeadLetter]]:
    groups: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        groups.setdefault(letter.reason, []).append(letter)
    return groups


def _dead_letter_record(topic: str, letters: list[DeadLetter]) -> OutRecord:
    """One DLQ record for the records of a request that failed the same way.

    Its value is every original, one per line (JSON lines, as they came or as the
    array elements re-serialised), so nothing is lost; `soc-dlq-count` says how many.
    """
    if len(letters) == 1:
        return dead_letter_record(topic, letters[0])
    first = letters[0]
    original = b"\n".join(letter.original for letter in letters)
    merged = first.model_copy(
        update={
            "id": dead_letter_id(first.source, original),
            "original": original,
            "reason": f"{first.reason} ({len(letters)} records)",
        }
    )
    record = dead_letter_record(topic, merged)
    return replace(record, headers=[*record.headers, (DLQ_PREFIX + "count", b"%d" % len(letters))])


def _alert_record(topic: str, alert: Alert, pivots: list[str], hint: str | None) -> OutRecord:
    key = partition_key(alert, pivots)
    value = json.dumps(alert.original, ensure_ascii=False, separators=(",", ":")).encode()
    headers = [(FORMAT_HEADER, (hint or alert.format).encode()), ("soc-received-via", b"webhook")]
    return OutRecord(topic, key, value, headers)


async def serve_webhook(
    settings: Settings, producer: Any, *, host: str, port: int, stop: asyncio.Event
) -> None:
    """Serve the webhook until `stop` is set."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the worker owns SIGTERM/SIGINT: it sets `stop`, which ends this server

    app = build_webhook_app(settings, Publisher(producer))
    server = _Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    waiting = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    waiting.cancel()
    await serving

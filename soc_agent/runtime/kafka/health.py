"""The worker's health endpoint: GET /healthz, /readyz and /metrics on `kafka.health_port`.

* `/healthz` (liveness): 200 while the consume loop keeps coming round. It
  does so every 200 ms even when idle and even while the brokers are down
  (commits give up after `commit_timeout_seconds`), so only a stuck process
  fails it, after `health_stale_seconds`: restarting would not cure an outage.
* `/readyz` (readiness): 200 when the worker is running, holds partitions
  or is a member of its group, and its latest exchange with the brokers
  (a commit, a publish, or the metadata probe every
  `health_probe_interval_seconds`) succeeded; 503 with the reasons otherwise.
* `/metrics`: the Prometheus text format (see `metrics.py`).

Bodies carry counts, ages and error type names: no alert content, no
configuration values, no secrets. The server binds `health_host`, loopback
unless configured; in Kubernetes the chart sets 0.0.0.0 inside the pod so
the kubelet can probe it. Same HTTP stack as the webhook (Starlette under uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import uvicorn
from aiokafka.errors import KafkaError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from soc_agent.errors import ConfigError
from soc_agent.runtime.kafka.metrics import (
    CONTENT_TYPE,
    BrokerContact,
    WorkerSnapshot,
    process_rss_bytes,
    render_metrics,
)
from soc_agent.settings.kafka import KafkaConfig

__all__ = ["build_health_app", "liveness", "probe_brokers", "readiness", "serve_health"]

log = logging.getLogger(__name__)

_NO_STORE = {"cache-control": "no-store"}


def liveness(s: WorkerSnapshot, *, stale_after: float) -> tuple[bool, dict[str, Any]]:
    """Alive unless the running consume loop has not come round for `stale_after` seconds.

    A worker that is shutting down stays alive: it is draining on purpose,
    within `shutdown_timeout_seconds`, and the kubelet's grace period bounds it.
    """
    stalled = s.running and s.loop_age > stale_after
    body: dict[str, Any] = {
        "status": "stalled" if stalled else "ok",
        "loop_age_seconds": round(s.loop_age, 3),
        "stale_after_seconds": stale_after,
    }
    return not stalled, body


def readiness(s: WorkerSnapshot, *, stale_after: float) -> tuple[bool, dict[str, Any]]:
    """Ready when running, in the group (or holding partitions) and the brokers answer."""
    reasons: list[str] = []
    if not s.running:
        reasons.append("not consuming: starting or shutting down")
    elif s.loop_age > stale_after:
        reasons.append(f"consume loop stalled for {s.loop_age:.0f}s")
    if not s.broker_ok:
        reasons.append(f"brokers unreachable for {s.broker_state_age:.0f}s: {s.broker_error}")
    if not s.assigned and not s.in_group:
        reasons.append("no partitions assigned and not a member of the consumer group")
    body: dict[str, Any] = {
        "status": "not ready" if reasons else "ready",
        "assigned_partitions": len(s.assigned),
        "in_group": s.in_group,
        "in_flight": s.in_flight,
        "paused": s.paused,
    }
    if reasons:
        body["reasons"] = reasons
    return not reasons, body


def build_health_app(snapshot: Callable[[], WorkerSnapshot], *, stale_after: float) -> Starlette:
    """The ASGI app; `snapshot` is the worker's, called once per request."""

    async def healthz(_: Request) -> Response:
        ok, body = liveness(snapshot(), stale_after=stale_after)
        return JSONResponse(body, status_code=200 if ok else 503, headers=_NO_STORE)

    async def readyz(_: Request) -> Response:
        ok, body = readiness(snapshot(), stale_after=stale_after)
        return JSONResponse(body, status_code=200 if ok else 503, headers=_NO_STORE)

    async def metrics(_: Request) -> Response:
        text = render_metrics(snapshot(), rss_bytes=process_rss_bytes())
        return PlainTextResponse(text, media_type=CONTENT_TYPE, headers=_NO_STORE)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )


async def probe_brokers(
    consumer: Any, contact: BrokerContact, *, interval: float, stop: asyncio.Event
) -> None:
    """Request cluster metadata every `interval` seconds and report the outcome to `contact`.

    An idle worker neither commits nor publishes, so without this /readyz
    could not tell that its brokers went away. The request is a metadata
    request over the consumer's own connections (the same credentials).
    """
    timeout = max(interval, 5.0)
    while not stop.is_set():
        try:
            async with asyncio.timeout(timeout):
                await consumer.topics()
        except (KafkaError, OSError, TimeoutError) as exc:
            contact.failed("metadata request", exc)
        else:
            contact.succeeded()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()


@contextlib.asynccontextmanager
async def serve_health(
    config: KafkaConfig,
    snapshot: Callable[[], WorkerSnapshot],
    consumer: Any,
    contact: BrokerContact,
) -> AsyncIterator[int]:
    """Serve the endpoint and run the broker probe until the block exits; yields the port.

    The socket is bound here, so a taken port fails the start naming the key
    (uvicorn would otherwise exit the process from inside its task).
    """
    sock = _bind(config.health_host, config.health_port)
    app = build_health_app(snapshot, stale_after=config.health_stale_seconds)
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    stop = asyncio.Event()
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="soc health")
    probing = asyncio.create_task(
        probe_brokers(consumer, contact, interval=config.health_probe_interval_seconds, stop=stop),
        name="soc broker probe",
    )
    port = int(sock.getsockname()[1])
    log.info(
        "health endpoint on http://%s:%d (/healthz /readyz /metrics)", config.health_host, port
    )
    try:
        yield port
    finally:
        stop.set()
        server.should_exit = True
        await asyncio.gather(serving, probing, return_exceptions=True)
        sock.close()


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the worker owns SIGTERM/SIGINT and sets `stop`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot bind {host}: {exc}", key="kafka.health_host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening now queues the kubelet's first probes until uvicorn accepts them.
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc}", key="kafka.health_port"
        ) from None
    sock.setblocking(False)
    return sock

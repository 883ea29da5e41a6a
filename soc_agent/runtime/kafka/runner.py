"""Process lifecycle of `soc-agent worker`: clients created once, signals, clean close."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack, suppress

from soc_agent import failpoints
from soc_agent.runtime.components import Components, open_components
from soc_agent.runtime.kafka.errors import KafkaUnavailable
from soc_agent.runtime.kafka.metrics import WorkerReport
from soc_agent.runtime.kafka.producer import RenewableProducer, make_producer
from soc_agent.runtime.kafka.worker import KafkaWorker, make_consumer
from soc_agent.settings import Settings

__all__ = ["KafkaUnavailable", "run_worker"]

log = logging.getLogger(__name__)


async def run_worker(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[], None] | None = None,
    webhook: tuple[str, int] | None = None,
    handle_signals: bool = True,
) -> WorkerReport:
    """Run one worker until SIGTERM/SIGINT (or `stop`), then shut down gracefully."""
    from aiokafka.errors import KafkaError

    config = settings.kafka
    failpoints.arm_from_env()  # crash tests only; see soc_agent.failpoints
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT) if handle_signals else ():
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        components = await stack.enter_async_context(open_components(settings, shared=True))
        producer = RenewableProducer(lambda: make_producer(config))
        consumer = make_consumer(config)
        try:
            await producer.start()
            stack.push_async_callback(producer.stop)
            await consumer.start()
            stack.push_async_callback(consumer.stop)
        except KafkaError as exc:
            raise KafkaUnavailable(
                f"cannot connect to Kafka at {config.bootstrap_servers}: {exc}"
            ) from None
        worker = KafkaWorker(components, config, consumer, producer)
        worker.subscribe()
        if settings.risk.enabled:
            follow_risk(components, settings, stop, stack)
        if config.health_port:
            from soc_agent.runtime.kafka.health import serve_health

            await stack.enter_async_context(
                serve_health(config, worker.snapshot, consumer, worker.broker)
            )
        if webhook is not None:
            from soc_agent.runtime.kafka.webhook import serve_webhook

            server = asyncio.create_task(
                serve_webhook(settings, producer, host=webhook[0], port=webhook[1], stop=stop)
            )
            _until_stopped(stack, stop, server)
        if on_ready is not None:
            on_ready()
        log.info("worker consuming %s", sorted(worker.topics()))
        try:
            return await worker.run(stop)
        finally:
            stop.set()
    raise AssertionError("unreachable")  # pragma: no cover


def follow_risk(
    components: Components, settings: Settings, stop: asyncio.Event, stack: AsyncExitStack
) -> None:
    """Answer `risk.lookup` from the stream app's table (its changelog, read here)."""
    from soc_agent_connectors import RiskLedgerConnector

    from soc_agent.runtime.kafka.risk_view import RiskView

    view = RiskView(settings.kafka, settings.risk)
    for connector in components.gateway.connectors.values():
        if isinstance(connector, RiskLedgerConnector):
            connector.attach(view)
    _until_stopped(stack, stop, asyncio.create_task(view.run(stop)))


def _until_stopped(stack: AsyncExitStack, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Leaving `stack` sets `stop`, then awaits `task` (which runs until `stop`): a start
    that fails after `task` began must end it, not wait for it forever."""
    stack.push_async_callback(_await, task)
    stack.callback(stop.set)


async def _await(task: asyncio.Task[None]) -> None:
    with suppress(asyncio.CancelledError):
        await task

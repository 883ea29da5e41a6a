"""A real single-node Apache Kafka (KRaft) for tests, built from Maven Central artifacts.

`org.apache.kafka:kafka_2.13` and its runtime dependencies (plus a log4j
binding) are resolved into the cache; the broker is formatted and started as
the Kafka 4 quickstart does it (`kafka.tools.StorageTool format --standalone`,
then `kafka.Kafka server.properties`) with one combined broker+controller
node on free loopback ports and its log on disk. `restart()` keeps the log
directory and the ports: the point is a broker restart with nothing lost.
The in-memory broker (tansu) stays the fast default for every other test.

    broker = start()            # broker.bootstrap -> "127.0.0.1:PORT"
    broker.restart()            # graceful; restart(crash=True) kills it first
    broker.stop()

or `python -m tests.infra.kafka [--port N]` to run one in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import importlib.util
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.infra._common import (
    InfraError,
    Jdk,
    ServerProcess,
    cache_dir,
    cache_lock,
    find_jdk,
    find_maven,
    free_port,
    make_run_dir,
    maven_copy_dependencies,
    wait_for,
)

__all__ = [
    "INSTALL_HINT",
    "KAFKA_VERSION",
    "KafkaBroker",
    "check",
    "find_java",
    "resolve",
    "start",
]

KAFKA_VERSION = "4.4.0"
KAFKA_ARTIFACT = f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}"
# The distribution's slf4j 1.7 binding, at the log4j version Kafka depends on.
LOG4J_BINDING = "org.apache.logging.log4j:log4j-slf4j-impl:2.25.5"
MIN_JAVA = 17

INSTALL_HINT = (
    "Kafka restart tests need Java 17+ and Maven: install e.g. "
    "`apt-get install openjdk-17-jdk-headless maven` (or set SOC_AGENT_INFRA_JAVA_HOME)"
)

_LOG4J2 = """\
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.apache.name = org.apache.kafka
logger.apache.level = info
"""

T = TypeVar("T")


def find_java() -> Jdk:
    return find_jdk(MIN_JAVA, hint=INSTALL_HINT)


def check() -> None:
    """Raise `InfraUnavailable` if this machine cannot build and run a broker; starts nothing."""
    find_java()
    if not (cache_dir() / f"kafka-{KAFKA_VERSION}" / ".complete").is_file():
        find_maven(INSTALL_HINT)


def resolve() -> Path:
    """`<cache>/kafka-<version>/libs`: the broker and its runtime dependencies, built once."""
    home = cache_dir() / f"kafka-{KAFKA_VERSION}"
    if (home / ".complete").is_file():
        return home / "libs"
    mvn = find_maven(INSTALL_HINT)
    with cache_lock(f"kafka-{KAFKA_VERSION}"):
        if (home / ".complete").is_file():
            return home / "libs"
        staging = home.with_name(home.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        maven_copy_dependencies(
            mvn, "kafka-broker", [KAFKA_ARTIFACT, LOG4J_BINDING], staging / "libs"
        )
        (staging / ".complete").write_text(f"{KAFKA_VERSION}\n")
        shutil.rmtree(home, ignore_errors=True)
        staging.rename(home)
    return home / "libs"


def _cluster_id() -> str:
    """Like `kafka-storage random-uuid`: 16 random bytes, URL-safe base64, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a private loop in a thread: safe even if the caller has a running loop."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kafka-probe") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def _broker_ids(bootstrap: str) -> list[int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return sorted(int(broker["node_id"]) for broker in cluster["brokers"])
    finally:
        await admin.close()


def _ready(bootstrap: str) -> bool | None:
    """True once the broker answers metadata requests and lists itself."""
    host, port = bootstrap.rsplit(":", 1)
    try:  # a plain connect first, so aiokafka does not log every refused attempt
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return None
    try:
        return True if _in_thread(lambda: _broker_ids(bootstrap)) == [1] else None
    except Exception:  # not up yet: connection refused, metadata not ready, ...
        return None


@dataclass
class KafkaBroker:
    """A KRaft broker+controller; its log directory survives `stop()`/`restart()`."""

    jdk: Jdk
    libs: Path
    run_dir: Path
    log_dir: Path
    port: int
    controller_port: int
    owns_log_dir: bool
    startup_timeout: float = 120.0
    heap: str = "512m"
    process: ServerProcess | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.run_dir / "server.properties"

    def _java(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        return [
            str(self.jdk.java),
            f"-Xmx{heap or self.heap}",
            f"-Xms{heap or self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.run_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.run_dir / 'logs'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _write_config(self) -> None:
        listeners = (
            f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
        )
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            # A killed broker's old registration expires sooner, so a crash restart is quick.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
        }
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (self.run_dir / "log4j2.properties").write_text(_LOG4J2)
        (self.run_dir / "logs").mkdir(exist_ok=True)

    def format_storage(self) -> None:
        """`kafka-storage format --standalone`, once: a formatted log dir is never reformatted."""
        if (self.log_dir / "meta.properties").is_file():
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "--cluster-id",
            _cluster_id(),
            "--config",
            str(self.config_path),
            heap="256m",
        )
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
        if result.returncode != 0:
            raise InfraError(
                f"kafka-storage format failed (exit {result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )

    def start(self) -> None:
        if self.process is not None and self.process.alive():
            return
        self.format_storage()
        self.process = ServerProcess(
            f"Kafka {KAFKA_VERSION}",
            self._java("kafka.Kafka", str(self.config_path)),
            cwd=self.run_dir,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "JAVA_HOME": str(self.jdk.home)},
            log_path=self.run_dir / "logs" / "stdout.log",
            watchdog=True,
        )
        try:
            wait_for(
                lambda: _ready(self.bootstrap),
                process=self.process,
                timeout=self.startup_timeout,
                what=f"serving on {self.bootstrap}",
                interval=0.25,
            )
        except InfraError as exc:
            log = self.run_dir / "logs" / "server.log"
            tail = (
                "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                if log.exists()
                else ""
            )
            self.process.stop()
            raise InfraError(f"{exc}\nserver.log:\n{tail}") from exc

    def stop(self, *, crash: bool = False, timeout: float = 60.0) -> None:
        """Graceful (SIGTERM: controlled shutdown, then SIGKILL after `timeout`) or a crash."""
        if self.process is None:
            return
        if crash:
            self.process.kill()
        else:
            self.process.stop(timeout=timeout)
        self.process = None

    def restart(self, *, crash: bool = False) -> None:
        """Stop (gracefully, or by SIGKILL) and start again on the same log dir and ports."""
        self.stop(crash=crash)
        self.start()

    def close(self) -> None:
        """Stop for good and remove what this broker created."""
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.owns_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> KafkaBroker:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def start(
    port: int | None = None,
    *,
    log_dir: Path | None = None,
    heap: str = "512m",
    startup_timeout: float = 120.0,
) -> KafkaBroker:
    """Format (first time) and start a broker; `log_dir` defaults to a private temp dir."""
    if importlib.util.find_spec("aiokafka") is None:
        raise InfraError("tests.infra.kafka probes the broker with aiokafka: pip install aiokafka")
    jdk = find_java()
    libs = resolve()
    run = make_run_dir("soc-agent-kafka-")
    owns = log_dir is None
    broker = KafkaBroker(
        jdk=jdk,
        libs=libs,
        run_dir=run,
        log_dir=log_dir if log_dir is not None else run / "kafka-logs",
        port=port or free_port(),
        controller_port=free_port(),
        owns_log_dir=owns,
        startup_timeout=startup_timeout,
        heap=heap,
    )
    try:
        broker._write_config()
        broker.start()
    except BaseException:
        broker.close()
        raise
    return broker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.infra.kafka",
        description=f"Run a single-node Apache Kafka {KAFKA_VERSION} (KRaft) until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=9092, help="broker port (0: any free port)")
    parser.add_argument("--log-dir", type=Path, help="keep the log here (default: a temp dir)")
    parser.add_argument("--resolve-only", action="store_true", help="fill the cache and exit")
    args = parser.parse_args(argv)
    began = time.monotonic()
    libs = resolve()
    print(f"Kafka {KAFKA_VERSION} libs: {libs} ({time.monotonic() - began:.1f}s)", flush=True)
    if args.resolve_only:
        return 0
    broker = start(args.port or None, log_dir=args.log_dir)
    print(
        f"Kafka {KAFKA_VERSION} ready at {broker.bootstrap}, log dir {broker.log_dir}, "
        f"logs {broker.run_dir / 'logs'} ({time.monotonic() - began:.1f}s); Ctrl-C stops it",
        flush=True,
    )
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    while not stopped.wait(1.0):
        if broker.process is None or not broker.process.alive():
            print("Kafka exited")
            break
    broker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

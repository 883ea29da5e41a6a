"""Distributed benchmark: 1, 2 and 3 `soc-agent worker` processes sharing Kafka and Elasticsearch.

Starts the real Apache Kafka and the real single-node Elasticsearch that the tests build
(tests/infra) on loopback, unless `--kafka`/`--elasticsearch` name running ones. For each
worker count it puts the alert storm of bench_pipeline.py (10% redelivered) on a fresh
alerts topic and lets that many `soc-agent worker` processes (store_backend:
elasticsearch, a fresh index prefix, one consumer group) decide it. Every worker talks to
Elasticsearch through a counting reverse proxy (plain HTTP, a process of its own, one port
per worker), which gives:
  * Elasticsearch round trips per alert, in total and by kind (index + operation);
  * the serial fraction: time inside sections no two workers may run at once (appends to
    the shared audit chain, including their 409 retries, and holds of the backend's
    `chore:*` leases), per worker-second, and the Amdahl bound on speed-up it implies.
Throughput is alerts decided per second from the first decision to the last (the
decisions topic's timestamps); CPU per alert is the workers' own (/proc), next to the
broker's, the node's and the proxy's. Ceilings measured in the same run: a plain aiokafka
consume of the alerts, Elasticsearch `_bulk` writes of the same documents, and small
Elasticsearch round trips with 8 in flight (direct, and through the proxy: its overhead).
A first 1-worker run over the storm's first `--warmup` records is not measured: it warms
the JVMs up. Broker, node, proxy and workers share this machine's cores.

    .venv/bin/python bench/bench_workers.py                 # 600 alerts; 1, 2, 3 workers
    .venv/bin/python bench/bench_workers.py --alerts 500 --workers 1,3
    .venv/bin/python bench/bench_workers.py --kafka 127.0.0.1:9092 --elasticsearch http://127.0.0.1:9200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from elasticsearch import AsyncElasticsearch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import make_storm  # noqa: E402
from bench_stream import consume_ceiling  # noqa: E402

from soc_agent.correlate import Correlator, InMemoryCorrelationState  # noqa: E402
from soc_agent.ingest import parse_payload  # noqa: E402
from soc_agent.runtime.kafka.topics import TopicPlan, create_topics  # noqa: E402
from soc_agent.runtime.kafka.webhook import partition_key  # noqa: E402
from soc_agent.settings import load_settings  # noqa: E402
from soc_agent.settings.kafka import KafkaConfig, TopicLayout, TopicsConfig  # noqa: E402
from soc_agent.store.config import ElasticsearchConfig  # noqa: E402

AUDIT_KEY = "bench-key-shared-by-every-worker-0123"
PARTITIONS = 6
_TICK = os.sysconf("SC_CLK_TCK")


# --- the counting proxy ----------------------------------------------------------------------


@dataclass(slots=True)
class _Request:
    """One HTTP exchange a worker had with Elasticsearch, as the proxy saw it."""

    client: int  # the proxy port's index: worker i, or the bench itself
    method: str
    target: str
    status: int
    began: float  # wall clock (time.time), comparable with Kafka record timestamps
    ended: float
    body: bytes | None = None  # kept for _bulk and audit writes only
    answer: bytes | None = None  # kept for _bulk only


class CountingProxy:
    """A plain HTTP/1.1 reverse proxy to one Elasticsearch node, recording every exchange.

    Each listening port stands for one client, so requests are attributed to the worker
    that sent them without looking inside; each client connection gets its own upstream
    connection (keep-alive is preserved on both).
    """

    def __init__(self, upstream: str) -> None:
        rest = upstream.split("://", 1)[-1].rstrip("/")
        host, _, port = rest.rpartition(":")
        self._host, self._port = host or "127.0.0.1", int(port or 9200)
        self._servers: list[asyncio.Server] = []
        self.ports: list[int] = []
        self.requests: list[_Request] = []
        self.recording = False

    async def listen(self, clients: int) -> None:
        for i in range(len(self.ports), clients):
            server = await asyncio.start_server(
                functools.partial(self._serve, i), "127.0.0.1", 0, limit=1 << 20
            )
            self._servers.append(server)
            self.ports.append(int(server.sockets[0].getsockname()[1]))

    def url(self, client: int) -> str:
        return f"http://127.0.0.1:{self.ports[client]}"

    async def _serve(
        self, client: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                began = time.time()
                method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
                keep = (
                    b"_bulk" in target
                    or b"_mget" in target
                    or b"_msearch" in target
                    or (b"-audit/" in target and method in (b"PUT", b"POST"))
                )
                up_writer.write(head)
                body = await _relay_body(reader, up_writer, head, keep=keep)
                await up_writer.drain()
                answer_head = await up_reader.readuntil(b"\r\n\r\n")
                status = int(answer_head[9:12])
                writer.write(answer_head)
                bodiless = method == b"HEAD" or status in (204, 304) or status < 200
                answer = await _relay_body(
                    up_reader, writer, answer_head, keep=b"_bulk" in target, bodiless=bodiless
                )
                await writer.drain()
                if self.recording:
                    self.requests.append(
                        _Request(
                            client,
                            method.decode(),
                            target.decode(),
                            status,
                            began,
                            time.time(),
                            body,
                            answer,
                        )
                    )
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass  # a side closed its connection
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()


class ProxyProcess:
    """The counting proxy in a process of its own: its CPU and its latency are its own,
    and the bench's polling does not delay the workers' requests."""

    def __init__(self, upstream: str, clients: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=_proxy_main, args=(upstream, clients, child), daemon=True
        )
        self.process.start()
        child.close()
        self.ports: list[int] = self._conn.recv()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def url(self, client: int) -> str:
        return f"http://127.0.0.1:{self.ports[client]}"

    def record(self) -> None:
        """Forget what was seen so far and record from now on."""
        self._conn.send("record")
        self._conn.recv()

    def take(self) -> list[_Request]:
        """Stop recording; what was recorded."""
        self._conn.send("take")
        requests: list[_Request] = self._conn.recv()
        return requests

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


def _proxy_main(upstream: str, clients: int, conn: Connection) -> None:
    asyncio.run(_proxy_serve(upstream, clients, conn))


async def _proxy_serve(upstream: str, clients: int, conn: Connection) -> None:
    proxy = CountingProxy(upstream)
    await proxy.listen(clients)
    conn.send(proxy.ports)
    stopped = asyncio.Event()

    def command() -> None:
        what = conn.recv()
        if what == "record":
            proxy.requests, proxy.recording = [], True
            conn.send(None)
        elif what == "take":
            proxy.recording = False
            conn.send(proxy.requests)
            proxy.requests = []
        else:
            stopped.set()

    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), command)
    await stopped.wait()
    loop.remove_reader(conn.fileno())


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


async def _relay_body(
    src: asyncio.StreamReader,
    dst: asyncio.StreamWriter,
    head: bytes,
    *,
    keep: bool,
    bodiless: bool = False,
) -> bytes | None:
    """Copy one message body (Content-Length or chunked) from `src` to `dst`."""
    if bodiless:
        return b"" if keep else None
    kept = bytearray()
    if (_header(head, b"transfer-encoding") or b"").lower() == b"chunked":
        while True:
            size_line = await src.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            dst.write(size_line)
            if size == 0:
                while True:  # trailers, up to the empty line
                    line = await src.readuntil(b"\r\n")
                    dst.write(line)
                    if line == b"\r\n":
                        break
                break
            data = await src.readexactly(size + 2)
            dst.write(data)
            if keep:
                kept += data[:-2]
    else:
        length = int(_header(head, b"content-length") or b"0")
        if length:
            data = await src.readexactly(length)
            dst.write(data)
            if keep:
                kept += data
    return bytes(kept) if keep else None


# --- reading what the proxy saw --------------------------------------------------------------


def _short_index(index: str, prefix: str) -> str:
    return ",".join(
        name[len(prefix) + 1 :] if name.startswith(prefix + "-") else name
        for name in index.split(",")
    )


def _operation(method: str, segments: list[str], query: str) -> str:
    """What a single-document or index-level request does, from its method, path and query."""
    if len(segments) == 1:
        return f"{method} index"
    endpoint = segments[1]
    if endpoint == "_doc" and len(segments) > 2:
        if method in ("PUT", "POST"):
            if "op_type=create" in query:
                return "create"
            return "index if_seq_no" if "if_seq_no" in query else "index"
        return {"GET": "get", "HEAD": "exists", "DELETE": "delete"}.get(method, method)
    if endpoint == "_create":
        return "create"
    if endpoint == "_update":
        return "update if_seq_no" if "if_seq_no" in query else "update"
    return endpoint


@dataclass
class _Item:
    """One document operation: a request's own, or one item of a `_bulk`."""

    index: str
    op: str
    doc_id: str
    source: bytes | None


def _bulk_items(body: bytes) -> list[_Item]:
    items: list[_Item] = []
    lines = [line for line in body.split(b"\n") if line.strip()]
    i = 0
    while i < len(lines):
        action = json.loads(lines[i])
        op, meta = next(iter(action.items()))
        has_source = op in ("index", "create", "update")
        source = lines[i + 1] if has_source and i + 1 < len(lines) else None
        items.append(_Item(str(meta.get("_index", "")), op, str(meta.get("_id", "")), source))
        i += 2 if has_source else 1
    return items


def _multi_indices(body: bytes, prefix: str) -> str:
    """The indices an `_mget` (docs) or `_msearch` (header lines) reads."""
    names: set[str] = set()
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        if body.lstrip().startswith(b'{"docs"'):
            names = {str(d.get("_index", "")) for d in json.loads(body)["docs"]}
        else:
            for line in body.split(b"\n"):
                header = json.loads(line) if line.strip() else {}
                if "index" in header and "query" not in header:
                    names.add(str(header["index"]))
    return ", ".join(sorted(_short_index(n, prefix) for n in names))


def _shared_chain(item: _Item) -> bool:
    """A document of the audit index in the one chain all workers share.

    Before per-worker chains every entry was (`_id` is its seq). With per-worker chains
    anchored into a shared one, a per-worker entry's id is `<chain>:<seq>`, and only ids
    without `:` (or documents saying `chain: main`) are the shared chain.
    """
    if not item.index.endswith("-audit") or not item.doc_id:
        return False
    if ":" not in item.doc_id:
        return True
    if item.source is not None and b'"chain"' in item.source:
        with contextlib.suppress(ValueError, AttributeError):
            return bool(json.loads(item.source).get("chain") == "main")
    return False


def _shared_append(item: _Item) -> bool:
    return item.op in ("create", "index") and _shared_chain(item)


def _global_chore(doc_id: str) -> bool:
    """A `chore:*` lease every worker contends for. `chore:<name>@<chain>` (the export of
    one worker's own audit chain) belongs to that chain, and is not one."""
    return doc_id.startswith("chore:") and "@" not in doc_id


def _family(item: _Item) -> str:
    """Which documents of the audit and lease indices an operation touches."""
    if not item.doc_id:
        return ""
    if item.index.endswith("-audit"):
        return "shared chain" if _shared_chain(item) else "own chain"
    if item.index.endswith("-flags"):
        # One flag per name (kill_switch, ...); per-record flags are named by a prefix.
        parts = item.doc_id.split(".")
        return item.doc_id if len(parts) <= 2 else ".".join(parts[:2]) + ".*"
    if item.index.endswith("-leases"):
        kind, _, rest = item.doc_id.partition(":")
        if kind == "chore":
            name, at, _ = rest.partition("@")
            return f"chore:{name}{'@<own chain>' if at else ''}"
        return kind
    return ""


def _label(item: _Item, prefix: str) -> str:
    family = _family(item)
    return f"{_short_index(item.index, prefix)} {item.op}" + (f" [{family}]" if family else "")


@dataclass
class _Seen:
    """One request, classified."""

    request: _Request
    kind: str
    items: list[_Item]
    ok: list[bool]  # per item: created/updated/deleted as asked


def _classify(request: _Request, prefix: str) -> _Seen:
    path, _, query = request.target.partition("?")
    segments = [unquote(s) for s in path.strip("/").split("/") if s]
    first = segments[0] if segments else ""
    if first == "_bulk" or (len(segments) > 1 and segments[1] == "_bulk"):
        items = _bulk_items(request.body or b"")
        if len(segments) > 1:
            for item in items:
                item.index = item.index or first
        ops = sorted({_label(i, prefix) for i in items})
        answers: list[Any] = []
        with contextlib.suppress(ValueError, AttributeError):
            answers = json.loads(request.answer or b"{}").get("items", [])
        ok = [
            200 <= int(next(iter(a.values())).get("status", 500)) < 300
            for a in answers[: len(items)]
        ]
        ok += [False] * (len(items) - len(ok))
        return _Seen(request, f"_bulk ({', '.join(ops)})", items, ok)
    if first in ("_mget", "_msearch"):
        return _Seen(request, f"{first} [{_multi_indices(request.body or b'', prefix)}]", [], [])
    if not first or first.startswith("_"):
        return _Seen(request, f"{request.method} /{first}", [], [])
    op = _operation(request.method, segments, query)
    doc_id = (
        segments[2] if len(segments) > 2 and segments[1] in ("_doc", "_create", "_update") else ""
    )
    item = _Item(first, op, doc_id, request.body)
    return _Seen(request, _label(item, prefix), [item], [200 <= request.status < 300])


def _chain_appends(seen: list[_Seen]) -> list[tuple[float, float]]:
    """Each worker's appends to the shared chain: first attempt to the one that took.

    One process appends one entry at a time (its attempts queue on a lock), so a
    worker's shared-chain creates are a run of 409s ended by a success.
    """
    spans: list[tuple[float, float]] = []
    started: dict[int, float] = {}
    for s in seen:
        shared = [ok for item, ok in zip(s.items, s.ok, strict=True) if _shared_append(item)]
        if not shared:
            continue
        client = s.request.client
        began = started.setdefault(client, s.request.began)
        if all(shared):
            spans.append((began, s.request.ended))
            del started[client]
    return spans


def _chore_holds(seen: list[_Seen], end: float) -> dict[str, list[tuple[float, float]]]:
    """Each hold of a global `chore:*` lease, by name: the write that took it to the delete
    that let it go."""
    spans: dict[str, list[tuple[float, float]]] = {}
    held: dict[tuple[int, str], float] = {}
    for s in seen:
        for item, ok in zip(s.items, s.ok, strict=True):
            if not item.index.endswith("-leases") or not _global_chore(item.doc_id):
                continue
            key = (s.request.client, item.doc_id)
            taking = item.op in ("create", "index if_seq_no", "index")
            if taking and ok and key not in held:  # a create, or a takeover of an expired one
                held[key] = s.request.began
            elif item.op == "delete" and key in held:
                spans.setdefault(item.doc_id, []).append((held.pop(key), s.request.ended))
    for (_, name), began in held.items():
        spans.setdefault(name, []).append((began, end))
    return spans


def _clip(spans: list[tuple[float, float]], lo: float, hi: float) -> list[tuple[float, float]]:
    return [(max(a, lo), min(b, hi)) for a, b in spans if b > lo and a < hi]


def _union(spans: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= reach:
            continue
        total += b - max(a, reach)
        reach = b
    return total


# --- processes -------------------------------------------------------------------------------


def _cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """utime + stime of a process (and with `tree`, of its descendants)."""
    pids = {pid}
    if tree:
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    parents[int(entry.name)] = int(_stat(int(entry.name))[1])
        grew = True
        while grew:
            more = {p for p, parent in parents.items() if parent in pids} - pids
            pids |= more
            grew = bool(more)
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(p)
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: [state, ppid, ...] (fields 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metric(text: str, name: str, label: str | None = None) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (label is None or label in line):
            rest = line[len(name) :]
            if rest[:1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    health_port: int
    log: Path


# --- one run ---------------------------------------------------------------------------------


@dataclass
class RunResult:
    workers: int
    records: int
    answered: int
    wall: float  # first decision to last
    rate: float
    worker_cpu: float  # seconds, all worker processes
    broker_cpu: float | None
    node_cpu: float | None
    proxy_cpu: float
    peak_rss: list[float]
    requests: int
    kinds: Counter[str]
    conflicts: Counter[str]
    serial: float  # seconds inside serial sections, within the decision window
    chain: float
    chore: float
    serial_busy: float  # union of serial sections / wall
    appends: int
    chain_conflicts: int
    chores: dict[str, float]
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def serial_fraction(self) -> float:
        return self.serial / (self.workers * self.wall)


@dataclass
class Env:
    bootstrap: str
    es_url: str
    proxy: ProxyProcess
    workdir: Path
    broker_pid: int | None
    node_pid: int | None
    records: list[tuple[bytes, bytes]]
    in_flight: int | None = None  # kafka.max_in_flight per worker; None: the default
    alerts_at_once: int | None = None  # runtime.max_concurrent_alerts; None: the default
    lease_linger: float | None = None  # elasticsearch.lease_linger_seconds; None: the default


def _topics(tag: str) -> TopicsConfig:
    p = f"bench.{tag}"
    return TopicsConfig(
        alerts=f"{p}.alerts",
        approvals=f"{p}.approvals",
        decisions=f"{p}.decisions",
        proposals=f"{p}.proposals",
        actions=f"{p}.actions",
        audit=f"{p}.audit",
        dlq=f"{p}.alerts.dlq",
        alerts_normalized=f"{p}.alerts.normalized",
        risk=f"{p}.risk",
        verdicts=f"{p}.verdicts",
    )


def _write_config(
    path: Path, env: Env, kafka: KafkaConfig, prefix: str, worker: int, port: int, home: Path
) -> None:
    elasticsearch: dict[str, Any] = {
        "hosts": [env.proxy.url(worker)],
        "index_prefix": prefix,
        "number_of_replicas": 0,
    }
    if "audit_chain" in ElasticsearchConfig.model_fields:
        # Each worker stands for a machine of its own: its own audit chain (the default,
        # `<agent_id>@<hostname>`, would be one chain for all of them on this machine).
        elasticsearch["audit_chain"] = f"bench-w{worker}"
    if env.lease_linger is not None:
        elasticsearch["lease_linger_seconds"] = env.lease_linger
    config = {
        "store": str(home / "local.db"),
        "store_backend": "elasticsearch",
        "audit_key": AUDIT_KEY,
        "elasticsearch": elasticsearch,
        "kafka": {
            "bootstrap_servers": kafka.bootstrap_servers,
            "group_id": kafka.group_id,
            "topics": kafka.topics.model_dump(exclude={"extra_inputs", "alerts_format"}),
            "layout": {"partitions": PARTITIONS, "replication_factor": 1},
            "health_port": port,
            **({"max_in_flight": env.in_flight} if env.in_flight else {}),
        },
        # One EDR stand-in for every machine, as in the acceptance test.
        "connectors": {"containment": {"journal": str(env.workdir / "edr.jsonl")}},
        "data_dirs": [str(env.workdir)],
        "log_level": "WARNING",
    }
    if env.alerts_at_once:
        config["runtime"] = {"max_concurrent_alerts": env.alerts_at_once}
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")  # JSON is YAML


def _spawn(config: Path, log: Path) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SOC_AGENT_")}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "soc_agent", "worker", "--config", str(config)],
            cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _check_alive(workers: list[Worker]) -> None:
    for i, w in enumerate(workers):
        if w.process.poll() is not None:
            tail = w.log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"worker {i} exited with {w.process.returncode}:\n{tail}")


async def _metrics(client: httpx.AsyncClient, workers: list[Worker]) -> list[str]:
    out = []
    for w in workers:
        try:
            out.append((await client.get(f"http://127.0.0.1:{w.health_port}/metrics")).text)
        except httpx.TransportError:
            out.append("")
    return out


async def _wait_assigned(
    client: httpx.AsyncClient, workers: list[Worker], topic: str, within: float
) -> None:
    """Until the group settled: every worker holds alert partitions, all six are held."""
    deadline = time.monotonic() + within
    label = f'topic="{topic}"'
    while True:
        _check_alive(workers)
        held = [
            _metric(t, "soc_worker_assigned_partitions", label)
            for t in await _metrics(client, workers)
        ]
        if all(held) and sum(held) == PARTITIONS:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"workers did not share the {PARTITIONS} partitions: {held}")
        await asyncio.sleep(0.25)


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> Counter[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in records]
        sent = Counter(md.partition for md in await asyncio.gather(*futures))
    finally:
        await producer.stop()
    return sent


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(
            group, partitions=[TopicPartition(topic, p) for p in range(PARTITIONS)]
        )
    except KafkaError:  # e.g. no offsets topic yet: nothing committed
        return {}
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def _decision_times(bootstrap: str, topic: str, expected: int) -> tuple[int, float, float]:
    """(alert records answered, first and last decision's timestamp in seconds)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    sources: set[str] = set()
    stamps: list[int] = []
    try:
        quiet = time.monotonic()
        while len(sources) < expected and time.monotonic() - quiet < 3:
            batch = await consumer.getmany(timeout_ms=300, max_records=5000)
            for records in batch.values():
                quiet = time.monotonic()
                for r in records:
                    headers = dict(r.headers or ())
                    sources.add(headers.get("soc-source", b"").decode())
                    stamps.append(r.timestamp)
    finally:
        await consumer.stop()
    if not stamps:
        raise SystemExit(f"no decisions on {topic}")
    return len(sources), min(stamps) / 1000, max(stamps) / 1000


async def _run(env: Env, n: int, tag: str, records: list[tuple[bytes, bytes]]) -> RunResult:
    topics = _topics(tag)
    prefix = f"bench-w{n}-{tag}"
    kafka = KafkaConfig(
        bootstrap_servers=env.bootstrap,
        group_id=f"bench-{tag}",
        topics=topics,
        layout=TopicLayout(partitions=PARTITIONS, replication_factor=1),
    )
    await create_topics(kafka)
    workers: list[Worker] = []
    home = env.workdir / f"w{n}-{tag}"
    home.mkdir()
    try:
        for i in range(n):
            port = _free_port()
            config = home / f"worker-{i}.yaml"
            (home / f"m{i}").mkdir()
            _write_config(config, env, kafka, prefix, i, port, home / f"m{i}")
            log = home / f"worker-{i}.log"
            workers.append(Worker(_spawn(config, log), port, log))
        async with httpx.AsyncClient(timeout=5) as client:
            await _wait_assigned(client, workers, topics.alerts, within=180)
            # Start-up (index creation, keying the chain) is not the alerts' cost.
            env.proxy.record()
            cpu0 = [_cpu_seconds(w.process.pid) for w in workers]
            broker0 = _cpu_seconds(env.broker_pid, tree=True) if env.broker_pid else None
            node0 = _cpu_seconds(env.node_pid, tree=True) if env.node_pid else None
            proxy0 = _cpu_seconds(env.proxy.pid)
            sent = await _produce(env.bootstrap, topics.alerts, records)
            deadline = time.monotonic() + max(300.0, len(records) / 2)
            while True:
                _check_alive(workers)
                done = await _committed(env.bootstrap, kafka.group_id, topics.alerts)
                if all(done.get(p, 0) >= c for p, c in sent.items()):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"not all committed in time: {done} of {dict(sent)}")
                await asyncio.sleep(0.25)
            requests = env.proxy.take()
            end = time.time()
            worker_cpu = sum(_cpu_seconds(w.process.pid) for w in workers) - sum(cpu0)
            broker_cpu = (
                _cpu_seconds(env.broker_pid, tree=True) - broker0
                if env.broker_pid and broker0 is not None
                else None
            )
            node_cpu = (
                _cpu_seconds(env.node_pid, tree=True) - node0
                if env.node_pid and node0 is not None
                else None
            )
            proxy_cpu = _cpu_seconds(env.proxy.pid) - proxy0
            texts = await _metrics(client, workers)
            outcomes: Counter[str] = Counter()
            for text in texts:
                for line in text.splitlines():
                    if line.startswith("soc_worker_decisions_total{"):
                        outcomes[line.split('"')[1]] += int(float(line.rsplit(" ", 1)[1]))
            rss = [_peak_rss_mib(w.process.pid) for w in workers]
        await _stop(workers)
    finally:
        for w in workers:
            if w.process.poll() is None:
                w.process.kill()
                w.process.wait()
    answered, first, last = await _decision_times(env.bootstrap, topics.decisions, len(records))
    wall = last - first
    seen = [_classify(r, prefix) for r in sorted(requests, key=lambda r: r.began)]
    kinds = Counter(s.kind for s in seen)
    conflicts = Counter(s.kind for s in seen if s.request.status == 409)
    for s in seen:  # conflicts inside bulk answers count too
        if s.kind.startswith("_bulk") and s.request.answer:
            with contextlib.suppress(ValueError, AttributeError):
                items = json.loads(s.request.answer).get("items", [])
                conflicts[s.kind] += sum(
                    1 for a in items if next(iter(a.values())).get("status") == 409
                )
    appends = _chain_appends(seen)
    chores = _chore_holds(seen, end)
    chain = _clip(appends, first, last)
    by_chore = {name: _clip(spans, first, last) for name, spans in chores.items()}
    chore = [span for spans in by_chore.values() for span in spans]
    await _drop_indices(env.es_url, prefix)
    return RunResult(
        workers=n,
        records=len(records),
        answered=answered,
        wall=wall,
        rate=len(records) / wall,
        worker_cpu=worker_cpu,
        broker_cpu=broker_cpu,
        node_cpu=node_cpu,
        proxy_cpu=proxy_cpu,
        peak_rss=rss,
        requests=len(seen),
        kinds=kinds,
        conflicts=conflicts,
        serial=sum(b - a for a, b in chain + chore),
        chain=sum(b - a for a, b in chain),
        chore=sum(b - a for a, b in chore),
        serial_busy=_union(chain + chore) / wall,
        appends=len(appends),
        chain_conflicts=sum(
            1
            for s in seen
            for item, ok in zip(s.items, s.ok, strict=True)
            if _shared_append(item) and not ok
        ),
        chores={name: sum(b - a for a, b in spans) for name, spans in by_chore.items()},
        outcomes=dict(outcomes),
    )


async def _stop(workers: list[Worker]) -> None:
    """SIGTERM and wait without blocking the loop: draining workers still need the proxy."""
    for w in workers:
        if w.process.poll() is None:
            w.process.send_signal(signal.SIGTERM)
    for _ in range(600):  # 60 s
        if all(w.process.poll() is not None for w in workers):
            return
        await asyncio.sleep(0.1)


async def _drop_indices(es_url: str, prefix: str) -> None:
    async with AsyncElasticsearch(es_url) as client:
        names = list(await client.indices.get(index=f"{prefix}-*", expand_wildcards="all"))
        if names:
            await client.indices.delete(index=",".join(names))


# --- ceilings --------------------------------------------------------------------------------


async def _bulk_ceiling(es_url: str, records: list[tuple[bytes, bytes]]) -> float:
    """Documents per second that `_bulk` (500 a request) writes of the alerts' own bytes."""
    index = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    async with AsyncElasticsearch(es_url, request_timeout=60) as es:
        await es.indices.create(
            index=index,
            settings={"number_of_shards": 1, "number_of_replicas": 0},
            mappings={"dynamic": False},
        )
        try:
            began = time.perf_counter()
            for start in range(0, len(records), 500):
                ops: list[Any] = []
                for _, value in records[start : start + 500]:
                    ops += [{"index": {"_index": index}}, json.loads(value)]
                await es.bulk(operations=ops)
            return len(records) / (time.perf_counter() - began)
        finally:
            await es.indices.delete(index=index)


async def _round_trips(url: str, index: str, seconds: float = 3.0, tasks: int = 8) -> float:
    """Small conditional creates per second with `tasks` in flight (the workers' kind)."""
    async with AsyncElasticsearch(url, request_timeout=30) as es:
        stop_at = time.perf_counter() + seconds
        counts = [0] * tasks

        async def one(t: int) -> None:
            while time.perf_counter() < stop_at:
                await es.index(
                    index=index,
                    id=f"{uuid.uuid4().hex}",
                    document={"owner": "bench", "n": counts[t]},
                    op_type="create",
                )
                counts[t] += 1

        began = time.perf_counter()
        await asyncio.gather(*(one(t) for t in range(tasks)))
        return sum(counts) / (time.perf_counter() - began)


async def _warm_up(es_url: str, seconds: float = 8.0, tasks: int = 8) -> None:
    """The requests the workers make most (create, get, refresh, search), until the node's
    JIT has compiled their paths."""
    index = f"bench-warm-{uuid.uuid4().hex[:8]}"
    async with AsyncElasticsearch(es_url, request_timeout=30) as es:
        await es.indices.create(
            index=index, settings={"number_of_shards": 1, "number_of_replicas": 0}
        )
        stop_at = time.perf_counter() + seconds

        async def one(t: int) -> None:
            n = 0
            while time.perf_counter() < stop_at:
                doc_id = f"{t}-{n}"
                await es.index(
                    index=index, id=doc_id, document={"owner": f"o{t}", "n": n}, op_type="create"
                )
                await es.get(index=index, id=doc_id)
                if n % 8 == 0:
                    await es.indices.refresh(index=index)
                    await es.search(index=index, query={"term": {"owner": f"o{t}"}}, size=5)
                n += 1

        try:
            await asyncio.gather(*(one(t) for t in range(tasks)))
        finally:
            await es.indices.delete(index=index)


async def _round_trip_ceilings(es_url: str, proxy: ProxyProcess) -> tuple[float, float]:
    index = f"bench-rt-{uuid.uuid4().hex[:8]}"
    async with AsyncElasticsearch(es_url) as es:
        await es.indices.create(
            index=index, settings={"number_of_shards": 1, "number_of_replicas": 0}
        )
    try:
        direct = await _round_trips(es_url, index)
        proxied = await _round_trips(proxy.url(len(proxy.ports) - 1), index)
    finally:
        async with AsyncElasticsearch(es_url) as es:
            await es.indices.delete(index=index)
    return direct, proxied


# --- the storm and the report ----------------------------------------------------------------


def _records(alerts: int) -> list[tuple[bytes, bytes]]:
    """The storm, one Kafka record per line, keyed as the webhook keys them (primary entity)."""
    pivots = Correlator(InMemoryCorrelationState(), load_settings().correlation).pivots
    out = []
    for line in make_storm(alerts).splitlines():
        parsed = parse_payload(line, source="bench").alerts
        key = partition_key(parsed[0], pivots(parsed[0])) if parsed else b"none"
        out.append((key, line))
    return out


def _report(
    results: list[RunResult], ceilings: dict[str, float], env: Env, top: int
) -> Iterator[str]:
    records = len(env.records)
    size = sum(len(v) for _, v in env.records) / 1e6
    yield (
        f"input: {records:,} alert records ({size:.1f} MB, 10% redelivered) on {PARTITIONS} "
        f"partitions, keyed by primary entity; {os.cpu_count()} cores shared by the broker, "
        "the node, the proxy and the workers"
    )
    yield ""
    yield "ceilings (same run, same machine):"
    yield f"  Kafka, plain aiokafka consume    : {ceilings['consume']:10,.0f} records/s"
    yield f"  Elasticsearch _bulk of the alerts: {ceilings['bulk']:10,.0f} documents/s"
    direct, proxied = ceilings["rt_direct"], ceilings["rt_proxy"]
    yield (
        f"  Elasticsearch round trips, 8 in flight: {direct:,.0f}/s direct, "
        f"{proxied:,.0f}/s through the counting proxy"
    )
    base = results[0] if results and results[0].workers == 1 else None
    yield ""
    yield (
        "workers  alerts/s  speed-up  worker CPU  broker   node  proxy  CPU bound  ES req  "
        "RT ceiling  peak RSS"
    )
    yield (
        "                              ms/alert  ms/alert  ms/a   ms/a   alerts/s  /alert  "
        "alerts/s    MiB/worker"
    )
    for r in results:
        speedup = f"{r.rate / base.rate:7.2f}x" if base else "      -"
        broker = f"{r.broker_cpu * 1000 / records:6.1f}" if r.broker_cpu is not None else "     -"
        node = f"{r.node_cpu * 1000 / records:6.1f}" if r.node_cpu is not None else "     -"
        per_alert = r.requests / records
        # What the machine's cores could decide if they did nothing else: every process's CPU.
        cpu = r.worker_cpu + (r.broker_cpu or 0) + (r.node_cpu or 0) + r.proxy_cpu
        bound = (os.cpu_count() or 1) * records / cpu
        yield (
            f"{r.workers:7d}  {r.rate:8.1f}  {speedup}  {r.worker_cpu * 1000 / records:10.1f}  "
            f"{broker}  {node}  {r.proxy_cpu * 1000 / records:5.1f}  {bound:9.1f}  "
            f"{per_alert:6.1f}  "
            f"{direct / per_alert:10.0f}  {' '.join(f'{m:.0f}' for m in r.peak_rss)}"
        )
    yield ""
    yield (
        "workers  serial ms/alert (chain + chores)  serial fraction  serial busy  "
        "Amdahl bound at N  limit 1/s"
    )
    for r in results:
        s = r.serial_fraction
        bound = 1 / (s + (1 - s) / r.workers)
        limit = f"{1 / s:9.1f}x" if s > 0 else "        inf"
        yield (
            f"{r.workers:7d}  {r.serial * 1000 / records:6.2f} ({r.chain * 1000 / records:.2f} + "
            f"{r.chore * 1000 / records:.2f}){'':>13}  {s:14.1%}  {r.serial_busy:10.1%}  "
            f"{bound:16.2f}x  {limit}"
        )
    if base is not None:
        s = base.serial_fraction
        bounds = ", ".join(f"N={n}: {1 / (s + (1 - s) / n):.2f}x" for n in (1, 2, 3))
        yield (
            f"Amdahl from the 1-worker serial fraction ({s:.1%}): {bounds}; "
            f"limit 1/s = {1 / s if s else float('inf'):.1f}x (target: s <= 5%)"
        )
    yield (
        "  CPU bound: cores / (workers + broker + node + proxy CPU per alert); "
        "RT ceiling: round trips/s direct / ES requests per alert"
    )
    yield (
        "  serial: shared-chain appends (first attempt to the create that took, 409 retries "
        "included) and chore:* lease holds, per worker-second of the decision window; "
        "busy: share of the wall time some worker was inside one"
    )
    yield ""
    yield (
        f"Elasticsearch requests per alert by kind (target <= 10); 409s in brackets; "
        f"top {top} of the {results[-1].workers}-worker run first:"
    )
    header = "".join(f"  {r.workers}w req/alert" for r in results)
    yield f"{'kind':<58}{header}"
    order = [k for k, _ in (results[-1].kinds + Counter()).most_common()]
    for r in results:
        order += [k for k in r.kinds if k not in order]
    shown = order[:top]
    for kind in shown:
        cells = ""
        for r in results:
            cell = f"{r.kinds[kind] / records:.2f}"
            if r.conflicts[kind]:
                cell += f" ({r.conflicts[kind] / records:.2f})"
            cells += f"  {cell:>14}"
        yield f"{kind[:58]:<58}{cells}"
    rest = "".join(
        f"  {sum(r.kinds[k] for k in r.kinds if k not in shown) / records:>14.2f}" for r in results
    )
    yield f"{'(all other kinds)':<58}{rest}"
    totals = "".join(f"  {r.requests / records:>14.2f}" for r in results)
    yield f"{'total':<58}{totals}"
    yield ""
    for r in results:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))
        chores = ", ".join(
            f"{name} {seconds * 1000 / records:.2f} ms/alert"
            for name, seconds in sorted(r.chores.items())
        )
        yield (
            f"{r.workers} worker(s): {r.answered:,} of {records:,} records answered in "
            f"{r.wall:.1f} s; outcomes: {outcomes}"
        )
        yield (
            f"    shared-chain appends {r.appends:,} ({r.appends / records:.2f}/alert, "
            f"{r.chain_conflicts:,} attempts refused with 409); "
            f"global chore holds: {chores or 'none'}"
        )


async def _main(args: argparse.Namespace, env: Env) -> list[str]:
    # Ceilings first, each measured after a pass that warms the JVMs (JIT) up; that also
    # spares the first run the node's warm-up.
    ceilings: dict[str, float] = {}
    topic = f"bench.{uuid.uuid4().hex[:8]}.ceiling"
    await create_topics(
        KafkaConfig(bootstrap_servers=env.bootstrap),
        [TopicPlan(topic, PARTITIONS, 1, {})],
    )
    await _produce(env.bootstrap, topic, env.records)
    await consume_ceiling(env.bootstrap, len(env.records), topic)
    ceilings["consume"] = await consume_ceiling(env.bootstrap, len(env.records), topic)
    await _warm_up(env.es_url, seconds=5)
    await _bulk_ceiling(env.es_url, env.records)
    ceilings["bulk"] = await _bulk_ceiling(env.es_url, env.records)
    ceilings["rt_direct"], ceilings["rt_proxy"] = await _round_trip_ceilings(env.es_url, env.proxy)
    if args.warmup:
        # One worker through a short storm of its own: the node's, the broker's and the
        # workers' code paths compiled before anything is measured.
        warm = await _run(env, 1, uuid.uuid4().hex[:8], env.records[: args.warmup])
        print(f"  warm-up: {warm.records} records, {warm.rate:.1f} alerts/s", file=sys.stderr)
    results: list[RunResult] = []
    for n in args.workers:
        result = await _run(env, n, uuid.uuid4().hex[:8], env.records)
        results.append(result)
        print(
            f"  {n} worker(s): {result.rate:.1f} alerts/s, "
            f"{result.requests / len(env.records):.1f} ES requests/alert",
            file=sys.stderr,
        )
    return list(_report(results, ceilings, env, args.top))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=600, help="storm size (+10%% redelivered)")
    parser.add_argument(
        "--warmup", type=int, default=150, help="records of a first, unmeasured 1-worker run"
    )
    parser.add_argument(
        "--workers",
        type=lambda s: [int(n) for n in s.split(",")],
        default=[1, 2, 3],
        help="worker counts to run, in order (default 1,2,3)",
    )
    parser.add_argument("--kafka", metavar="HOST:PORT", help="use this broker")
    parser.add_argument("--elasticsearch", metavar="URL", help="use this node")
    parser.add_argument("--top", type=int, default=24, help="request kinds to list")
    parser.add_argument(
        "--in-flight", type=int, help="kafka.max_in_flight of each worker (default: its default)"
    )
    parser.add_argument(
        "--alerts-at-once",
        type=int,
        help="runtime.max_concurrent_alerts of each worker (default: its default)",
    )
    parser.add_argument(
        "--lease-linger",
        type=float,
        help="elasticsearch.lease_linger_seconds of each worker (default: its default)",
    )
    args = parser.parse_args()
    records = _records(args.alerts)
    from tests.infra import elasticsearch as es_infra
    from tests.infra import kafka as kafka_infra

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = None if args.kafka else kafka_infra.start(log_dir=workdir / "kafka")
        node = None
        try:
            node = None if args.elasticsearch else es_infra.start()
            es_url = args.elasticsearch or (node.url if node else "")
            bootstrap = args.kafka or (broker.bootstrap if broker else "")
            broker_pid = broker.process.pid if broker and broker.process else None
            proxy = ProxyProcess(es_url, max(args.workers) + 1)  # the last port is the bench's
            env = Env(
                bootstrap=bootstrap,
                es_url=es_url,
                proxy=proxy,
                workdir=workdir,
                broker_pid=broker_pid,
                node_pid=node.process.pid if node else None,
                records=records,
                in_flight=args.in_flight,
                alerts_at_once=args.alerts_at_once,
                lease_linger=args.lease_linger,
            )
            try:
                lines = asyncio.run(_main(args, env))
            finally:
                proxy.close()
        finally:
            if node is not None:
                node.stop()
            if broker is not None:
                broker.close()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

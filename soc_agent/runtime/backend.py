"""Where state lives, and how the processes sharing it take turns.

- `sqlite` (the embedded default): one store file; processes of one machine
  serialise correlation and per-incident decisions with `flock`s beside it.
- `elasticsearch`: workers on any number of machines share indices named
  `<index_prefix>-*`. Correlation holds leases on the index keys it touches
  (fingerprint, pivot entities) and writes incidents with compare-and-set;
  decisions hold a lease per incident; one-at-a-time chores (audit export,
  maintenance) hold named leases. A dead worker's leases expire after
  `elasticsearch.lease_ttl_seconds`.

Everything above the backend (agent, executor, proposals, API, worker) sees
the same `StateStore`, `AuditLog` and lock protocols (`soc_agent.store.locks`)
either way.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from soc_agent.audit import AuditLog, SQLiteAuditLog
from soc_agent.audit.keying import (
    chain_key_id,
    ensure_keyed,
    key_file_for,
    read_key_file,
    write_new_key_file,
)
from soc_agent.correlate import Correlator
from soc_agent.errors import StoreError
from soc_agent.runtime.file_locks import (
    FileIncidentLocks,
    FileLock,
    ProcessLockedCorrelator,
    lock_path,
)
from soc_agent.settings import Settings
from soc_agent.store import SQLiteStore, StateStore
from soc_agent.store.locks import IncidentLocks, Lock

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

    from soc_agent.audit.elasticsearch_log import ElasticsearchAuditLog
    from soc_agent.store.elasticsearch_leases import Lease, LeaseManager

__all__ = ["Backend", "open_backend"]

log = logging.getLogger(__name__)

_MAX_CHAINS_PER_NAME = 64  # processes of one machine (or one configured chain name)


@dataclass
class Backend:
    kind: Literal["sqlite", "elasticsearch"]
    settings: Settings
    store: StateStore
    audit: AuditLog
    es: AsyncElasticsearch | None = None
    leases: LeaseManager | None = None
    _file_locks: dict[str, FileLock] = field(default_factory=dict)
    _incident_file_locks: FileIncidentLocks | None = None

    def lock(self, name: str) -> Lock:
        """The named lock every process sharing this backend contends for."""
        if self.leases is not None:
            return self.leases.lock(f"chore:{name}")
        return self._file_lock(name)

    def _file_lock(self, name: str) -> FileLock:
        if name not in self._file_locks:
            self._file_locks[name] = FileLock(lock_path(self.settings.store, name))
        return self._file_locks[name]

    def correlator(self, *, shared: bool) -> Correlator:
        """The core correlator; `shared` when other processes correlate into this store."""
        config = self.settings.correlation
        if self.leases is not None:
            from soc_agent.correlate.concurrent import ConcurrentCorrelator
            from soc_agent.store.elasticsearch import ElasticsearchStore

            assert isinstance(self.store, ElasticsearchStore)
            return ConcurrentCorrelator(
                self.store.correlation_view,
                config,
                key_locks=self.leases,
                hand_over=incident_lock_name,
            )
        if shared:
            lock = self._file_lock("correlation")
            return ProcessLockedCorrelator(self.store, config, lock=lock)
        return Correlator(self.store, config)

    def incident_locks(self, *, shared: bool) -> IncidentLocks | None:
        """Per-incident decision locks spanning processes, or None for the in-process ones."""
        if self.leases is not None:
            return _LeaseIncidentLocks(self.leases)
        if not shared:
            return None
        if self._incident_file_locks is None:
            self._incident_file_locks = FileIncidentLocks(self.settings.store)
        return self._incident_file_locks

    def _close_files(self) -> None:
        for lock in self._file_locks.values():
            lock.close()
        if self._incident_file_locks is not None:
            self._incident_file_locks.close()


class _LeaseIncidentLocks:
    """`IncidentLocks` on leases: one per incident, so workers on any machine take turns."""

    def __init__(self, leases: LeaseManager) -> None:
        self._leases = leases

    def __getitem__(self, incident_id: str) -> AbstractAsyncContextManager[bool]:
        return self._leases.lock(incident_lock_name(incident_id), linger=True).hold()


def incident_lock_name(incident_id: str) -> str:
    """The lease the decisions of one incident take turns on."""
    return f"incident:{incident_id}"


@asynccontextmanager
async def open_backend(
    settings: Settings, *, writer: bool = True, inline_store: bool = False
) -> AsyncIterator[Backend]:
    """Open (and on the way out close) the configured backend's store, audit log and locks.

    A `writer` will append to the audit chain, so it holds a key and the chain
    is keyed before it returns (see `audit.keying`); readers (listing,
    verifying) use whatever key exists and create none. `inline_store`: SQLite
    statements run on the event loop's thread (see `SQLiteStore`).
    """
    if settings.store_backend == "elasticsearch":
        async with _open_elasticsearch(settings, writer=writer) as backend:
            yield backend
        return
    store, audit = await _open_sqlite(settings, writer=writer, inline=inline_store)
    backend = Backend("sqlite", settings, store, audit)
    try:
        yield backend
    finally:
        backend._close_files()
        audit.close()
        store.close()


async def _open_sqlite(
    settings: Settings, *, writer: bool, inline: bool
) -> tuple[SQLiteStore, SQLiteAuditLog]:
    """The store and the audit log, prepared by one process of the machine at a time.

    Processes starting together on a new store would otherwise create its schema, switch
    it to WAL and generate its audit key all at once: one was seen to find the chain
    keyed by another before that one's key file was there, and reads beside the
    creation to fail with SQLITE_IOERR_SHORT_READ.
    """
    setup = FileLock(lock_path(settings.store, "setup"))
    try:
        async with setup.hold():
            store = SQLiteStore(settings.store, inline=inline)
            try:
                return store, await _open_sqlite_audit(settings, writer=writer)
            except BaseException:
                store.close()
                raise
    finally:
        setup.close()


async def _open_sqlite_audit(settings: Settings, *, writer: bool) -> SQLiteAuditLog:
    """The SQLite audit log with its key: configured, or the key file beside the store."""
    key, where = settings.audit_hmac_key(), "audit_key"
    key_file = key_file_for(settings.store)
    if key is None:
        key, where = read_key_file(key_file), str(key_file)
    audit = SQLiteAuditLog(settings.store, key=key)
    if not writer:
        return audit
    try:
        if key is None:
            keyed_with = await chain_key_id(audit)
            if keyed_with is not None:
                raise StoreError(
                    f"the audit chain is keyed (key id {keyed_with}) but its key file "
                    f"{key_file} is missing: restore it, or configure audit_key"
                )
            audit.close()
            key = write_new_key_file(key_file)
            audit = SQLiteAuditLog(settings.store, key=key)
        await ensure_keyed(audit, key, actor=settings.agent_id, where=where)
    except BaseException:
        audit.close()
        raise
    return audit


@asynccontextmanager
async def _open_elasticsearch(settings: Settings, *, writer: bool) -> AsyncIterator[Backend]:
    from elasticsearch import ApiError, TransportError

    from soc_agent.audit.chains import ChainedAuditLog
    from soc_agent.audit.elasticsearch_log import ElasticsearchAuditLog
    from soc_agent.elasticsearch_setup import index_name
    from soc_agent.store.elasticsearch import ElasticsearchStore
    from soc_agent.store.elasticsearch_leases import LeaseManager

    config = settings.elasticsearch
    prefix = config.index_prefix
    key = settings.audit_hmac_key()
    if writer and key is None:
        # Workers on several machines share one chain: a key generated here would
        # differ per machine, so it must come from one configured secret.
        raise StoreError(
            "store_backend elasticsearch needs audit_key (SOC_AGENT_AUDIT_KEY): the shared "
            "audit chain is HMAC-sealed with one key every worker holds"
        )
    async with AsyncExitStack() as stack:
        client = config.client()
        stack.push_async_callback(client.close)
        store = ElasticsearchStore(
            client,
            prefix=prefix,
            number_of_replicas=config.number_of_replicas,
            refresh_interval=config.refresh_interval,
        )
        shared = ElasticsearchAuditLog(
            client,
            index=index_name(prefix, "audit"),
            key=key,
            number_of_replicas=config.number_of_replicas,
        )
        leases = LeaseManager(
            client,
            index=index_name(prefix, "leases"),
            owner=f"{settings.agent_id}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            ttl_seconds=config.lease_ttl_seconds,
            linger_seconds=config.lease_linger_seconds,
            number_of_replicas=config.number_of_replicas,
        )
        own: ElasticsearchAuditLog | None = None
        try:
            await store.ensure_indices()
            await shared.ensure_index()
            await leases.ensure_index()
            stack.push_async_callback(leases.aclose)
            if writer:
                own = await _own_chain(
                    stack, shared, leases, config.audit_chain or _default_chain(settings)
                )
            if key is not None and own is not None:
                for chain in (shared, own):
                    await ensure_keyed(chain, key, actor=settings.agent_id, where="audit_key")
        except ApiError as exc:
            raise StoreError(
                f"cannot use Elasticsearch at {_hosts(config.hosts)}: "
                f"HTTP {exc.meta.status} {exc.error}"
            ) from None
        except TransportError as exc:
            raise StoreError(
                f"cannot reach Elasticsearch at {_hosts(config.hosts)}: {type(exc).__name__}"
            ) from None
        audit = ChainedAuditLog(
            shared,
            own,
            actor=settings.agent_id,
            anchor_seconds=config.audit_chain_anchor_seconds,
        )
        audit.start()
        stack.push_async_callback(audit.aclose)
        yield Backend("elasticsearch", settings, store, audit, es=client, leases=leases)


async def _own_chain(
    stack: AsyncExitStack, shared: ElasticsearchAuditLog, leases: LeaseManager, name: str
) -> ElasticsearchAuditLog:
    """This process's chain: `name`, or `name.2`, `name.3`, ... while live processes hold
    those. Held by its lease for the process's life, a chain has one writer, so its
    entries go in batches (`write_alone_while`)."""
    base = name[: 200 - len(f".{_MAX_CHAINS_PER_NAME}")]
    # Renewed every third of the TTL: less than half left means a renewal is late.
    margin = leases.ttl_seconds / 2
    for n in range(1, _MAX_CHAINS_PER_NAME + 1):
        chain = name if n == 1 else f"{base}.{n}"
        lease = leases.lock(f"audit-chain:{chain}")
        if not await stack.enter_async_context(lease.hold(wait=False)):
            continue
        if n > 1:
            log.info("audit chain %s is another process's: this one appends to %s", name, chain)
        own = shared.sibling(chain)
        own.write_alone_while(partial(_in_time, lease, margin))
        return own
    raise StoreError(
        f"audit chains {name} to {base}.{_MAX_CHAINS_PER_NAME} are all held by live "
        "processes: give this one its own elasticsearch.audit_chain"
    )


def _in_time(lease: Lease, margin: float) -> bool:
    return lease.remaining_seconds() > margin


def _default_chain(settings: Settings) -> str:
    """`<agent_id>@<hostname>`, cut to what a chain name may hold: one chain per machine
    (per pod), so only the processes of one machine ever contend for it."""
    name = re.sub(r"[^A-Za-z0-9._@-]", "-", f"{settings.agent_id}@{socket.gethostname()}")
    return name.lstrip("._@-")[:200] or "worker"


def _hosts(hosts: list[str]) -> str:
    """The hosts without any user:password@ someone wrote into a URL."""
    return ", ".join(
        urlsplit(h)._replace(netloc=urlsplit(h).netloc.rpartition("@")[2]).geturl() for h in hosts
    )

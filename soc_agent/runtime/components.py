"""Wiring: settings in, the agent's components out. Both runtimes and the CLI use it."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from soc_agent_connectors import CapabilityKind, Connector, VerdictHistoryConnector

from soc_agent.actions.executor import Executor
from soc_agent.audit import AuditLog
from soc_agent.audit.anchors import AnchorWriter
from soc_agent.audit.chains import ChainedAuditLog
from soc_agent.correlate import load_identity_book
from soc_agent.errors import ConfigError
from soc_agent.gateway import Gateway
from soc_agent.ingest import FieldMapping, load_mappings
from soc_agent.pipeline.agent import Agent
from soc_agent.pipeline.deciding import PolicyObserver
from soc_agent.pipeline.proposals import ProposalService
from soc_agent.risk import RiskLedger
from soc_agent.runtime.backend import Backend, open_backend
from soc_agent.runtime.confinement import check_confined, check_settings_confined
from soc_agent.runtime.declarative import available_connector_classes
from soc_agent.runtime.playbook_set import load_all_playbooks
from soc_agent.runtime.risk import build_ledger
from soc_agent.settings import Settings
from soc_agent.store import StateStore

if TYPE_CHECKING:  # the model's libraries load only when a model is configured
    from pydantic_ai.models import Model

    from soc_agent.pipeline.reasoning import Reasoner

__all__ = ["Components", "build_connectors", "load_all_playbooks", "open_components"]


@dataclass
class Components:
    settings: Settings
    store: StateStore
    audit: AuditLog
    gateway: Gateway
    executor: Executor
    proposals: ProposalService
    agent: Agent
    mappings: list[FieldMapping]
    clock: Callable[[], datetime]
    backend: Backend
    risk: RiskLedger | None = None  # entity risk, in-process (the embedded runtime)


def build_connectors(
    settings: Settings, extra_classes: Mapping[str, type[Connector]] | None = None
) -> dict[str, Connector]:
    """Instantiate the configured connectors; `extra_classes` add to the installed ones.

    `connectors.<name>.use: <installed connector>` configures an installed
    connector under another name, so a deployment can swap, say, the offline
    `event_store` for `elasticsearch` without editing playbooks (grants follow
    the configured name).
    """
    configured = settings.connector_defaults()
    wanted = {str(raw.get("use", name)) for name, raw in configured.items()}
    classes = {**available_connector_classes(settings, wanted), **(extra_classes or {})}
    out: dict[str, Connector] = {}
    for name, raw in configured.items():
        options = {k: v for k, v in raw.items() if k != "use"}
        implementation = str(raw.get("use", name))
        cls = classes.get(implementation)
        if cls is None:
            raise ConfigError(
                f"no installed connector is named {implementation!r} "
                f"(installed: {', '.join(sorted(available_connector_classes(settings)))})",
                key=f"connectors.{name}" + (".use" if "use" in raw else ""),
            )
        out[name] = cls.from_settings(
            options,
            configured_as=name,
            check=functools.partial(check_confined, settings, name),
        )
    for name in settings.grants:
        if name not in out:
            raise ConfigError(
                f"grants name a connector that is not configured: {name!r}", key=f"grants.{name}"
            )
    _one_provider_per_action(out, settings.grants)
    return out


def _one_provider_per_action(
    connectors: Mapping[str, Connector], grants: Mapping[str, list[str]]
) -> None:
    """Two granted connectors offering one action: which one acts would be a guess.

    Connectors add to the defaults, so a real EDR configured beside the recording
    `containment` would otherwise leave isolations to whichever came first.
    """
    providers: dict[str, list[str]] = {}
    for name, connector in connectors.items():
        granted = set(grants.get(name, []))
        for cap in connector.capabilities().values():
            if cap.kind is CapabilityKind.ACTION and set(cap.scopes) <= granted:
                providers.setdefault(cap.name, []).append(name)
    for action, names in providers.items():
        if len(names) > 1:
            raise ConfigError(
                f"the action {action!r} is granted on {' and '.join(names)}: keep one, "
                f"turn the other off (connectors.{names[0]}.enabled: false) or narrow its "
                "grants",
                key="connectors",
            )


def _reasoner(
    settings: Settings,
    connectors: Mapping[str, Connector],
    audit: AuditLog,
    clock: Callable[[], datetime],
    model: Model | None,
    investigator: Literal["agent", "hybrid"] | None,
) -> Reasoner | None:
    """The reasoning investigator, when `llm:` is configured: its own identity and gateway,
    holding only the read scopes of the agent's grants."""
    if settings.llm is None:
        return None
    from soc_agent.investigator.models import build_model, model_id
    from soc_agent.investigator.tools import investigator_grants, read_only_tools
    from soc_agent.pipeline.reasoning import Reasoner

    grants = investigator_grants(settings.grants)
    gateway = Gateway(
        connectors,
        grants,
        audit,
        actor=settings.llm.identity,
        timeout_seconds=settings.runtime.connector_timeout_seconds,
        clock=clock,
        audit_queries=True,
    )
    aclose = None
    if model is None:
        built = build_model(settings.llm)
        model, aclose = built.model, built.aclose
    return Reasoner(
        model,
        model_name=model_id(settings.llm),
        config=settings.llm,
        gateway=gateway,
        tools=read_only_tools(gateway, grants),
        audit=audit,
        clock=clock,
        aclose=aclose,
        every_playbook=investigator,
    )


@asynccontextmanager
async def open_components(
    settings: Settings,
    *,
    clock: Callable[[], datetime] | None = None,
    connector_classes: Mapping[str, type[Connector]] | None = None,
    shared: bool = False,
    model: Model | None = None,
    investigator: Literal["agent", "hybrid"] | None = None,
    policy_observer: PolicyObserver | None = None,
    inline_store: bool = False,
) -> AsyncIterator[Components]:
    """Create every long-lived component once and close them all in one place.

    `shared`: other processes correlate and decide into the same store (Kafka
    workers), so correlation and per-incident decisions take the backend's
    cross-process locks. With Elasticsearch they always do. `model` replaces the one
    `llm:` describes (a scripted model in tests, the same one across components);
    `investigator` runs every playbook that way (`soc-agent eval`); `policy_observer`
    sees every policy decision (`soc-agent calibrate`); `inline_store` runs SQLite
    statements on the event loop (`soc-agent run`, a process doing nothing else).
    """
    now = clock or (lambda: datetime.now(UTC))
    check_settings_confined(settings)
    connectors = build_connectors(settings, connector_classes)
    # Workers leave entity risk to the stream app: an in-process ledger no alert feeds
    # would answer "no risk" for everyone.
    ledger = build_ledger(settings, connectors, in_process=not shared)
    playbooks = load_all_playbooks(settings, live=connectors)
    if settings.llm is None:
        for playbook in playbooks:
            if playbook.investigator != "steps":
                # Without a model such a playbook would quietly investigate less than it says.
                raise ConfigError(
                    f"playbook {playbook.name!r} asks for investigator: "
                    f"{playbook.investigator}, which needs a model: configure llm:",
                    key="investigator",
                )
    mappings = load_mappings(settings.mappings)
    identity_file = settings.correlation.identity_file
    identities = load_identity_book(identity_file) if identity_file is not None else None
    async with open_backend(settings, inline_store=inline_store) as backend:
        store, audit = backend.store, backend.audit
        for connector in connectors.values():
            if isinstance(connector, VerdictHistoryConnector):
                connector.attach(store)
        gateway = Gateway(
            connectors,
            settings.grants,
            audit,
            actor=settings.agent_id,
            timeout_seconds=settings.runtime.connector_timeout_seconds,
            clock=now,
            audit_queries=True,
            summarize_queries=settings.audit_queries == "summary",
        )
        executor = Executor(store, gateway, audit, actor=settings.agent_id, clock=now)
        reasoner = _reasoner(settings, connectors, audit, now, model, investigator)
        proposals = ProposalService(
            store,
            executor,
            audit,
            agent_id=settings.agent_id,
            approve_roles=settings.api.approve_roles,
            clock=now,
        )
        agent = Agent(
            agent_id=settings.agent_id,
            store=store,
            audit=audit,
            gateway=gateway,
            correlator=backend.correlator(shared=shared),
            executor=executor,
            proposals=proposals,
            playbooks=playbooks,
            policy=settings.policy,
            clock=now,
            notify_channel=settings.runtime.notify_channel,
            incident_locks=backend.incident_locks(shared=shared),
            reasoner=reasoner,
            identities=identities,
            policy_observer=policy_observer,
        )
        anchors = None
        if settings.audit_anchor_file is not None:
            anchors = AnchorWriter(
                audit, settings.audit_anchor_file, interval_seconds=settings.audit_anchor_seconds
            )
            anchors.start()
        try:
            yield Components(
                settings,
                store,
                audit,
                gateway,
                executor,
                proposals,
                agent,
                mappings,
                now,
                backend,
                ledger,
            )
        finally:
            try:
                if anchors is not None:
                    if isinstance(audit, ChainedAuditLog):
                        await audit.anchor()  # so the file's last head covers this chain too
                    await anchors.stop()
            finally:
                if reasoner is not None:
                    await reasoner.aclose()
                await gateway.aclose()

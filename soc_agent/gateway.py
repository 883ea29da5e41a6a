"""The gateway: every call from the agent to a connector passes here.

It enforces least privilege (a capability runs only if the deployment granted
all its scopes for that connector), bounds each call with a timeout, and
audits every action call and every denial, and with `audit_queries` every
query call too (connector, capability, outcome, latency, error). With
`summarize_queries`, successful queries made under a ref (an investigation)
are audited as one entry when the caller says the investigation is over
(`audit_query_summary`); failures and denials are still audited one by one. Errors and
audit details are scrubbed of the connectors' secrets (in every encoding) and
of anything shaped like a credential; results are scrubbed of the calling
connector's secrets. Where an HTTP connector may connect is enforced by
`HttpConnector` itself (see `soc_agent_connectors._http_guard`); the gateway audits its refusals
as denials.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from soc_agent_connectors import (
    Capability,
    CapabilityKind,
    Connector,
    redact_data,
    redact_text,
    scrub_known,
)

from soc_agent.audit.base import AuditSink, Later
from soc_agent.errors import ConnectorError, EgressDeniedError, ScopeDeniedError
from soc_agent.models import AuditEvent

# Queries summarised per investigation at most; past it each is audited on its own.
_MAX_SUMMARISED = 1000

__all__ = ["Gateway"]


class Gateway:
    """The single chokepoint between the agent and its connectors; see the module docstring."""

    def __init__(
        self,
        connectors: Mapping[str, Connector],
        grants: Mapping[str, Collection[str]],
        audit: AuditSink,
        *,
        actor: str = "soc-agent",
        timeout_seconds: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        audit_queries: bool = False,
        summarize_queries: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connectors = dict(connectors)
        self._audit_queries = audit_queries
        # ref -> the successful queries made under it, audited as one entry by
        # `audit_query_summary` (see `audit_queries: summary`).
        self._summaries: dict[str, list[tuple[str, dict[str, Any]]]] | None = (
            {} if summarize_queries else None
        )
        self._monotonic = monotonic
        self._grants = {name: frozenset(scopes) for name, scopes in grants.items()}
        self._audit = audit
        self._actor = actor
        self._timeout = timeout_seconds
        self._clock = clock

    @property
    def connectors(self) -> Mapping[str, Connector]:
        return self._connectors

    def capability(self, connector: str, name: str) -> Capability:
        conn = self._connectors.get(connector)
        if conn is None:
            raise ConnectorError(f"no connector named {connector!r} is configured")
        cap = conn.capabilities().get(name)
        if cap is None:
            raise ConnectorError(f"connector {connector!r} has no capability {name!r}")
        return cap

    def missing_scopes(self, connector: str, name: str) -> list[str]:
        granted = self._grants.get(connector, frozenset())
        return [s for s in self.capability(connector, name).scopes if s not in granted]

    def find_action(self, action: str) -> tuple[str, Capability]:
        """The connector providing an action capability, preferring one that is granted."""
        found: list[tuple[str, Capability]] = []
        for name, conn in self._connectors.items():
            cap = conn.capabilities().get(action)
            if cap is not None and cap.kind is CapabilityKind.ACTION:
                found.append((name, cap))
        if not found:
            raise ConnectorError(f"no configured connector provides the action {action!r}")
        found.sort(key=lambda pair: bool(self.missing_scopes(pair[0], action)))
        return found[0]

    async def call(
        self,
        connector: str,
        capability: str,
        args: dict[str, Any],
        *,
        reason: str = "",
        ref: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Run one capability if granted; raise ScopeDeniedError (audited) if not."""
        cap = self.capability(connector, capability)
        who = actor or self._actor
        missing = self.missing_scopes(connector, capability)
        if missing:
            await self._audit.append(
                AuditEvent(
                    actor=who,
                    action="connector.denied",
                    subject=f"{connector}.{capability}",
                    reason=reason,
                    outcome="denied",
                    evidence_ref=ref,
                    details={"missing_scopes": missing, "kind": cap.kind.value},
                    at=self._clock(),
                )
            )
            raise ScopeDeniedError(
                f"{connector}.{capability} needs scope(s) {', '.join(missing)} "
                f"which are not granted to {who}"
            )
        started = self._monotonic()
        outcome = "ok"
        try:
            result = await asyncio.wait_for(
                self._connectors[connector].invoke(capability, args), self._timeout
            )
        except TimeoutError:
            error: str | None = f"timed out after {self._timeout:g}s"
            result = None
        except ConnectorError as exc:
            error, result = str(exc), None
            if isinstance(exc, EgressDeniedError):
                outcome = "denied"
        except Exception as exc:  # a connector bug must become evidence, not a crash
            error, result = f"{type(exc).__name__}: {exc}", None
        else:
            error = None
        if error is not None:
            error = redact_text(error, self._secrets())
            outcome = "denied" if outcome == "denied" else "error"
        latency_ms = round((self._monotonic() - started) * 1000, 1)
        summaries = self._summaries
        if (
            summaries is not None
            and ref is not None
            and cap.kind is not CapabilityKind.ACTION
            and error is None
            and len(summaries.get(ref, ())) < _MAX_SUMMARISED
        ):
            call: dict[str, Any] = {
                "connector": connector,
                "capability": capability,
                "latency_ms": latency_ms,
                "reason": reason,
            }
            summaries.setdefault(ref, []).append((who, call))
        elif cap.kind is CapabilityKind.ACTION or self._audit_queries:
            details: dict[str, Any] = {"kind": cap.kind.value, "latency_ms": latency_ms}
            if cap.kind is CapabilityKind.ACTION:
                details["args"] = redact_data(args, self._secrets())
            if error is not None:
                details["error"] = error
            await self._audit.append(
                AuditEvent(
                    actor=who,
                    action=f"connector.{capability}",
                    subject=f"{connector}",
                    reason=reason,
                    outcome=outcome,
                    evidence_ref=ref,
                    details=details,
                    at=self._clock(),
                )
            )
        if error is not None:
            raise ConnectorError(f"{connector}.{capability}: {error}")
        assert result is not None
        # A vendor may echo a credential back; results become evidence analysts read.
        scrubbed: dict[str, Any] = scrub_known(result, self._connectors[connector].secret_values())
        return scrubbed

    def audit_query_summary(self, ref: str) -> Later | None:
        """Audit the queries made under `ref` (an investigation) as one entry, if any,
        written with the log's next batch: the caller awaits it before anything depends
        on it (see `Later`)."""
        if self._summaries is None:
            return None
        calls = self._summaries.pop(ref, [])
        if not calls:
            return None
        return self._audit.append_later(
            AuditEvent(
                actor=calls[0][0],
                action="connector.queries",
                subject=ref,
                reason=f"{len(calls)} read-only queries",
                outcome="ok",
                evidence_ref=ref,
                details={
                    "count": len(calls),
                    "calls": [call for _, call in calls],
                },
                at=self._clock(),
            )
        )

    async def audit_refusal(self, requested: str, *, actor: str, ref: str | None) -> None:
        """Record a call that never reached a connector: a tool `actor` was not offered."""
        await self._audit.append(
            AuditEvent(
                actor=actor,
                action="connector.denied",
                subject=requested[:200],
                reason="not a lookup offered to this identity",
                outcome="denied",
                evidence_ref=ref,
                at=self._clock(),
            )
        )

    def status(self) -> dict[str, dict[str, Any]]:
        """Live state per connector (an HTTP connector's breaker, cache, base URL)."""
        return {name: conn.status() for name, conn in self._connectors.items()}

    def _secrets(self) -> list[str]:
        return [value for conn in self._connectors.values() for value in conn.secret_values()]

    async def aclose(self) -> None:
        for conn in self._connectors.values():
            await conn.aclose()

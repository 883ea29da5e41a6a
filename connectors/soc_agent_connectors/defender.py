"""Microsoft Defender for Endpoint: machine details, isolation and its release.

OAuth2 client credentials against the Microsoft identity platform (an app
registration with the WindowsDefenderATP application permissions
Machine.Read.All and Machine.Isolate). A host is found with
`GET /api/machines?$filter=computerDnsName eq '…'` (falling back to the
FQDN's first label); `POST /api/machines/{id}/isolate` and `/unisolate` create
machine actions, and the state is read back from
`GET /api/machineactions?$filter=machineId eq '…'`: the latest Isolate or
Unisolate action that is Pending, InProgress or Succeeded decides. Errors are
OData bodies `{"error": {"code", "message"}}`; 429s carry `Retry-After`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from soc_agent.errors import ConnectorError
from soc_agent_connectors import (
    HOSTNAME,
    ActionDone,
    ActionInput,
    HostInput,
    HttpRuntime,
    StateAnswer,
    StateQuery,
    VendorHTTPError,
    capability,
)
from soc_agent_connectors._oauth2 import MicrosoftOAuth2Config, OAuth2Connector

__all__ = ["Defender", "DefenderConfig"]

_LIVE = frozenset({"Pending", "InProgress", "Succeeded"})  # the request stands
_MAX_PAGES = 20


class DefenderConfig(MicrosoftOAuth2Config):
    base_url: str = "https://api.security.microsoft.com"  # or a regional us./eu./uk. host
    scope: str | None = "https://api.securitycenter.microsoft.com/.default"
    isolation_type: Literal["Full", "Selective"] = Field(
        default="Full", description="Selective keeps Outlook, Teams and Skype connected"
    )


class MachineDetails(BaseModel):
    host: str
    found: bool
    machine_id: str | None = None
    hostname: str | None = Field(default=None, description="computerDnsName")
    health_status: str | None = None
    risk_score: str | None = None
    exposure_level: str | None = None
    os_platform: str | None = None
    os_version: str | None = None
    last_seen: str | None = None
    last_ip: str | None = None
    tags: list[str] = Field(default_factory=list)
    matches: int = Field(default=0, description="machines with this name (newest is shown)")


class Defender(OAuth2Connector):
    """Defender for Endpoint API: machines, isolation and release."""

    name = "defender"
    description = "Microsoft Defender for Endpoint: machine details, isolate and unisolate"
    config_model: ClassVar[type[DefenderConfig]] = DefenderConfig

    def __init__(self, config: DefenderConfig, *, runtime: HttpRuntime | None = None) -> None:
        super().__init__(config, runtime=runtime)
        self.mde_config = config

    @capability(kind="query", scopes=["edr:read"], cache_ttl=60)
    async def get_host(self, args: HostInput) -> MachineDetails:
        """Defender's view of a machine: health, risk score, exposure, tags, last seen."""
        machine, matches = await self._machine(args.host)
        if machine is None:
            return MachineDetails(host=args.host, found=False)
        return MachineDetails(
            host=args.host,
            found=True,
            machine_id=machine["id"],
            hostname=machine.get("computerDnsName"),
            health_status=machine.get("healthStatus"),
            risk_score=machine.get("riskScore"),
            exposure_level=machine.get("exposureLevel"),
            os_platform=machine.get("osPlatform"),
            os_version=machine.get("version"),
            last_seen=machine.get("lastSeen"),
            last_ip=machine.get("lastIpAddress"),
            tags=list(machine.get("machineTags") or []),
            matches=matches,
        )

    @capability(kind="query", scopes=["edr:read"], cache_ttl=0)
    async def check_state(self, args: StateQuery) -> StateAnswer:
        """Whether a machine is isolated (or released), from its latest isolation action."""
        if args.action not in ("isolate_host", "release_host"):
            raise ConnectorError(f"defender cannot verify unknown action {args.action!r}")
        machine_id = (await self._require_machine(args.target))["id"]
        isolated, latest = await self._isolation(machine_id)
        return StateAnswer(
            action=args.action,
            target=args.target,
            in_effect=isolated if args.action == "isolate_host" else not isolated,
            state=_describe(latest),
            vendor_id=machine_id,
        )

    # Not retried automatically: a second isolate while one is pending answers 400 "Action is
    # already in progress" or leaves a duplicate action stuck Pending (MicrosoftDocs issue
    # microsoft-365-docs#5903). The executor verifies through check_state instead.
    @capability(
        kind="action",
        scopes=["host:contain"],
        target="host",
        target_names=("fqdn",),
        reversible=True,
        rollback="release_host",
        verify="check_state",
        risk="high",
        idempotent=False,
    )
    async def isolate_host(self, args: ActionInput) -> ActionDone:
        """Isolate a machine from the network (Defender keeps its own channel)."""
        body = {
            "Comment": _comment(args, "isolate_host"),
            "IsolationType": self.mde_config.isolation_type,
        }
        return await self._act("isolate_host", "isolate", body, args)

    @capability(
        kind="action",
        scopes=["host:contain"],
        target="host",
        target_names=("fqdn",),
        reversible=True,
        rollback="isolate_host",
        verify="check_state",
        risk="low",
        idempotent=False,
    )
    async def release_host(self, args: ActionInput) -> ActionDone:
        """Release a machine from isolation."""
        body = {"Comment": _comment(args, "release_host")}
        return await self._act("release_host", "unisolate", body, args)

    # --- internals -------------------------------------------------------------------------

    async def _act(
        self, action: str, verb: str, body: dict[str, str], args: ActionInput
    ) -> ActionDone:
        want_isolated = action == "isolate_host"
        machine_id = (await self._require_machine(args.target))["id"]
        isolated, latest = await self._isolation(machine_id)
        if isolated == want_isolated:
            return self._done(action, args, machine_id, latest, changed=False)
        try:
            response = await self.request(
                "POST", f"/api/machines/{machine_id}/{verb}", json=body, idempotent=False
            )
        except VendorHTTPError as exc:
            if exc.status_code != 400:
                raise
            # "Action is already in progress": someone (or an earlier attempt) got there first
            isolated, latest = await self._isolation(machine_id)
            if isolated != want_isolated:
                raise
            return self._done(action, args, machine_id, latest, changed=False)
        created = self.json_of(response)
        return self._done(action, args, machine_id, created, changed=True)

    def _done(
        self,
        action: str,
        args: ActionInput,
        machine_id: str,
        machine_action: dict[str, Any] | None,
        *,
        changed: bool,
    ) -> ActionDone:
        return ActionDone(
            action=action,
            target=args.target,
            vendor_id=machine_id,
            state=_describe(machine_action),
            changed=changed,
            request_id=(machine_action or {}).get("id"),
        )

    async def _require_machine(self, target: str) -> dict[str, Any]:
        if not HOSTNAME.match(target):
            raise ConnectorError(f"defender: {target[:80]!r} is not a hostname")
        machine, _ = await self._machine(target)
        if machine is None:
            raise ConnectorError(f"defender: no machine named {target!r}")
        return machine

    async def _machine(self, host: str) -> tuple[dict[str, Any] | None, int]:
        """The most recently seen machine with this name, and how many there are."""
        name = host.lower()
        machines = await self._list(
            "/api/machines", {"$filter": f"computerDnsName eq '{_odata(name)}'"}
        )
        if not machines and "." not in name:
            # Defender records the FQDN (ws-fin-042.corp.example.com); alerts often the short name
            machines = await self._list(
                "/api/machines", {"$filter": f"startswith(computerDnsName,'{_odata(name)}.')"}
            )
        machines = [m for m in machines if m.get("id")]
        if not machines:
            return None, 0
        return max(machines, key=lambda m: str(m.get("lastSeen") or "")), len(machines)

    async def _isolation(self, machine_id: str) -> tuple[bool, dict[str, Any] | None]:
        """Whether the machine is isolated, and the machine action that says so."""
        actions = await self._list(
            "/api/machineactions", {"$filter": f"machineId eq '{_odata(machine_id)}'"}
        )
        standing = [
            a
            for a in actions
            if a.get("type") in ("Isolate", "Unisolate") and a.get("status") in _LIVE
        ]
        latest = max(standing, key=lambda a: str(a.get("creationDateTimeUtc") or ""), default=None)
        return (latest is not None and latest.get("type") == "Isolate"), latest

    async def _list(self, url: str, params: dict[str, str] | None) -> list[dict[str, Any]]:
        """Every item of an OData collection, following `@odata.nextLink`."""
        items: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            body = await self.get_json(url, params=params)
            if not isinstance(body, dict):
                raise ConnectorError(f"defender: GET {url}: answer is not an OData collection")
            items.extend(v for v in body.get("value") or [] if isinstance(v, dict))
            next_link = body.get("@odata.nextLink")
            if not isinstance(next_link, str) or not next_link:
                return items
            url, params = next_link, None  # absolute, on the API host (egress-checked)
        raise ConnectorError(f"defender: more than {_MAX_PAGES} pages from {url}; narrow it")


def _odata(value: str) -> str:
    return value.replace("'", "''")


def _comment(args: ActionInput, action: str) -> str:
    why = args.reason.strip() or f"{action} requested"
    key = f" [{args.idempotency_key}]" if args.idempotency_key else ""
    return f"soc-agent: {why}{key}"[:1000]


def _describe(machine_action: dict[str, Any] | None) -> str:
    if not machine_action:
        return "no isolation"
    return f"{machine_action.get('type', '?')} {machine_action.get('status', '?')}"

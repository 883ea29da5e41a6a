"""CrowdStrike Falcon: host details and network containment through the Hosts API.

OAuth2 client credentials (`POST /oauth2/token`, API client scope Hosts:
read + write); a hostname is resolved with `GET /devices/queries/devices/v1`
(FQL `hostname:'…'`) and `GET /devices/entities/devices/v2`; containment is
`POST /devices/entities/devices-actions/v2?action_name=contain|lift_containment`
with `{"ids": [...]}`. Verification reads the device's `status` (`normal`,
`containment_pending`, `contained`, `lift_containment_pending`). A 429 says
when to retry in `X-RateLimit-RetryAfter` (epoch seconds), which is honoured.
"""

from __future__ import annotations

from typing import Any, ClassVar

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
    capability,
)
from soc_agent_connectors._oauth2 import OAuth2Config, OAuth2Connector

__all__ = ["CrowdStrike", "CrowdStrikeConfig"]

_CONTAINED = frozenset({"contained", "containment_pending"})
_RELEASED = frozenset({"normal", "lift_containment_pending"})
# our action -> (Falcon action_name, the device statuses in which its effect holds)
_ACTIONS: dict[str, tuple[str, frozenset[str]]] = {
    "isolate_host": ("contain", _CONTAINED),
    "release_host": ("lift_containment", _RELEASED),
}


class CrowdStrikeConfig(OAuth2Config):
    base_url: str = "https://api.crowdstrike.com"  # US-1; api.us-2 / api.eu-1 / api.laggar.gcw
    member_cid: str | None = Field(
        default=None,
        pattern=r"^[A-Fa-f0-9]{32}(-[A-Fa-f0-9]{2})?$",
        description="Flight Control: the child CID to act in",
    )

    def default_token_url(self) -> str | None:
        return "/oauth2/token"  # on the API host of the tenant's cloud


class HostDetails(BaseModel):
    host: str
    found: bool
    device_id: str | None = None
    hostname: str | None = None
    platform: str | None = None
    os_version: str | None = None
    status: str | None = Field(default=None, description="normal, containment_pending, ...")
    contained: bool = False
    last_seen: str | None = None
    local_ip: str | None = None
    external_ip: str | None = None
    tags: list[str] = Field(default_factory=list)
    matches: int = Field(default=0, description="devices with this hostname (newest is shown)")


class CrowdStrike(OAuth2Connector):
    """Falcon Hosts API: device details, network containment and its lift."""

    name = "crowdstrike"
    description = "CrowdStrike Falcon: host details, network containment and lift"
    config_model: ClassVar[type[CrowdStrikeConfig]] = CrowdStrikeConfig
    rate_limit_reset_header = "X-RateLimit-RetryAfter"

    def __init__(self, config: CrowdStrikeConfig, *, runtime: HttpRuntime | None = None) -> None:
        super().__init__(config, runtime=runtime)
        self.falcon_config = config

    def token_form(self, client_id: str, client_secret: str) -> dict[str, str]:
        # Falcon documents client_id and client_secret (and member_cid) as the whole form.
        form = {"client_id": client_id, "client_secret": client_secret}
        if self.falcon_config.member_cid:
            form["member_cid"] = self.falcon_config.member_cid
        return form

    @capability(kind="query", scopes=["edr:read"], cache_ttl=60)
    async def get_host(self, args: HostInput) -> HostDetails:
        """Falcon's view of a host: device id, platform, containment status, last seen."""
        device, matches = await self._device(args.host)
        if device is None:
            return HostDetails(host=args.host, found=False)
        return HostDetails(
            host=args.host,
            found=True,
            device_id=device["device_id"],
            hostname=device.get("hostname"),
            platform=device.get("platform_name"),
            os_version=device.get("os_version"),
            status=device.get("status"),
            contained=device.get("status") in _CONTAINED,
            last_seen=device.get("last_seen"),
            local_ip=device.get("local_ip"),
            external_ip=device.get("external_ip"),
            tags=list(device.get("tags") or []),
            matches=matches,
        )

    @capability(kind="query", scopes=["edr:read"], cache_ttl=0)
    async def check_state(self, args: StateQuery) -> StateAnswer:
        """Whether a containment (or its lift) holds on a host, from the device's status."""
        if args.action not in _ACTIONS:
            raise ConnectorError(f"crowdstrike cannot verify unknown action {args.action!r}")
        device = await self._require_device(args.target)
        status = str(device.get("status") or "")
        return StateAnswer(
            action=args.action,
            target=args.target,
            in_effect=status in _ACTIONS[args.action][1],
            state=status,
            vendor_id=device["device_id"],
        )

    # Containment is a state request: asking again for a host already contained (or lifted)
    # leaves it as it is, so these POSTs may be retried on a timeout, a 5xx or a 429.
    @capability(
        kind="action",
        scopes=["host:contain"],
        target="host",
        target_names=("hostname",),
        reversible=True,
        rollback="release_host",
        verify="check_state",
        risk="high",
        idempotent=True,
    )
    async def isolate_host(self, args: ActionInput) -> ActionDone:
        """Network-contain a host: it keeps talking to the Falcon cloud only."""
        return await self._act("isolate_host", args)

    @capability(
        kind="action",
        scopes=["host:contain"],
        target="host",
        target_names=("hostname",),
        reversible=True,
        rollback="isolate_host",
        verify="check_state",
        risk="low",
        idempotent=True,
    )
    async def release_host(self, args: ActionInput) -> ActionDone:
        """Lift network containment of a host."""
        return await self._act("release_host", args)

    # --- internals -------------------------------------------------------------------------

    async def _act(self, action: str, args: ActionInput) -> ActionDone:
        action_name, in_effect = _ACTIONS[action]
        device = await self._require_device(args.target)
        device_id, status = device["device_id"], str(device.get("status") or "")
        if status in in_effect:
            return ActionDone(
                action=action, target=args.target, vendor_id=device_id, state=status, changed=False
            )
        body = self.json_of(
            await self.request(
                "POST",
                "/devices/entities/devices-actions/v2",
                params={"action_name": action_name},
                json={"ids": [device_id]},
                idempotent=True,
            )
        )
        _raise_for_errors(body, f"{action_name} {device_id}")
        done = [r.get("id") for r in body.get("resources") or [] if isinstance(r, dict)]
        if device_id not in done:
            raise ConnectorError(
                f"crowdstrike: {action_name} {device_id} was not acknowledged (resources: {done})"
            )
        pending = "containment_pending" if action == "isolate_host" else "lift_containment_pending"
        return ActionDone(
            action=action, target=args.target, vendor_id=device_id, state=pending, changed=True
        )

    async def _require_device(self, target: str) -> dict[str, Any]:
        device, _ = await self._device(_check_hostname(target))
        if device is None:
            raise ConnectorError(f"crowdstrike: no device with hostname {target!r}")
        return device

    async def _device(self, hostname: str) -> tuple[dict[str, Any] | None, int]:
        """The most recently seen device with this hostname, and how many there are."""
        ids_body = await self.get_json(
            "/devices/queries/devices/v1",
            params={"filter": f"hostname:'{hostname}'", "sort": "last_seen.desc", "limit": 10},
        )
        _raise_for_errors(ids_body, f"hostname {hostname}")
        ids = [i for i in ids_body.get("resources") or [] if isinstance(i, str)]
        if not ids:
            return None, 0
        body = await self.get_json("/devices/entities/devices/v2", params={"ids": ids})
        _raise_for_errors(body, f"devices {', '.join(ids)}")
        devices = [
            d for d in body.get("resources") or [] if isinstance(d, dict) and "device_id" in d
        ]
        if not devices:
            return None, 0
        newest = max(devices, key=lambda d: str(d.get("last_seen") or ""))
        return newest, len(devices)


def _check_hostname(value: str) -> str:
    # Hostnames never contain quotes or spaces; refusing them keeps the FQL filter exact.
    if not HOSTNAME.match(value):
        raise ConnectorError(f"crowdstrike: {value[:80]!r} is not a hostname")
    return value


def _raise_for_errors(body: Any, what: str) -> None:
    """Falcon may answer 2xx with `errors` for part of a request: that is a failure too."""
    if not isinstance(body, dict):
        raise ConnectorError(f"crowdstrike: {what}: unexpected answer (not a JSON object)")
    errors = body.get("errors") or []
    if errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        raise ConnectorError(
            f"crowdstrike: {what}: {first.get('code', '?')} {first.get('message', 'error')}"
        )

"""The live StepExecutor: investigation steps go through the gateway."""

from __future__ import annotations

from typing import Any

from soc_agent.gateway import Gateway

__all__ = ["GatewayStepExecutor"]


class GatewayStepExecutor:
    """Runs a playbook step as a gateway call, so scopes are checked and denials audited."""

    def __init__(self, gateway: Gateway, *, ref: str) -> None:
        self._gateway = gateway
        self._ref = ref

    async def run_step(
        self, step_id: str, connector: str, capability: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._gateway.call(
            connector, capability, args, reason=f"investigation step {step_id}", ref=self._ref
        )

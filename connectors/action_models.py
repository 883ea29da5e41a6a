"""The action and verify contract shared by the vendor containment connectors.

The executor calls an action with `{target, reason, idempotency_key}` and its
declared verify query with `{action, target}`, expecting `{in_effect}` back
(see `soc_agent.actions.executor`). The EDR and identity connectors use these
models so that they are drop-in replacements for the recording executor.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["ActionDone", "ActionInput", "StateAnswer", "StateQuery"]


class ActionInput(BaseModel):
    """What the executor sends to an action: the target entity's value and why."""

    target: str = Field(min_length=1, max_length=2048)
    reason: str = Field(default="", max_length=4096)
    idempotency_key: str | None = Field(default=None, max_length=256)


class ActionDone(BaseModel):
    """What an action did at the vendor."""

    action: str
    target: str
    vendor_id: str = Field(description="the vendor's id of the target (device, machine, user)")
    state: str = Field(description="the vendor's state of the target after the call")
    changed: bool = Field(description="false when the target was already in that state")
    request_id: str | None = Field(default=None, description="the vendor's id of the request")


class StateQuery(BaseModel):
    """The verify contract: does the effect of `action` on `target` hold now?"""

    action: str = Field(min_length=1, max_length=64)
    target: str = Field(min_length=1, max_length=2048)


class StateAnswer(BaseModel):
    action: str
    target: str
    in_effect: bool
    state: str | None = Field(default=None, description="the vendor's state the answer rests on")
    vendor_id: str | None = None

"""The action and verify contract shared by the vendor containment connectors.

The executor calls an action with `{target, reason, idempotency_key}` and its
declared verify query with `{action, target}`, expecting `{in_effect}` back
(see `soc_agent.actions.executor`). The EDR and identity connectors use these
models so that they are drop-in replacements for the recording executor.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator

__all__ = ["HOSTNAME", "ActionDone", "ActionInput", "HostInput", "StateAnswer", "StateQuery"]


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


HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class HostInput(BaseModel):
    """An EDR host lookup: the host name (or FQDN) as the EDR reports it."""

    host: str = Field(min_length=1, max_length=253, description="hostname or FQDN")

    @field_validator("host")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not HOSTNAME.match(value):
            raise ValueError("not a hostname (letters, digits, '.', '-', '_')")
        return value

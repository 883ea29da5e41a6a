"""Recorded step results for playbook tests: a StepExecutor that answers from a recording.

A responder records what each step's connector answered (or the error it
raised); the runner replays them, checking that each call is the one recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from soc_agent.errors import ConnectorError, ScopeDeniedError

__all__ = ["RecordedCall", "RecordedStepExecutor"]


class RecordedCall(BaseModel):
    """One recorded capability outcome: exactly one of result, error, denied.

    In a list (for_each steps), `item` or `args` pick the call it answers:
    `args` must be a subset of the call's arguments; `item` must equal one of
    the argument values. Entries with neither answer calls in order.
    """

    model_config = ConfigDict(extra="forbid")

    item: Any = Field(default=None, description="the for_each element this entry answers")
    args: dict[str, Any] | None = Field(default=None, description="arguments this entry answers")
    result: dict[str, Any] | None = Field(default=None, description="the capability's output")
    error: str | None = Field(default=None, description="a connector error message")
    denied: str | None = Field(default=None, description="a gateway denial message")

    @model_validator(mode="after")
    def _one_outcome(self) -> RecordedCall:
        given = [k for k in ("result", "error", "denied") if k in self.model_fields_set]
        if len(given) != 1:
            raise ValueError("a recording needs exactly one of `result`, `error`, `denied`")
        return self

    def matches(self, args: Mapping[str, Any]) -> bool | None:
        """True/False when the entry names its call (`args`/`item`), None when it does not."""
        if self.args is not None:
            return all(k in args and _same(args[k], v) for k, v in self.args.items())
        if "item" in self.model_fields_set:
            return any(_same(v, self.item) for v in args.values())
        return None


Recording = RecordedCall | list[RecordedCall]


class RecordedStepExecutor:
    """Answers steps from recordings: `{step_id: {"result": ...} | {"error": ...} | [entries]}`.

    Used by playbook unit tests and replay. A step without a recording fails
    with "no recorded result for step X"; `calls` lists every call made.
    """

    def __init__(self, recordings: Mapping[str, Any]) -> None:
        self._recordings: dict[str, Recording] = {}
        for step_id, raw in recordings.items():
            if isinstance(raw, list):
                self._recordings[step_id] = [RecordedCall.model_validate(r) for r in raw]
            else:
                self._recordings[step_id] = RecordedCall.model_validate(raw)
        self._cursor: dict[str, int] = {}
        self.calls: list[tuple[str, str, str, dict[str, Any]]] = []

    @property
    def step_ids(self) -> set[str]:
        return set(self._recordings)

    async def run_step(
        self, step_id: str, connector: str, capability: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls.append((step_id, connector, capability, dict(args)))
        recording = self._recordings.get(step_id)
        if recording is None:
            raise ConnectorError(f"no recorded result for step {step_id}")
        entry = (
            recording
            if isinstance(recording, RecordedCall)
            else self._pick(step_id, recording, args)
        )
        if entry is None:
            raise ConnectorError(f"no recorded result for step {step_id} with arguments {args}")
        if entry.denied is not None:
            raise ScopeDeniedError(entry.denied)
        if entry.error is not None:
            raise ConnectorError(entry.error)
        return dict(entry.result or {})

    def _pick(
        self, step_id: str, entries: list[RecordedCall], args: Mapping[str, Any]
    ) -> RecordedCall | None:
        for entry in entries:
            if entry.matches(args):
                return entry
        positional = [e for e in entries if e.matches(args) is None]
        index = self._cursor.get(step_id, 0)
        if index < len(positional):
            self._cursor[step_id] = index + 1
            return positional[index]
        return None


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.strip().lower() == right.strip().lower()
    return bool(left == right)

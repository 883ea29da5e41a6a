"""The connector plugin API: a connector is one class declaring its capabilities.

A capability is an async method decorated with `@capability`, taking one
pydantic input model and returning one pydantic output model. Queries are
read-only; actions change state and say whether (and how) they can be undone.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import entry_points
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from soc_agent.errors import ConfigError, ConnectorError
from soc_agent.models import EntityType, RiskTier

__all__ = [
    "Capability",
    "CapabilityKind",
    "Connector",
    "EmptyConfig",
    "capability",
    "installed_connector_names",
    "load_connector_classes",
]

ENTRY_POINT_GROUP = "soc_agent.connectors"


class CapabilityKind(StrEnum):
    QUERY = "query"
    ACTION = "action"


@dataclass(frozen=True)
class Capability:
    """What a connector can do, what it needs, and for actions how to undo and verify it."""

    name: str
    kind: CapabilityKind
    scopes: tuple[str, ...]
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    description: str
    reversible: bool = False
    rollback: str | None = None
    verify: str | None = None
    risk: RiskTier = RiskTier.MEDIUM
    target: EntityType | None = None
    # HTTP connectors: retry this call on transient failures even if its method is not
    # idempotent (True), never retry it (False), or decide by HTTP method (None).
    idempotent: bool | None = None
    # Query result cache lifetime in seconds; None = the connector's configured default, 0 = off.
    cache_ttl: float | None = None
    # May fetch a URL taken from alert content (never a private/loopback address unless allowed).
    fetches_untrusted_urls: bool = False
    # Actions: the target's alias kinds this vendor acts on, best first (`upn`, `object_id`);
    # the executor sends the first the target has, else its value (`models.names`).
    target_names: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "scopes": list(self.scopes),
            "description": self.description,
            "reversible": self.reversible,
            "rollback": self.rollback,
            "verify": self.verify,
            "risk": self.risk.value,
            "target": self.target.value if self.target else None,
            "idempotent": self.idempotent,
            "cache_ttl": self.cache_ttl,
            "target_names": list(self.target_names),
            "fetches_untrusted_urls": self.fetches_untrusted_urls,
            "input_schema": self.input_model.model_json_schema(),
            "output_schema": self.output_model.model_json_schema(),
        }


class EmptyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


_In = TypeVar("_In", bound=BaseModel)
_Out = TypeVar("_Out", bound=BaseModel)
_Method = Callable[[Any, _In], Awaitable[_Out]]


def capability(
    *,
    kind: CapabilityKind | str,
    scopes: tuple[str, ...] | list[str],
    reversible: bool = False,
    rollback: str | None = None,
    verify: str | None = None,
    risk: RiskTier | str = RiskTier.MEDIUM,
    target: EntityType | str | None = None,
    name: str | None = None,
    idempotent: bool | None = None,
    cache_ttl: float | None = None,
    fetches_untrusted_urls: bool = False,
    target_names: tuple[str, ...] | list[str] = (),
) -> Callable[[_Method[_In, _Out]], _Method[_In, _Out]]:
    """Declare an async method as a capability; models come from its annotations."""

    def mark(fn: _Method[_In, _Out]) -> _Method[_In, _Out]:
        hints = inspect.get_annotations(fn, eval_str=True)
        params = [p for p in inspect.signature(fn).parameters if p != "self"]
        if len(params) != 1 or "return" not in hints:
            raise TypeError(f"capability {fn.__name__} must take one model and return one")
        in_model, out_model = hints[params[0]], hints["return"]
        for model in (in_model, out_model):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError(f"capability {fn.__name__}: {model!r} is not a pydantic model")
        cap_kind = CapabilityKind(kind)
        fn.__soc_capability__ = Capability(  # type: ignore[attr-defined]
            name=name or fn.__name__,
            kind=cap_kind,
            scopes=tuple(scopes),
            input_model=in_model,
            output_model=out_model,
            description=inspect.cleandoc(fn.__doc__ or "").split("\n")[0],
            reversible=reversible,
            rollback=rollback,
            verify=verify,
            risk=RiskTier(risk),
            target=EntityType(target) if target else None,
            idempotent=idempotent,
            cache_ttl=cache_ttl,
            fetches_untrusted_urls=fetches_untrusted_urls,
            target_names=tuple(target_names),
        )
        return fn

    return mark


class Connector:
    """Base class: subclasses set `name`, optionally `config_model`, and declare capabilities."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    config_model: ClassVar[type[BaseModel]] = EmptyConfig

    def __init__(self, config: BaseModel) -> None:
        self.config = config

    @classmethod
    def from_settings(
        cls,
        raw: dict[str, Any],
        *,
        source: str = "config",
        configured_as: str | None = None,
        check: Callable[[BaseModel], None] | None = None,
    ) -> Connector:
        """Build from the raw `connectors.<name>` settings, naming the bad key on error.

        `check` sees the validated settings before the connector opens any file or
        connection (the agent confines file settings with it).
        """
        try:
            config = cls.config_model.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = configured_as or cls.name
            key = ".".join(["connectors", name, *(str(p) for p in err["loc"])])
            raise ConfigError(err["msg"], source=source, key=key) from None
        if check is not None:
            check(config)
        return cls(config)

    @classmethod
    def capabilities(cls) -> dict[str, Capability]:
        cached = cls.__dict__.get("_capabilities_cache")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        found: dict[str, Capability] = {}
        for _, member in inspect.getmembers(cls, inspect.isfunction):
            cap = getattr(member, "__soc_capability__", None)
            if isinstance(cap, Capability):
                found[cap.name] = cap
        cls._capabilities_cache = found  # type: ignore[attr-defined]
        return found

    async def invoke(self, capability_name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Validate input, run the capability, validate and return its output as JSON data."""
        cap = self.capabilities().get(capability_name)
        if cap is None:
            raise ConnectorError(f"{self.name} has no capability {capability_name!r}")
        try:
            payload = cap.input_model.model_validate(args)
        except ValidationError as exc:
            raise ConnectorError(
                f"{self.name}.{capability_name}: invalid arguments: {_first_error(exc)}"
            ) from None
        method = _method_for(type(self), cap.name)
        result = await method(self, payload)
        if not isinstance(result, cap.output_model):
            raise ConnectorError(
                f"{self.name}.{capability_name} returned {type(result).__name__}, "
                f"expected {cap.output_model.__name__}"
            )
        return result.model_dump(mode="json")

    async def aclose(self) -> None:
        """Release long-lived clients; the runtime calls it once on shutdown."""

    def status(self) -> dict[str, Any]:
        """Live state for operators (e.g. an HTTP connector's circuit breaker); may be empty."""
        return {}

    def secret_values(self) -> tuple[str, ...]:
        """Credential values this connector has read, so the gateway can scrub them."""
        return ()


def _method_for(cls: type[Connector], cap_name: str) -> Callable[..., Awaitable[BaseModel]]:
    # Looked up once per class: `inspect.getmembers` on every call was a measurable
    # share of each alert's CPU (several connector calls per alert).
    methods: dict[str, Callable[..., Awaitable[BaseModel]]] | None = cls.__dict__.get(
        "_methods_cache"
    )
    if methods is None:
        methods = {}
        for _, member in inspect.getmembers(cls, inspect.isfunction):
            cap = getattr(member, "__soc_capability__", None)
            if isinstance(cap, Capability):
                methods[cap.name] = member
        cls._methods_cache = methods  # type: ignore[attr-defined]
    method = methods.get(cap_name)
    if method is None:
        raise ConnectorError(f"{cls.name} has no capability {cap_name!r}")
    return method


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(input)"
    return f"{loc}: {err['msg']}"


def installed_connector_names() -> list[str]:
    """Names registered under the `soc_agent.connectors` entry point (nothing imported)."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_connector_classes(names: Collection[str] | None = None) -> dict[str, type[Connector]]:
    """Connector classes registered under the `soc_agent.connectors` entry point.

    With `names`, only those are imported, so a broken connector that is not
    configured cannot stop the agent; a configured one that fails to import is
    a ConfigError naming it.
    """
    classes: dict[str, type[Connector]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if names is not None and ep.name not in names:
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # a third-party plugin's import error, reported by name
            raise ConfigError(
                f"connector {ep.name} ({ep.value}) cannot be loaded: {type(exc).__name__}: {exc}"
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise ConfigError(f"entry point {ep.name} = {ep.value} is not a Connector class")
        classes[ep.name] = cls
    return classes

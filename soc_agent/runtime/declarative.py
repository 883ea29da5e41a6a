"""Declarative HTTP connectors: a YAML file describes a REST integration.

A definition names the connector, its API root and credential header, and its
capabilities: for each, the arguments (typed), the request (method, path, query
and body with `${args.x}` templates) and the result (each field a CEL expression
over `response`, `status` and `args`). It becomes an `HttpConnector` subclass, so
it runs through the same client: timeouts, retries of idempotent calls, rate
limit, circuit breaker, query cache, egress guard, credential scrubbing, and, at
the gateway, the same scopes and audit as a Python connector.

Responses are vendor data: they are only ever read by the result expressions,
which cannot call out or run code (CEL), and each result is validated against
the declared fields before a playbook sees it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from soc_agent_connectors import (
    Capability,
    CapabilityKind,
    Connector,
    HttpConnector,
    HttpConnectorConfig,
    installed_connector_names,
    load_connector_classes,
)

from soc_agent.errors import ConfigError, ConnectorError, ExpressionError
from soc_agent.models import EntityType, RiskTier
from soc_agent.playbooks.expressions import evaluate, free_variables
from soc_agent.playbooks.loader import format_path
from soc_agent.playbooks.templates import iter_templates, parse_template, render
from soc_agent.settings import Settings
from soc_agent.yaml_input import locate, read_yaml

__all__ = [
    "HttpDefinition",
    "available_connector_classes",
    "definition_classes",
    "load_definitions",
    "shipped_definitions_dir",
]

ArgType = Literal["string", "integer", "number", "boolean", "list", "object"]
_PY_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "list": list[Any],
    "object": dict[str, Any],
}
# What the executor sends every action (see the connector contract in the README).
_ACTION_ARGS = {
    "target": {
        "type": "string",
        "required": True,
        "description": "the target's name: its first alias of target_names, else its value",
    },
    "reason": {"type": "string", "default": "", "description": "why the policy decided it"},
    "idempotency_key": {"type": "string", "description": "one per incident, action, target"},
    "original": {
        "type": "object",
        "default": {},
        "description": "as a rollback: the result of the action it undoes",
    },
}
_NAME = r"^[a-z][a-z0-9_]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArgumentSpec(_Strict):
    type: ArgType = "string"
    required: bool = False
    default: Any = None
    enum: list[str | int] | None = Field(default=None, min_length=1)
    pattern: str | None = Field(
        default=None,
        max_length=512,
        description="a string argument must match it whole (e.g. keep query syntax out)",
    )
    description: str = ""
    max_length: int | None = Field(default=1024, ge=1, le=65536)

    @model_validator(mode="after")
    def _pattern_compiles(self) -> ArgumentSpec:
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"invalid pattern: {exc}") from None
        return self


class RequestSpec(_Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(min_length=1, max_length=2048, description="relative to base_url")
    query: dict[str, Any] = Field(default_factory=dict)
    body: Any = None
    not_found: list[int] = Field(
        default_factory=list, description="statuses that are answers, not errors (e.g. 404)"
    )


class ResultField(_Strict):
    type: ArgType
    value: str = Field(min_length=1, max_length=4096, description="CEL over response, status, args")
    description: str = ""


class CapabilityDef(_Strict):
    name: str = Field(pattern=_NAME)
    kind: CapabilityKind
    description: str = Field(min_length=1, max_length=300)
    scopes: list[str] = Field(min_length=1)
    target: EntityType | None = None
    risk: RiskTier = RiskTier.MEDIUM
    reversible: bool = False
    rollback: str | None = None
    verify: str | None = None
    idempotent: bool | None = None
    cache_ttl: float | None = Field(default=None, ge=0)
    target_names: list[Annotated[str, Field(pattern=_NAME)]] = Field(
        default_factory=list,
        max_length=8,
        description="alias kinds the vendor acts on, best first (upn, sam, object_id, fqdn)",
    )
    arguments: dict[str, ArgumentSpec] = Field(default_factory=dict)
    request: RequestSpec
    result: dict[str, ResultField] = Field(min_length=1)


class AuthSpec(_Strict):
    header: str = Field(default="Authorization", pattern=r"^[A-Za-z0-9-]{1,64}$")
    scheme: str | None = Field(default="Bearer", max_length=32)


class HttpDefinition(_Strict):
    """One declarative connector file."""

    name: str = Field(pattern=_NAME)
    description: str = Field(min_length=1, max_length=300)
    base_url: str | None = Field(default=None, description="the default API root")
    auth: AuthSpec = Field(default_factory=AuthSpec)
    settings: dict[str, Any] = Field(
        default_factory=dict, description="defaults for the HTTP settings (rate limit, cache)"
    )
    capabilities: list[CapabilityDef] = Field(min_length=1)

    @model_validator(mode="after")
    def _coherent(self) -> HttpDefinition:
        kinds = {c.name: c.kind for c in self.capabilities}
        for cap in self.capabilities:
            if cap.rollback is not None and kinds.get(cap.rollback) is not CapabilityKind.ACTION:
                raise ValueError(f"{cap.name}: rollback {cap.rollback!r} is not an action here")
            if cap.verify is not None and kinds.get(cap.verify) is not CapabilityKind.QUERY:
                raise ValueError(f"{cap.name}: verify {cap.verify!r} is not a query here")
            if cap.reversible and cap.rollback is None:
                raise ValueError(f"{cap.name}: reversible, so name its rollback")
        return self


def _arguments(cap: CapabilityDef) -> dict[str, ArgumentSpec]:
    if cap.kind is not CapabilityKind.ACTION:
        return dict(cap.arguments)
    extra = {k: ArgumentSpec.model_validate(v) for k, v in _ACTION_ARGS.items()}
    return {**extra, **cap.arguments}


def _problems(definition: HttpDefinition) -> list[tuple[tuple[str | int, ...], str]]:
    """Templates that read anything but `args.<declared>`; results that read anything
    but response, status and args; expressions that do not compile."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for i, cap in enumerate(definition.capabilities):
        names = set(_arguments(cap))
        base = ("capabilities", i)
        request = cap.request.model_dump(include={"path", "query", "body"})
        for where, template in iter_templates(request, (*base, "request")):
            for expression in parse_template(template).expressions:
                problems += _expression_problems(expression, where, {"args"})
                for used in re.findall(r"\bargs\.([A-Za-z_][A-Za-z0-9_]*)", expression):
                    if used not in names:
                        problems.append((where, f"args.{used} is not a declared argument"))
        for field_name, spec in cap.result.items():
            where = (*base, "result", field_name, "value")
            problems += _expression_problems(spec.value, where, {"response", "status", "args"})
    return problems


def _expression_problems(
    expression: str, where: tuple[str | int, ...], allowed: set[str]
) -> list[tuple[tuple[str | int, ...], str]]:
    try:
        names = free_variables(expression)
    except ExpressionError as exc:
        return [(where, str(exc))]
    return [(where, f"{name!r} is not defined here") for name in sorted(names - allowed)]


def shipped_definitions_dir() -> Path:
    """The declarative connectors installed with soc-agent (TheHive, ServiceNow CMDB)."""
    return Path(str(files("soc_agent_connectors").joinpath("definitions")))


def available_connector_classes(
    settings: Settings | None, names: Collection[str] | None = None
) -> dict[str, type[Connector]]:
    """Installed connector classes (entry points) and declarative ones (shipped and
    `connector_definitions:`); with `names`, only those. A definition may not take an
    installed connector's name."""
    sources = [shipped_definitions_dir(), *(settings.connector_definitions if settings else [])]
    declared = definition_classes(load_definitions(sources))
    clash = sorted(set(declared) & set(installed_connector_names()))
    if clash:
        raise ConfigError(
            f"a connector definition uses the name of an installed connector: {', '.join(clash)}",
            key="connector_definitions",
        )
    if names is not None:
        declared = {name: cls for name, cls in declared.items() if name in names}
    return {**load_connector_classes(names), **declared}


def load_definitions(paths: Iterable[Path]) -> list[HttpDefinition]:
    """Definition files (a directory means its *.yaml); errors name file, line, field."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
    out: list[HttpDefinition] = []
    seen: dict[str, str] = {}
    for file in files:
        definition = _load_one(file)
        if definition.name in seen:
            raise ConfigError(
                f"connector name {definition.name!r} is already defined in {seen[definition.name]}",
                source=str(file),
                key="name",
            )
        seen[definition.name] = str(file)
        out.append(definition)
    return out


def _load_one(file: Path) -> HttpDefinition:
    source = str(file)
    data, root = read_yaml(file, "connector definition")
    try:
        definition = HttpDefinition.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        raise ConfigError(
            error["msg"], source=source, key=format_path(loc) or None, line=locate(root, loc)
        ) from None
    problems = _problems(definition)
    if problems:
        where, message = problems[0]
        raise ConfigError(message, source=source, key=format_path(where), line=locate(root, where))
    return definition


def definition_classes(definitions: Iterable[HttpDefinition]) -> dict[str, type[Connector]]:
    """One HttpConnector subclass per definition, by connector name."""
    return {d.name: _connector_class(d) for d in definitions}


def _model(name: str, fields: Mapping[str, Any], *, forbid: bool) -> type[BaseModel]:
    config = ConfigDict(extra="forbid" if forbid else "ignore")
    return create_model(name, __config__=config, **fields)


def _argument_field(spec: ArgumentSpec) -> tuple[Any, Any]:
    kind: Any = Literal.__getitem__(tuple(spec.enum)) if spec.enum else _PY_TYPES[spec.type]
    limits: dict[str, Any] = {"description": spec.description}
    if spec.type == "string" and not spec.enum:
        limits["max_length"] = spec.max_length
        if spec.pattern is not None:
            limits["pattern"] = f"^(?:{spec.pattern})$"
    if spec.required:
        return kind, Field(..., **limits)
    return kind | None, Field(default=spec.default, **limits)


def _connector_class(definition: HttpDefinition) -> type[Connector]:
    title = "".join(part.title() for part in definition.name.split("_"))
    config_fields: dict[str, Any] = {
        key: (Any, value) for key, value in definition.settings.items()
    }
    if definition.base_url is not None:
        config_fields["base_url"] = (str, definition.base_url)
    config_model = create_model(f"{title}Config", __base__=HttpConnectorConfig, **config_fields)
    namespace: dict[str, Any] = {
        "name": definition.name,
        "description": definition.description,
        "config_model": config_model,
        "auth_header": definition.auth.header,
        "auth_scheme": definition.auth.scheme,
        "definition": definition,
    }
    for cap in definition.capabilities:
        namespace[f"cap_{cap.name}"] = _method(title, cap)
    return type(f"{title}Connector", (_DeclaredConnector,), namespace)


def _method(title: str, cap: CapabilityDef) -> Any:
    prefix = f"{title}{''.join(p.title() for p in cap.name.split('_'))}"
    in_model = _model(
        f"{prefix}Input",
        {name: _argument_field(spec) for name, spec in _arguments(cap).items()},
        forbid=True,
    )
    out_model = _model(
        f"{prefix}Output",
        {
            name: (_PY_TYPES[spec.type] | None, Field(default=None, description=spec.description))
            for name, spec in cap.result.items()
        },
        forbid=False,
    )

    async def call(self: _DeclaredConnector, args: BaseModel) -> BaseModel:
        return await self.perform(cap, args, out_model)

    call.__doc__ = cap.description
    call.__soc_capability__ = Capability(  # type: ignore[attr-defined]
        name=cap.name,
        kind=cap.kind,
        scopes=tuple(cap.scopes),
        input_model=in_model,
        output_model=out_model,
        description=cap.description,
        reversible=cap.reversible,
        rollback=cap.rollback,
        verify=cap.verify,
        risk=cap.risk,
        target=cap.target,
        idempotent=cap.idempotent,
        cache_ttl=cap.cache_ttl,
        target_names=tuple(cap.target_names),
    )
    return call


class _DeclaredConnector(HttpConnector):
    """What every declarative connector runs: render the request, map the response."""

    definition: ClassVar[HttpDefinition]

    async def perform(
        self, cap: CapabilityDef, args: BaseModel, out_model: type[BaseModel]
    ) -> BaseModel:
        given = args.model_dump(mode="json")
        context = {"args": given}
        where = f"{self.name}.{cap.name}"
        try:
            path = _render_path(cap.request.path, context)
            query = {k: v for k, v in render(cap.request.query, context).items() if v is not None}
            body = render(cap.request.body, context) if cap.request.body is not None else None
        except ExpressionError as exc:
            raise ConnectorError(f"{where}: the request could not be built: {exc}") from None
        response = await self.request(
            cap.request.method,
            path,
            params=query or None,
            json=body,
            idempotent=cap.idempotent,
            allow_status=cap.request.not_found,
        )
        data = self.json_of(response) if response.content else None
        scope = {"response": data, "status": response.status_code, "args": given}
        values: dict[str, Any] = {}
        for name, spec in cap.result.items():
            try:
                values[name] = evaluate(spec.value, scope)
            except ExpressionError as exc:
                raise ConnectorError(
                    f"{where}: result field {name!r} could not be read from the answer "
                    f"(HTTP {response.status_code}): {exc}"
                ) from None
        try:
            return out_model.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise ConnectorError(
                f"{where}: result field {format_path(tuple(error['loc']))}: {error['msg']}"
            ) from None


def _render_path(template: str, context: Mapping[str, Any]) -> str:
    """Each `${...}` in a path is one percent-encoded segment: a value cannot add `/`, `?`
    or `..` to the URL."""
    parts = []
    for part in parse_template(template).parts:
        if not part.is_expression:
            parts.append(part.text)
            continue
        segment = quote(str(evaluate(part.text, context)), safe="")
        if segment in ("", ".", ".."):
            raise ExpressionError(f"a path segment may not be {segment!r}")
        parts.append(segment)
    return "".join(parts)

"""Semantic checks of a loaded playbook: what the schema alone cannot say.

Expressions name only known variables, steps and functions; `needs` form no
cycle and reference earlier steps; templates parse; thresholds are ordered;
and, given a catalog of installed connectors, every capability exists with
the right kind and target. Each problem is a (path, message) pair; the loader
turns paths into file, line and field.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from soc_agent.errors import ExpressionError
from soc_agent.models import EntityType
from soc_agent.playbooks.expressions import (
    free_variables,
    step_references,
    unknown_functions,
)
from soc_agent.playbooks.schema import Playbook
from soc_agent.playbooks.templates import iter_templates, parse_template

__all__ = [
    "CapabilityInfo",
    "CapabilitySpec",
    "Catalog",
    "Path_",
    "Problems",
    "check_configured",
    "check_playbook",
]

Path_ = tuple[str | int, ...]


class CapabilityInfo(Protocol):
    """What the validator needs to know of a capability (connectors' `Capability` fits)."""

    @property
    def kind(self) -> str: ...

    @property
    def target(self) -> str | None: ...


@dataclass(frozen=True)
class CapabilitySpec:
    """A plain CapabilityInfo, for callers that do not hold connector classes."""

    kind: str
    target: str | None = None


Catalog = Mapping[str, Mapping[str, CapabilityInfo | Mapping[str, Any]]]


_STEP_VARS = {"alert", "incident", "steps", "settings"}
# Decisions (score and respond) may also read the memory of past cases (`history.*`).
_DECISION_VARS = _STEP_VARS | {"history"}
_MATCH_VARS = {"alert", "incident"}
_ENTITY_TYPES = [e.value for e in EntityType]
Problems = list[tuple[Path_, str]]


def check_playbook(playbook: Playbook, catalog: Catalog | None = None) -> Problems:
    """Cross-field checks: (path, message) for every problem, in document order."""
    problems: Problems = []
    _check_expression(playbook.match, ("match",), _MATCH_VARS, set(), problems)
    _check_steps(playbook, problems)
    _check_scoring(playbook, problems)
    _check_respond(playbook, problems)
    if catalog is not None:
        _check_catalog(playbook, catalog, problems)
    return problems


def _check_steps(playbook: Playbook, problems: Problems) -> None:
    ids: dict[str, int] = {}
    for i, step in enumerate(playbook.steps):
        if step.id in ids:
            problems.append((("steps", i, "id"), f"step id {step.id!r} is already used"))
        else:
            ids[step.id] = i
    for i, step in enumerate(playbook.steps):
        for j, need in enumerate(step.needs):
            if need not in ids:
                problems.append((("steps", i, "needs", j), _unknown("step", need, ids)))
            elif need == step.id:
                problems.append((("steps", i, "needs", j), f"step {step.id!r} cannot need itself"))
    cycle = _find_cycle(playbook)
    if cycle:
        problems.append(
            (("steps", ids[cycle[0]], "needs"), "dependency cycle: " + " -> ".join(cycle))
        )
    ancestors = _ancestors(playbook) if not cycle else {s.id: set(s.needs) for s in playbook.steps}
    for i, step in enumerate(playbook.steps):
        readable = ancestors.get(step.id, set())
        variables = _STEP_VARS | ({"item"} if step.for_each else set())
        if step.when is not None:
            _check_expression(
                step.when, ("steps", i, "when"), _STEP_VARS, readable, problems, reader=step.id
            )
        if step.for_each is not None:
            _check_expression(
                step.for_each,
                ("steps", i, "for_each"),
                _STEP_VARS,
                readable,
                problems,
                reader=step.id,
            )
        _check_templates(
            step.args, ("steps", i, "args"), variables, readable, problems, reader=step.id
        )


def _check_scoring(playbook: Playbook, problems: Problems) -> None:
    steps = {s.id for s in playbook.steps}
    seen: set[str] = set()
    for i, rule in enumerate(playbook.score.rules):
        base: Path_ = ("score", "rules", i)
        if rule.id in seen:
            problems.append(((*base, "id"), f"score rule id {rule.id!r} is already used"))
        seen.add(rule.id)
        # The model's assessment exists only when a model investigates.
        variables = _DECISION_VARS | ({"agent"} if playbook.investigator != "steps" else set())
        _check_expression(rule.when, (*base, "when"), variables, steps, problems)
        _check_templates(rule.reason, (*base, "reason"), variables, steps, problems)


def _check_respond(playbook: Playbook, problems: Problems) -> None:
    steps = {s.id for s in playbook.steps}
    seen: set[str] = set()
    for i, rule in enumerate(playbook.respond):
        base: Path_ = ("respond", i)
        if rule.id in seen:
            problems.append(((*base, "id"), f"respond rule id {rule.id!r} is already used"))
        seen.add(rule.id)
        variables = _DECISION_VARS | ({"item"} if rule.for_each else set())
        if rule.when is not None:
            _check_expression(rule.when, (*base, "when"), _DECISION_VARS, steps, problems)
        if rule.for_each is not None:
            _check_expression(rule.for_each, (*base, "for_each"), _DECISION_VARS, steps, problems)
        target = rule.target.model_dump()
        _check_templates(target, (*base, "target"), variables, steps, problems)
        _check_templates(rule.args, (*base, "args"), variables, steps, problems)
        if "${" not in rule.target.type and rule.target.type not in _ENTITY_TYPES:
            problems.append(
                (
                    (*base, "target", "type"),
                    _unknown("entity type", rule.target.type, _ENTITY_TYPES),
                )
            )
        for j, need in enumerate(rule.requires):
            if need not in steps:
                problems.append(((*base, "requires", j), _unknown("step", need, steps)))
        _check_thresholds(rule.execute_at, rule.propose_at, rule.notify_at, base, problems)


def _check_thresholds(
    execute_at: float | None,
    propose_at: float | None,
    notify_at: float | None,
    base: Path_,
    problems: list[tuple[Path_, str]],
) -> None:
    named = [("execute_at", execute_at), ("propose_at", propose_at), ("notify_at", notify_at)]
    present = [(name, value) for name, value in named if value is not None]
    if not present:
        problems.append((base, "set at least one of execute_at, propose_at, notify_at"))
        return
    for (high_name, high), (low_name, low) in itertools.pairwise(present):
        if high < low:
            problems.append(
                ((*base, high_name), f"{high_name} ({high:g}) must be >= {low_name} ({low:g})")
            )


def _check_expression(
    expression: str,
    path: Path_,
    variables: set[str],
    readable_steps: set[str],
    problems: list[tuple[Path_, str]],
    *,
    reader: str | None = None,
) -> None:
    try:
        names = free_variables(expression)
    except ExpressionError as exc:
        problems.append((path, str(exc)))
        return
    for function in sorted(unknown_functions(expression)):
        problems.append((path, f"unknown function {function!r}"))
    for name in sorted(names - variables):
        if name == "item":
            problems.append((path, "`item` is only defined inside a for_each"))
        else:
            problems.append((path, _unknown("variable", name, variables)))
    if "steps" in names:
        for ref in step_references(expression):
            if ref in readable_steps:
                continue
            if reader is not None:
                problems.append(
                    (
                        path,
                        f"reads steps.{ref} but step {reader!r} does not need {ref!r}; "
                        "add it to `needs`",
                    )
                )
            else:
                problems.append((path, f"reads steps.{ref}, which is not a step of this playbook"))


def _check_templates(
    value: Any,
    path: Path_,
    variables: set[str],
    readable_steps: set[str],
    problems: list[tuple[Path_, str]],
    *,
    reader: str | None = None,
) -> None:
    for sub, text in iter_templates(value, path):
        try:
            template = parse_template(text)
        except ExpressionError as exc:
            problems.append((sub, str(exc)))
            continue
        for expression in template.expressions:
            _check_expression(expression, sub, variables, readable_steps, problems, reader=reader)


def _find_cycle(playbook: Playbook) -> list[str] | None:
    graph = {s.id: [n for n in s.needs if n != s.id] for s in playbook.steps}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for step in playbook.steps:
        if step.id not in state and (found := visit(step.id)):
            return found
    return None


def _ancestors(playbook: Playbook) -> dict[str, set[str]]:
    direct = {s.id: set(s.needs) for s in playbook.steps}
    out: dict[str, set[str]] = {}

    def of(step_id: str) -> set[str]:
        if step_id not in out:
            found: set[str] = set()
            for need in direct.get(step_id, set()):
                found.add(need)
                found |= of(need)
            out[step_id] = found
        return out[step_id]

    for step_id in direct:
        of(step_id)
    return out


def _check_catalog(playbook: Playbook, catalog: Catalog, problems: list[tuple[Path_, str]]) -> None:
    _check_step_capabilities(playbook, catalog, problems)
    _check_action_capabilities(playbook, catalog, problems)


def _check_step_capabilities(playbook: Playbook, catalog: Catalog, problems: Problems) -> None:
    for i, step in enumerate(playbook.steps):
        caps = catalog.get(step.connector)
        if caps is None:
            problems.append(
                (("steps", i, "connector"), _unknown("connector", step.connector, catalog))
            )
            continue
        cap = caps.get(step.capability)
        if cap is None:
            problems.append(
                (
                    ("steps", i, "capability"),
                    _unknown(f"capability of {step.connector}", step.capability, caps),
                )
            )
        elif _info(cap)[0] != "query":
            problems.append(
                (
                    ("steps", i, "capability"),
                    f"{step.connector}.{step.capability} is an action; "
                    "investigation steps may only use queries",
                )
            )
        else:
            model = _input_model(cap)
            if model is not None:
                where = f"{step.connector}.{step.capability}"
                problems.extend(_check_args(step.args, [model], ("steps", i, "args"), where))


# The executor sets these on every action call; a respond rule's args cannot.
_EXECUTOR_ARGS = ("target", "reason", "idempotency_key")


def _check_action_capabilities(playbook: Playbook, catalog: Catalog, problems: Problems) -> None:
    for i, rule in enumerate(playbook.respond):
        providers = [
            _info(caps[rule.action])
            for caps in catalog.values()
            if rule.action in caps and _info(caps[rule.action])[0] == "action"
        ]
        if not providers:
            actions = {
                n for caps in catalog.values() for n, c in caps.items() if _info(c)[0] == "action"
            }
            problems.append((("respond", i, "action"), _unknown("action", rule.action, actions)))
            continue
        models = [
            m
            for caps in catalog.values()
            if _offers(caps, rule.action) and (m := _input_model(caps[rule.action])) is not None
        ]
        if models:
            problems.extend(
                _check_args(
                    rule.args, models, ("respond", i, "args"), rule.action, set_by=_EXECUTOR_ARGS
                )
            )
        if "${" in rule.target.type:
            continue
        targets = {target for _, target in providers}
        if None not in targets and rule.target.type not in targets:
            problems.append(
                (
                    ("respond", i, "target", "type"),
                    f"{rule.action} acts on {', '.join(sorted(str(t) for t in targets))}, "
                    f"not {rule.target.type}",
                )
            )


def check_configured(playbook: Playbook, catalog: Catalog, configured: Collection[str]) -> Problems:
    """Connectors a step names and actions a respond rule takes that no connector configured
    (of `configured`, the names in `catalog` the deployment runs) provides."""
    problems: Problems = []
    for i, step in enumerate(playbook.steps):
        if step.connector in catalog and step.connector not in configured:
            problems.append(
                (("steps", i, "connector"), f"connector {step.connector!r} is not configured")
            )
    for i, rule in enumerate(playbook.respond):
        offered = sorted(n for n, caps in catalog.items() if _offers(caps, rule.action))
        if offered and not any(name in configured for name in offered):
            problems.append(
                (
                    ("respond", i, "action"),
                    f"no configured connector provides the action {rule.action!r} "
                    f"(offered by {', '.join(offered)}, which is not configured)",
                )
            )
    return problems


def _check_args(
    args: Mapping[str, Any],
    models: Sequence[type[BaseModel]],
    base: Path_,
    capability: str,
    *,
    set_by: Sequence[str] = (),
) -> Problems:
    """`args` against the capability's input model(s): a name none of them knows, a
    required argument left out, a literal value of the wrong type. Templated values
    are checked when they are rendered. With several providers of an action, an
    argument is wrong only if every provider rejects it."""
    problems: Problems = []
    names = [_arg_names(m) for m in models]
    for key in args:
        path: Path_ = (*base, key)
        if key in set_by:
            problems.append((path, f"{key!r} is set by the executor, not by the playbook"))
            continue
        if all(not allows_extra and key not in known for known, allows_extra in names):
            known = sorted({n for found, _ in names for n in found})
            problems.append((path, _unknown(f"argument of {capability}", key, known)))
            continue
        literal = args[key]
        if not _templated(literal):
            errors = [_value_error(m, key, literal) for m in models]
            if all(errors) and errors[0] is not None:
                problems.append((path, f"{capability}: {errors[0]}"))
    for model in models[:1]:
        for name, info in model.model_fields.items():
            given = name in args or (info.alias is not None and info.alias in args)
            if info.is_required() and not given and name not in set_by:
                problems.append((base, f"{capability} needs the argument {name!r}"))
    return problems


def _arg_names(model: type[BaseModel]) -> tuple[set[str], bool]:
    names = {n for n in model.model_fields} | {
        f.alias for f in model.model_fields.values() if f.alias
    }
    return names, model.model_config.get("extra") == "allow"


def _value_error(model: type[BaseModel], key: str, value: Any) -> str | None:
    """What the model says of `key: value` alone (other fields' errors ignored)."""
    try:
        model.model_validate({key: value})
    except ValidationError as exc:
        for error in exc.errors():
            if error["loc"] and error["loc"][0] == key and error["type"] != "missing":
                return str(error["msg"])
    return None


def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, Mapping):
        return any(_templated(v) for v in value.values())
    if isinstance(value, list):
        return any(_templated(v) for v in value)
    return False


def _input_model(cap: CapabilityInfo | Mapping[str, Any]) -> type[BaseModel] | None:
    model = (
        cap.get("input_model") if isinstance(cap, Mapping) else getattr(cap, "input_model", None)
    )
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _offers(caps: Mapping[str, CapabilityInfo | Mapping[str, Any]], action: str) -> bool:
    return action in caps and _info(caps[action])[0] == "action"


def _info(cap: CapabilityInfo | Mapping[str, Any]) -> tuple[str, str | None]:
    if isinstance(cap, Mapping):
        kind, target = cap.get("kind"), cap.get("target")
    else:
        kind, target = cap.kind, cap.target
    return str(kind), (str(target) if target is not None else None)


def _unknown(what: str, name: str, known: Iterable[Any]) -> str:
    names = sorted(str(k) for k in known)
    hint = difflib.get_close_matches(name, names, n=1)
    message = f"unknown {what} {name!r}"
    if hint:
        return f"{message} (did you mean {hint[0]!r}?)"
    if names and len(names) <= 12:
        return f"{message} (known: {', '.join(names)})"
    return message

"""Loading and validating playbook files, with errors that name file, line and field.

Every problem found in every file is collected and raised together as one
`PlaybookValidationError`, so a responder fixes a directory in one pass.
"""

from __future__ import annotations

import difflib
import itertools
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Protocol, Union

import yaml
from pydantic import BaseModel, ValidationError

from soc_agent.errors import ExpressionError, PlaybookError, SocAgentError
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
    "PlaybookValidationError",
    "check_playbook",
    "format_path",
    "load_playbook_file",
    "load_playbooks",
    "locate",
    "parse_yaml",
    "shipped_playbooks_dir",
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


class PlaybookValidationError(PlaybookError):
    """Every problem found while loading playbooks; `str()` lists one per line."""

    def __init__(self, errors: Sequence[PlaybookError]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else None
        self.file = first.file if first else ""
        self.line = first.line if first else None
        self.field = first.field if first else None
        SocAgentError.__init__(self, "\n".join(str(e) for e in self.errors))


def shipped_playbooks_dir() -> Path:
    """The folder of playbooks installed with soc-agent (package `soc_agent_playbooks`)."""
    return Path(str(files("soc_agent_playbooks")))


def load_playbooks(
    source: str | Path | Iterable[str | Path], *, catalog: Catalog | None = None
) -> list[Playbook]:
    """Load every `*.yaml`/`*.yml` of a directory (or the given files), sorted by name.

    Raises PlaybookValidationError listing all problems, including playbook
    names used twice across the files.
    """
    paths = _collect(source)
    errors: list[PlaybookError] = []
    playbooks: list[Playbook] = []
    seen: dict[str, str] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            errors.append(PlaybookError(f"cannot read: {exc.strerror}", file=str(path)))
            continue
        playbook, root, file_errors = _load_text(text, str(path), catalog)
        errors.extend(file_errors)
        if playbook is None:
            continue
        if playbook.name in seen:
            errors.append(
                PlaybookError(
                    f"playbook name {playbook.name!r} is already used by {seen[playbook.name]}",
                    file=str(path),
                    line=locate(root, ("name",)),
                    field="name",
                )
            )
            continue
        seen[playbook.name] = str(path)
        playbooks.append(playbook)
    if errors:
        raise PlaybookValidationError(errors)
    return sorted(playbooks, key=lambda p: p.name)


def load_playbook_file(path: str | Path, *, catalog: Catalog | None = None) -> Playbook:
    """Load one playbook file; raises PlaybookValidationError."""
    return load_playbooks([path], catalog=catalog)[0]


def _collect(source: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        return [path]
    return [Path(p) for p in source]


def parse_yaml(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML keeping the node tree (for line numbers); rejects duplicate keys."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _reject_duplicate_keys(node, file)
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise PlaybookError(
            f"YAML syntax error: {problem}", file=file, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise PlaybookError(f"YAML error: {exc}", file=file) from None
    finally:
        loader.dispose()


def _reject_duplicate_keys(node: yaml.Node, file: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise PlaybookError(
                        f"duplicate key {key.value!r}",
                        file=file,
                        line=key.start_mark.line + 1,
                        field=str(key.value),
                    )
                seen.add(key.value)
            _reject_duplicate_keys(value, file)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item, file)


def _load_text(
    text: str, file: str, catalog: Catalog | None
) -> tuple[Playbook | None, yaml.Node | None, list[PlaybookError]]:
    try:
        data, root = parse_yaml(text, file)
    except PlaybookError as exc:
        return None, None, [exc]
    if not isinstance(data, dict):
        return None, root, [PlaybookError("a playbook must be a YAML mapping", file=file, line=1)]
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        return None, root, [_from_pydantic(err, file, root) for err in exc.errors()]
    problems = check_playbook(playbook, catalog)
    errors = [
        PlaybookError(message, file=file, line=locate(root, path), field=format_path(path))
        for path, message in problems
    ]
    return (None if errors else playbook), root, errors


# --- locating nodes -------------------------------------------------------------------


def locate(root: yaml.Node | None, path: Sequence[str | int]) -> int | None:
    """1-based line of the node at `path` (or of its deepest existing ancestor)."""
    node, _ = _walk(root, path)
    return node.start_mark.line + 1 if node is not None else None


def _walk(root: yaml.Node | None, path: Sequence[str | int]) -> tuple[yaml.Node | None, Path_]:
    node, resolved = root, []
    for part in path:
        child = _child(node, part)
        if child is None:
            continue  # a pydantic union tag, or a key that is missing
        node = child
        resolved.append(part)
    return node, tuple(resolved)


def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value  # type: ignore[no-any-return]
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        return node.value[part] if 0 <= part < len(node.value) else None
    return None


def format_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _from_pydantic(err: Any, file: str, root: yaml.Node | None) -> PlaybookError:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    node, resolved = _walk(root, loc)
    kind = err["type"]
    field_path = resolved
    if kind == "missing" and loc and isinstance(loc[-1], str):
        field_path = (*resolved, loc[-1])
    message = str(err["msg"])
    if kind == "extra_forbidden":
        key = loc[-1]
        known = _fields_at(Playbook, resolved[:-1])
        hint = difflib.get_close_matches(str(key), known, n=1)
        message = f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        if known:
            message += f"; allowed: {', '.join(sorted(known))}"
    elif kind == "missing":
        message = "required key is missing"
    elif "input" in err and kind not in {"model_type", "dict_type", "list_type"}:
        message += f" (got {err['input']!r:.80})"
    line = node.start_mark.line + 1 if node is not None else None
    return PlaybookError(message, file=file, line=line, field=format_path(field_path) or None)


def _fields_at(model: type[BaseModel], path: Sequence[str | int]) -> list[str]:
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _inner_model(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (list, Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if isinstance(found, type) and issubclass(found, BaseModel):
                return found
        return None
    return annotation


# --- semantic checks ------------------------------------------------------------------

_STEP_VARS = {"alert", "incident", "steps"}
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
        _check_expression(rule.when, (*base, "when"), _STEP_VARS, steps, problems)
        _check_templates(rule.reason, (*base, "reason"), _STEP_VARS, steps, problems)


def _check_respond(playbook: Playbook, problems: Problems) -> None:
    steps = {s.id for s in playbook.steps}
    seen: set[str] = set()
    for i, rule in enumerate(playbook.respond):
        base: Path_ = ("respond", i)
        if rule.id in seen:
            problems.append(((*base, "id"), f"respond rule id {rule.id!r} is already used"))
        seen.add(rule.id)
        variables = _STEP_VARS | ({"item"} if rule.for_each else set())
        if rule.when is not None:
            _check_expression(rule.when, (*base, "when"), _STEP_VARS, steps, problems)
        if rule.for_each is not None:
            _check_expression(rule.for_each, (*base, "for_each"), _STEP_VARS, steps, problems)
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
        for ref in sorted(step_references(expression)):
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

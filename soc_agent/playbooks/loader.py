"""Loading and validating playbook files, with errors that name file, line and field.

Every problem found in every file is collected and raised together as one
`PlaybookValidationError`, so a responder fixes a directory in one pass.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Collection, Iterable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from soc_agent.errors import PlaybookError, SocAgentError
from soc_agent.playbooks.checks import Catalog, check_configured, check_playbook
from soc_agent.playbooks.schema import Playbook
from soc_agent.yaml_input import NoAliasLoader, locate, walk

__all__ = [
    "PlaybookValidationError",
    "format_path",
    "load_playbook_file",
    "load_playbooks",
    "parse_yaml",
    "playbook_files",
    "shipped_playbooks_dir",
    "unconfigured_references",
]


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


def playbook_files(sources: Iterable[str | Path]) -> list[Path]:
    """The playbook files of several sources (directories or files), in order."""
    return [path for source in sources for path in _collect(source)]


def unconfigured_references(
    source: str | Path | Iterable[str | Path], catalog: Catalog, configured: Collection[str]
) -> list[PlaybookError]:
    """Steps naming, and respond rules needing, a connector the deployment does not run;
    each names file, line and field. The files must already load."""
    found: list[PlaybookError] = []
    for path in _collect(source):
        data, root = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        playbook = Playbook.model_validate(data)
        found.extend(
            PlaybookError(
                message, file=str(path), line=locate(root, where), field=format_path(where)
            )
            for where, message in check_configured(playbook, catalog, configured)
        )
    return found


def _collect(source: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        return [path]
    return [Path(p) for p in source]


def parse_yaml(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML keeping the node tree (for line numbers); rejects duplicate keys."""
    loader = NoAliasLoader(text)
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


def format_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _from_pydantic(err: Any, file: str, root: yaml.Node | None) -> PlaybookError:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    node, resolved = walk(root, loc)
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

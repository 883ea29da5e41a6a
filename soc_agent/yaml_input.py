"""YAML the agent reads from operators and responders, with aliases refused.

An alias (`*name`) repeats a node; nested ones grow exponentially (ten levels of
ten make 10^10 nodes), so one short file would hang validation and every
command that loads it. Anchors alone are harmless and still load. Every YAML
the core reads (the config file, playbooks, field mappings) goes through
`NoAliasLoader`; an alias fails at once with its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import ComposerError
from yaml.nodes import Node

from soc_agent.errors import ConfigError

__all__ = ["NoAliasLoader", "compose", "locate", "read_model", "read_yaml", "safe_load", "walk"]


M = TypeVar("M", bound=BaseModel)


class NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing any alias before it is expanded."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ComposerError(
                None,
                None,
                "aliases (*name) are not allowed here: repeat the value instead",
                event.start_mark,
            )
        node: Node | None = super().compose_node(parent, index)
        return node


def safe_load(text: str) -> Any:
    """`yaml.safe_load`, refusing aliases."""
    return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def compose(text: str) -> Node | None:
    """`yaml.compose` (the node tree, for line numbers), refusing aliases."""
    return yaml.compose(text, Loader=NoAliasLoader)


def read_yaml(path: Path, what: str) -> tuple[Any, Node | None]:
    """A file's data and node tree (for line numbers); ConfigError naming the file, and the
    line of a YAML error, when it cannot be read or parsed. `what` names the file's kind."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        return safe_load(text), compose(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the {what}: {exc}", source=source) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {exc}", source=source, line=line) from exc


def read_model(path: Path, model: type[M], what: str) -> tuple[M, Node | None]:
    """A file read and validated as `model`, with its node tree; the first problem is a
    ConfigError naming the file, the line and the field (`rules.0.points`)."""
    data, node = read_yaml(path, what)
    try:
        return model.model_validate(data), node
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        raise ConfigError(
            error["msg"],
            source=str(path),
            key=".".join(str(p) for p in loc) or None,
            line=locate(node, loc),
        ) from None


# --- locating nodes -------------------------------------------------------------------


def locate(root: Node | None, path: Sequence[str | int]) -> int | None:
    """1-based line of the node at `path` (or of its deepest existing ancestor)."""
    node, _ = walk(root, path)
    return node.start_mark.line + 1 if node is not None else None


def walk(root: Node | None, path: Sequence[str | int]) -> tuple[Node | None, tuple[str | int, ...]]:
    """The deepest node along `path` and the part of the path that led to it."""
    node, resolved = root, []
    for part in path:
        child = _child(node, part)
        if child is None:
            continue  # a pydantic union tag, or a key that is missing
        node = child
        resolved.append(part)
    return node, tuple(resolved)


def _child(node: Node | None, part: str | int) -> Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value  # type: ignore[no-any-return]
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        return node.value[part] if 0 <= part < len(node.value) else None
    return None

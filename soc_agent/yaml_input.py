"""YAML the agent reads from operators and responders, with aliases refused.

An alias (`*name`) repeats a node; nested ones grow exponentially (ten levels of
ten make 10^10 nodes), so one short file would hang validation and every
command that loads it. Anchors alone are harmless and still load. Every YAML
the core reads (the config file, playbooks, field mappings) goes through
`NoAliasLoader`; an alias fails at once with its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.nodes import Node

from soc_agent.errors import ConfigError

__all__ = ["NoAliasLoader", "compose", "read_yaml", "safe_load"]


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

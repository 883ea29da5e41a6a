"""The organisation's own knowledge of who is who: inventory entries with `aliases:`.

An alert naming `jdoe` and one naming `j.doe@acme.example` share no name; only
the inventory knows they are one person. Each inventory entry with aliases
(`{type: user, value: j.doe@acme.example, aliases: {sam: jdoe, upn: ...}}`) makes
every one of its names resolve to it: an alert entity named by any of them takes
the entry's value and gains its aliases before correlation, risk and decisions
see it. The inventory's value is the organisation's canonical name, so it wins
over the vendor's (`models.names`); entities it does not know are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from soc_agent.errors import ConfigError
from soc_agent.models import Alert, Entity, EntityType
from soc_agent.models.alert import MAX_ALIASES, clean_aliases, merge_aliases
from soc_agent.yaml_input import locate, read_model

__all__ = ["IdentityBook", "load_identity_book"]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: EntityType
    value: str = Field(min_length=1, max_length=2048)
    aliases: dict[str, str] = Field(default_factory=dict, max_length=MAX_ALIASES)

    @model_validator(mode="after")
    def _names(self) -> _Entry:
        _, bad = clean_aliases(self.type, self.aliases)
        if bad:
            raise ValueError(
                "aliases are `kind: name` with a lower-case kind (upn, sam, fqdn, ...) and a "
                f"name valid for a {self.type.value}"
            )
        return self

    def entity(self) -> Entity:
        return Entity(type=self.type, value=self.value, aliases=self.aliases)


class _Inventory(BaseModel):
    model_config = ConfigDict(extra="allow")

    assets: list[_Entry] = Field(default_factory=list, max_length=1_000_000)


class IdentityBook:
    """Every name of every inventory entry with aliases, pointing at that entry."""

    def __init__(self, entries: Iterable[Entity] = ()) -> None:
        self._by_key: dict[str, Entity] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: Entity) -> None:
        """Index every name of `entry`; a name already naming another entry is an error."""
        for key in entry.keys:
            known = self._by_key.get(key)
            if known is not None and known.key != entry.key:
                # One name for two things would silently merge two people.
                raise ValueError(f"{key} names two entries: {known.key} and {entry.key}")
            self._by_key[key] = entry

    def __len__(self) -> int:
        return len({e.key for e in self._by_key.values()})

    def resolve(self, alert: Alert) -> Alert:
        """The alert with every entity the inventory knows renamed to the entry's value and
        given its aliases (the vendor's name is kept as an alias); the same alert if none."""
        if not self._by_key:
            return alert
        changed = False
        entities: list[Entity] = []
        for entity in alert.entities:
            entry = next((self._by_key[k] for k in entity.keys if k in self._by_key), None)
            if entry is None:
                entities.append(entity)
                continue
            named = merge_aliases(
                entry.model_copy(update={"role": entity.role, "attributes": entity.attributes}),
                entity,
            )
            changed = changed or named != entity
            entities.append(named)
        if not changed:
            return alert
        seen: set[tuple[str, str | None]] = set()
        distinct = []
        for entity in entities:  # two vendor names of one entry in one role become one
            if (entity.key, entity.role) not in seen:
                seen.add((entity.key, entity.role))
                distinct.append(entity)
        return alert.model_copy(update={"entities": distinct})


def load_identity_book(path: Path) -> IdentityBook:
    """The inventory's entries with aliases; errors name file, line and field."""
    parsed, node = read_model(path, _Inventory, "identity file")
    book = IdentityBook()
    for i, entry in enumerate(parsed.assets):
        if not entry.aliases:
            continue
        try:
            book.add(entry.entity())
        except ValueError as exc:
            loc = ("assets", i, "aliases")
            raise ConfigError(
                str(exc), source=str(path), key=f"assets.{i}.aliases", line=locate(node, loc)
            ) from None
    return book

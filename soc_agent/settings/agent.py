"""One settings model: defaults < YAML config file < `SOC_AGENT_*` environment < CLI flags.

Errors name where the bad value came from: the YAML file and line, or the
environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from soc_agent_connectors import installed_connector_names

from soc_agent.correlate import CorrelationConfig
from soc_agent.errors import ConfigError
from soc_agent.models.alert import MAX_ENTITIES
from soc_agent.policy import PolicyConfig
from soc_agent.risk.config import RiskConfig
from soc_agent.settings.api import ApiConfig
from soc_agent.settings.kafka import KafkaConfig
from soc_agent.settings.llm import LlmConfig
from soc_agent.settings.packs import Pack, shipped_packs
from soc_agent.settings.packs import resolve as resolve_pack
from soc_agent.store.config import ElasticsearchConfig
from soc_agent.yaml_input import compose, safe_load

__all__ = [
    "DEFAULT_GRANTS",
    "ENV_PREFIX",
    "RuntimeConfig",
    "Settings",
    "enabled_packs",
    "load_settings",
]

ENV_PREFIX = "SOC_AGENT_"

# Least privilege, spelled out: the embedded demo may read everything its offline
# connectors offer and perform the recorded containments. Narrow it in production.
DEFAULT_GRANTS: dict[str, list[str]] = {
    "threat_intel": ["intel:read"],
    "asset_inventory": ["assets:read"],
    "event_store": ["siem:read"],
    "containment": [
        "containment:read",
        "host:contain",
        "user:disable",
        "session:revoke",
        "network:block",
        "file:quarantine",
        "email:quarantine",
    ],
    "notifier": ["notify:send"],
    "risk": ["risk:read"],
    "history": ["history:read"],
}


def _checked_enabled(raw: dict[str, Any]) -> dict[str, Any]:
    """`enabled: false` opts a connector out; anything but a boolean is an error, never "on"."""
    if "enabled" in raw:
        try:
            TypeAdapter(bool).validate_python(raw["enabled"])
        except ValidationError:
            raise ValueError(f"enabled must be true or false, not {raw['enabled']!r}") from None
    return raw


ConnectorEntry = Annotated[dict[str, Any], AfterValidator(_checked_enabled)]


class RuntimeConfig(BaseModel):
    """Bounds for the pipeline: how much work runs at once, and how large one alert may be."""

    model_config = ConfigDict(extra="forbid")

    max_concurrent_alerts: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="alerts decided at once per process; default 32 for `run` and `replay`, "
        "8 for `worker` (workers sharing a store contend for the incidents alerts share)",
    )
    connector_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    notify_channel: str = "soc"
    max_alert_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="one alert record read from a file or stdin (as the webhook's body limit); "
        "a larger one is dead-lettered with its first 64 KiB, its length and sha256",
    )
    max_input_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        le=4 * 1024 * 1024 * 1024,
        description="a file or stdin that must be parsed whole (a JSON array, a pretty-printed "
        "document); JSON lines are read one record at a time, whatever their size",
    )
    max_entities_per_alert: int = Field(
        default=MAX_ENTITIES,
        ge=8,
        le=4096,
        description="entities one alert keeps (the first ones); the rest are counted by type "
        "and make the decision's rules that did not fire unevaluated",
    )

    @model_validator(mode="after")
    def _one_alert_fits_in_an_input(self) -> RuntimeConfig:
        if self.max_input_bytes < self.max_alert_bytes:
            raise ValueError(
                f"max_input_bytes ({self.max_input_bytes}) must be at least max_alert_bytes "
                f"({self.max_alert_bytes}): an input read at once holds at least one alert"
            )
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    config: Path | None = Field(default=None, description="YAML config file")
    store: Path = Field(
        default=Path("soc-agent.db"),
        description="SQLite store path (embedded); with Elasticsearch, the base of local files",
    )
    store_backend: Literal["sqlite", "elasticsearch"] = Field(
        default="sqlite",
        description="where state lives: one machine (sqlite) or shared by workers (elasticsearch)",
    )
    elasticsearch: ElasticsearchConfig = Field(default_factory=ElasticsearchConfig)
    agent_id: str = Field(default="soc-agent", min_length=1, max_length=128)
    playbooks: list[Path] = Field(default_factory=list, description="extra playbook dirs/files")
    packs: list[str] = Field(
        default_factory=list,
        description="packs to enable: an installed pack's name or a pack directory; each adds "
        "its playbooks, mappings and connector definitions",
    )
    pack_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="values of each enabled pack's settings, by pack name (see its pack.yaml)",
    )
    connector_definitions: list[Path] = Field(
        default_factory=list,
        description="declarative HTTP connector files (or dirs of them), beside the shipped ones",
    )
    shipped_playbooks: bool = Field(default=True, description="load the shipped playbooks")
    mappings: list[Path] = Field(default_factory=list, description="declarative field mappings")
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    correlation: CorrelationConfig = Field(default_factory=CorrelationConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    risk_rules: list[Path] = Field(
        default_factory=list, description="risk rule files (or dirs of them), beside the shipped"
    )
    connectors: dict[str, ConnectorEntry] = Field(
        default_factory=dict,
        description="connectors added to (or configuring) the defaults; `enabled: false` "
        "turns a default one off",
    )
    grants: dict[str, list[str]] = Field(
        default_factory=dict,
        description="scopes per connector; a default connector not named keeps its default grants",
    )
    missing_connectors: Literal["fail", "escalate"] = Field(
        default="fail",
        description="a loaded playbook names a connector or action that nothing configured "
        "provides: refuse to start, or start and escalate what it cannot do",
    )
    audit_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for the audit chain; without one the embedded store generates "
        "`<store>.audit-key` (0600), and Elasticsearch requires one",
    )
    audit_anchor_file: Path | None = Field(
        default=None,
        description="append the audit chain's head here (keep it append-only, off the store's "
        "disk); `audit verify --against FILE` checks it",
    )
    audit_anchor_seconds: float = Field(
        default=60.0, gt=0, le=86_400, description="how often the head is appended"
    )
    audit_queries: Literal["each", "summary"] = Field(
        default="summary",
        description="read-only connector queries of a playbook's investigation steps and the "
        "policy's look-ups of the targets: one audit entry per investigation listing every "
        "call (summary), or one per call (each); actions, denials, failed queries, the "
        "model's lookups and queries outside a decision are audited one by one either way",
    )
    secret_dirs: list[Path] = Field(
        default_factory=lambda: [Path("/run/secrets"), Path("/var/run/secrets")],
        description="where file: credential references may point (also the config file's "
        "directory)",
    )
    data_dirs: list[Path] = Field(
        default_factory=list,
        description="where connector data files may be (also the store's and the config "
        "file's directories and the shipped samples)",
    )
    local_operator: bool = Field(
        default=False,
        description="let the CLI decide proposals without an API token, as the one identity "
        "local:operator (four-eyes counts it once)",
    )
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    llm: LlmConfig | None = Field(
        default=None, description="the reasoning investigator's model (none: steps only)"
    )
    log_level: str = Field(default="WARNING", pattern="(?i)^(debug|info|warning|error)$")

    # Set by `with_packs`, never configured: each pack's playbooks folder -> its settings.
    _playbook_settings: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)

    @property
    def playbook_settings(self) -> dict[str, dict[str, Any]]:
        return self._playbook_settings

    def alerts_at_once(self, *, worker: bool) -> int:
        """`runtime.max_concurrent_alerts`, or its default: 32 in one process deciding
        alone (`run`, `replay`), 8 in a Kafka worker.

        One process decides more per second with more alerts in flight (32: 276-283
        alerts/s against 228-259 at 8). Workers share their store with other workers and
        contend for the incidents their alerts share: with three on Elasticsearch, 32 cost
        12.0 requests per alert against 10.5 at 8 for no more throughput, and on one
        SQLite file the flag that marks a dead letter published waited longer, widening
        the window in which a killed worker publishes it twice (see the README).
        """
        configured = self.runtime.max_concurrent_alerts
        if configured is not None:
            return configured
        return 8 if worker else 32

    @field_validator("connectors", mode="after")
    @classmethod
    def _add_to_the_defaults(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # Configuring one connector once replaced the whole default set and quietly turned
        # off intel, inventory, SIEM, containment and notifier; now only `enabled: false` does.
        merged: dict[str, dict[str, Any]] = {name: {} for name in DEFAULT_GRANTS}
        merged.update(value)
        out: dict[str, dict[str, Any]] = {}
        for name, raw in merged.items():
            options = {k: v for k, v in raw.items() if k != "enabled"}
            if TypeAdapter(bool).validate_python(raw.get("enabled", True)):
                out[name] = options
        return out

    @model_validator(mode="after")
    def _default_grants_for_default_connectors(self) -> Settings:
        for name, scopes in DEFAULT_GRANTS.items():
            if name in self.connectors and name not in self.grants:
                self.grants[name] = list(scopes)
        return self

    def disabled_connectors(self) -> list[str]:
        """The default connectors this configuration turned off."""
        return [name for name in DEFAULT_GRANTS if name not in self.connectors]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    def audit_hmac_key(self) -> bytes | None:
        """The audit chain's HMAC key, if one is configured."""
        return self.audit_key.get_secret_value().encode() if self.audit_key else None

    def connector_defaults(self) -> dict[str, dict[str, Any]]:
        """Connector settings with file outputs placed beside the store by default."""
        out = {name: dict(raw) for name, raw in self.connectors.items()}
        base = self.store.with_suffix("")
        for name, raw in out.items():
            implementation = raw.get("use", name)
            if implementation == "containment":
                raw.setdefault("journal", f"{base}.containment.jsonl")
            elif implementation == "notifier":
                raw.setdefault("outbox", f"{base}.notifications.jsonl")
        return out


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by `SOC_AGENT_CONFIG` (or passed as `config=`)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None = None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ returns the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        path = _config_path()
        if path is None:
            return {}
        data = _read_yaml(path)
        data.pop("config", None)
        return data


_EXPLICIT_CONFIG: list[Path] = []


def _config_path() -> Path | None:
    if _EXPLICIT_CONFIG:
        return _EXPLICIT_CONFIG[-1]
    raw = os.environ.get(f"{ENV_PREFIX}CONFIG")
    return Path(raw) if raw else None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", source=str(path)) from None
    try:
        data = safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"invalid YAML: {getattr(exc, 'problem', exc)}",
            source=str(path),
            line=mark.line + 1 if mark else None,
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("the config file must hold a mapping of settings", source=str(path))
    return data


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Build and validate settings; a bad value raises ConfigError naming its origin."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if config is not None:
        _EXPLICIT_CONFIG.append(config)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise _explain(exc, config or _config_path()) from None
    finally:
        if config is not None:
            _EXPLICIT_CONFIG.pop()
    source = config or _config_path()
    if settings.config is None and source is not None:
        # Where the settings came from: file settings may sit beside it (confinement).
        settings = settings.model_copy(update={"config": source})
    _check_together(settings)
    return with_packs(settings)


def enabled_packs(settings: Settings) -> list[Pack]:
    """The shipped packs (unless `shipped_playbooks: false`), then those of `packs:`.

    Naming a shipped pack in `packs:` as well is harmless; two different packs of
    one name are an error naming both.
    """
    base = settings.config.parent if settings.config else None
    shipped = shipped_packs() if settings.shipped_playbooks else []
    chosen: dict[str, Pack] = {}
    for pack in [*shipped, *(resolve_pack(entry, base) for entry in settings.packs)]:
        first = chosen.setdefault(pack.name, pack)
        if first.root.resolve() != pack.root.resolve():
            raise ConfigError(
                f"two packs are named {pack.name!r}: {first.root} and {pack.root}", key="packs"
            )
    return list(chosen.values())


def with_packs(settings: Settings) -> Settings:
    """The settings with each enabled pack's folders added to playbooks, mappings and
    connector definitions (whether its required connectors are configured is checked
    with the playbooks', at start-up)."""
    playbooks, mappings = list(settings.playbooks), list(settings.mappings)
    definitions, risk_rules = list(settings.connector_definitions), list(settings.risk_rules)
    values: dict[str, dict[str, Any]] = {}
    packs = enabled_packs(settings)
    installed = set(installed_connector_names())
    for pack in packs:
        _check_provided(pack, installed)
        source = str(settings.config) if settings.config else None
        pack_values = _pack_values(pack, settings.pack_settings.get(pack.name, {}), source)
        if pack.folder("playbooks") is not None:
            values[str(pack.folder("playbooks"))] = pack_values
        for folder, into in (
            ("playbooks", playbooks),
            ("mappings", mappings),
            ("connectors", definitions),
            ("risk_rules", risk_rules),
        ):
            found = pack.folder(folder)
            if found is not None and found not in into:  # idempotent: enabled settings again
                into.append(found)
    names = [pack.name for pack in packs]
    for name in settings.pack_settings:
        if name not in names:
            raise ConfigError(
                f"settings for a pack that is not enabled: {name!r} "
                f"(enabled: {', '.join(names) or 'none'})",
                key=f"pack_settings.{name}",
            )
    updated = settings.model_copy(
        update={
            "playbooks": playbooks,
            "mappings": mappings,
            "connector_definitions": definitions,
            "risk_rules": risk_rules,
        }
    )
    updated._playbook_settings = {**settings.playbook_settings, **values}
    return updated


def _check_provided(pack: Pack, installed: set[str]) -> None:
    """The Python connectors a pack says it provides are installed."""
    absent = [c for c in pack.manifest.provides.connectors if c not in installed]
    if absent:
        raise ConfigError(
            f"pack {pack.name!r} provides connectors that no installed distribution "
            f"registers under soc_agent.connectors: {', '.join(absent)}",
            key="packs",
        )


def _pack_values(pack: Pack, given: dict[str, Any], source: str | None) -> dict[str, Any]:
    try:
        return pack.manifest.settings_model().model_validate(given).model_dump()
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(["pack_settings", pack.name, *(str(p) for p in error["loc"])])
        declared = ", ".join(pack.manifest.settings) or "none"
        raise ConfigError(
            f"{error['msg']} (the pack declares: {declared})", source=source, key=key
        ) from None


def _check_together(settings: Settings) -> None:
    """Rules that span sections, which no single field's validator can see."""
    if settings.api.publish_approvals and settings.kafka.approvals_key is None:
        raise ConfigError(
            "api.publish_approvals is on, so the verdicts it publishes must be signed: "
            "set a key of 32+ characters, the same on the API and every worker",
            key="kafka.approvals_key",
        )


def _explain(exc: ValidationError, path: Path | None) -> ConfigError:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc)
    value = err.get("input")
    secret = any(word in key.lower() for word in _SECRET_WORDS)
    shown = (
        f" (got {str(value)[:80]!r})" if not secret and not isinstance(value, dict | list) else ""
    )
    message = f"{err['msg']}{shown}"
    env_name = ENV_PREFIX + "__".join(loc).upper()
    if loc and env_name in os.environ:
        return ConfigError(message, source=f"environment {env_name}", key=key)
    if loc and os.environ.get(ENV_PREFIX + loc[0].upper()) is not None:
        return ConfigError(message, source=f"environment {ENV_PREFIX + loc[0].upper()}", key=key)
    if path is not None and path.exists():
        return ConfigError(message, source=str(path), key=key, line=_line_of(path, loc))
    return ConfigError(message, key=key)


# Values of keys like these are never echoed back in an error message.
_SECRET_WORDS = ("key", "secret", "token", "password", "credential")


def _line_of(path: Path, loc: list[str]) -> int | None:
    """The line of the YAML node at `loc`, or of its nearest existing parent."""
    try:
        node = compose(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError):
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                key_node = next((k for k, _ in node.value if k.value == part), None)
                return key_node.start_mark.line + 1 if key_node else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
        else:
            break
        line = node.start_mark.line + 1
    return line

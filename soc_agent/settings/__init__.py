"""The one settings model and its parts: defaults < YAML file < `SOC_AGENT_*` env < flags.

`agent` holds `Settings` and its loading; `api` and `kafka` the settings of the
analyst API and the Kafka runtime. Settings are plain models: this package
imports the core's config models, never the API, the runtimes or the CLI.
"""

from __future__ import annotations

from soc_agent.settings.agent import (
    DEFAULT_GRANTS,
    ENV_PREFIX,
    RuntimeConfig,
    Settings,
    load_settings,
)
from soc_agent.settings.api import ApiConfig, OidcConfig
from soc_agent.settings.kafka import InputTopic, KafkaConfig, TopicLayout, TopicsConfig

__all__ = [
    "DEFAULT_GRANTS",
    "ENV_PREFIX",
    "ApiConfig",
    "InputTopic",
    "KafkaConfig",
    "OidcConfig",
    "RuntimeConfig",
    "Settings",
    "TopicLayout",
    "TopicsConfig",
    "load_settings",
]

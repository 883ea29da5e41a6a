"""Choosing and configuring the state backend: validation names the key, secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc_agent.errors import ConfigError, StoreError
from soc_agent.runtime.backend import open_backend
from soc_agent.settings import load_settings


def test_sqlite_is_the_default() -> None:
    settings = load_settings()
    assert settings.store_backend == "sqlite"
    assert settings.elasticsearch.index_prefix == "soc-agent"


def test_environment_selects_elasticsearch_and_keeps_the_key_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOC_AGENT_STORE_BACKEND", "elasticsearch")
    monkeypatch.setenv("SOC_AGENT_ELASTICSEARCH__HOSTS", '["https://es-1:9200"]')
    monkeypatch.setenv("SOC_AGENT_ELASTICSEARCH__API_KEY", "c2VjcmV0LWtleQ==")
    settings = load_settings()
    assert settings.store_backend == "elasticsearch"
    assert settings.elasticsearch.hosts == ["https://es-1:9200"]
    assert "c2VjcmV0LWtleQ" not in repr(settings)


def test_an_unknown_backend_is_refused_naming_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "soc-agent.yaml"
    config.write_text("agent_id: a\nstore_backend: postgres\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert err.value.key == "store_backend"
    assert f"{config}:2" in str(err.value)


@pytest.mark.parametrize(
    ("elasticsearch", "problem"),
    [
        ({"api_key": "k", "username": "u", "password": "p"}, "either api_key"),
        ({"username": "u"}, "go together"),
        ({"index_prefix": "Soc Agent"}, "index_prefix"),
        ({"refresh_interval": "soon"}, "refresh_interval"),
        ({"hosts": []}, "hosts"),
    ],
)
def test_bad_elasticsearch_settings_fail_fast(
    elasticsearch: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings(elasticsearch=elasticsearch)


async def test_an_unreachable_cluster_names_the_hosts_but_not_the_credentials() -> None:
    settings = load_settings(
        store_backend="elasticsearch",
        audit_key="a-key-the-workers-share-0123456789",
        elasticsearch={
            # Port 9 (discard) on loopback: nothing listens, the connection is refused.
            "hosts": ["http://admin:hunter2@127.0.0.1:9"],
            "request_timeout_seconds": 2,
        },
    )
    with pytest.raises(StoreError) as err:
        async with open_backend(settings):
            pass
    message = str(err.value)
    assert "127.0.0.1:9" in message
    assert "hunter2" not in message
    assert "admin" not in message


async def test_elasticsearch_writers_need_the_shared_audit_key() -> None:
    settings = load_settings(store_backend="elasticsearch")
    with pytest.raises(StoreError, match="needs audit_key"):
        async with open_backend(settings):
            pass

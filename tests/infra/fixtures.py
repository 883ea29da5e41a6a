"""pytest fixtures for the test servers; import them into a conftest to use them.

    from tests.infra.fixtures import elasticsearch_url, kafka_disk_broker, llm_server

and mark the test module, so that a machine lacking what a server needs (Java
and Maven; xllamacpp for the model) reports one skip line per module saying
what to install::

    pytestmark = needs("elasticsearch")

With `CI=true` nothing skips: a missing prerequisite fails the tests, since
CI must run them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NoReturn

import pytest

from tests.infra import elasticsearch as es_infra
from tests.infra import kafka as kafka_infra
from tests.infra import llm as llm_infra
from tests.infra._common import InfraUnavailable

__all__ = [
    "ELASTICSEARCH_URL_ENV",
    "LLM_URL_ENV",
    "elasticsearch_url",
    "in_ci",
    "kafka_disk_broker",
    "llm_server",
    "needs",
    "require",
]

ELASTICSEARCH_URL_ENV = "SOC_AGENT_TEST_ELASTICSEARCH_URL"
LLM_URL_ENV = "SOC_AGENT_TEST_LLM_URL"
_EXTERNAL_URL_ENV = {"elasticsearch": ELASTICSEARCH_URL_ENV, "llm": LLM_URL_ENV}
_CHECKS = {"elasticsearch": es_infra.check, "kafka": kafka_infra.check, "llm": llm_infra.check}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def needs(server: Literal["elasticsearch", "kafka", "llm"]) -> list[pytest.MarkDecorator]:
    """`pytestmark` for a module: a plain skip (pytest folds it to one line per module) when
    `server` cannot be built here; nothing in CI, where the fixture then fails loudly."""
    external = _EXTERNAL_URL_ENV.get(server)
    if in_ci() or (external and os.environ.get(external)):
        return []
    try:
        _CHECKS[server]()
    except InfraUnavailable as exc:
        return [pytest.mark.skip(reason=str(exc))]
    return []


def require(exc: InfraUnavailable) -> NoReturn:
    """Skip on a developer's machine; fail in CI, where a skip would hide a missing install."""
    if in_ci():
        pytest.fail(f"CI=true, so this must run: {exc}", pytrace=False)
    pytest.skip(str(exc))


@pytest.fixture(scope="session")
def elasticsearch_url() -> Iterator[str]:
    """A single-node Elasticsearch for the session (or `$SOC_AGENT_TEST_ELASTICSEARCH_URL`)."""
    external = os.environ.get(ELASTICSEARCH_URL_ENV)
    if external:
        yield external.rstrip("/")
        return
    try:
        node = es_infra.start()
    except InfraUnavailable as exc:
        require(exc)
    try:
        yield node.url
    finally:
        node.stop()


@pytest.fixture
def kafka_disk_broker(tmp_path: Path) -> Iterator[kafka_infra.KafkaBroker]:
    """A KRaft Apache Kafka broker whose log lives in `tmp_path`: restartable, nothing lost."""
    try:
        broker = kafka_infra.start(log_dir=tmp_path / "kafka-log")
    except InfraUnavailable as exc:
        require(exc)
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def llm_server() -> Iterator[llm_infra.RunningLLM]:
    """A real small model behind an OpenAI-compatible server on loopback, for the session
    (or the server at `$SOC_AGENT_TEST_LLM_URL`). `.base_url` ends in /v1; `.model`."""
    external = os.environ.get(LLM_URL_ENV)
    if external:
        yield llm_infra.connect(external)
        return
    try:
        server = llm_infra.start()
    except InfraUnavailable as exc:
        require(exc)
    try:
        yield server
    finally:
        server.stop()

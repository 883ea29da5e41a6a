"""Declarative HTTP connectors over real HTTP, against answers shaped as the vendors document.

The shipped ServiceNow CMDB and TheHive definitions, built into HttpConnector classes;
the server is a real loopback HTTP server (see conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from soc_agent_connectors import Connector, HttpConnector

from soc_agent.errors import ConfigError, ConnectorError
from soc_agent.runtime.declarative import (
    definition_classes,
    load_definitions,
    shipped_definitions_dir,
)
from tests.integration.connectors.conftest import FakeTime
from tests.integration.connectors.vendor_server import Reply, VendorServer

TOKEN = "snow-oauth-token-never-shown-77ab"
CI = {
    "sys_id": "8d5e4c1a1b2c3d4e5f60718293a4b5c6",
    "name": "ws-fin-042",
    "sys_class_name": "Computer",
    "operational_status": "Operational",
    "assigned_to": "Jane Doe",
    "support_group": "Desktop Support",
    "ip_address": "10.10.30.42",
    "os": "Windows 11 Enterprise",
}
Make = Callable[[str], Any]


@pytest.fixture(scope="module")
def classes() -> dict[str, type[Connector]]:
    return definition_classes(load_definitions([shipped_definitions_dir()]))


@pytest.fixture
async def make(
    classes: dict[str, type[Connector]],
    vendor_server: VendorServer,
    fake_time: FakeTime,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Make]:
    monkeypatch.setenv("VENDOR_TOKEN", TOKEN)
    built: list[HttpConnector] = []

    def build(name: str) -> Any:
        cls = classes[name]
        assert issubclass(cls, HttpConnector)
        config = cls.config_model.model_validate(
            {"base_url": f"{vendor_server.url}/api", "credentials": "env:VENDOR_TOKEN"}
        )
        conn = cls(config, runtime=fake_time.runtime())
        built.append(conn)
        return conn

    yield build
    for conn in built:
        await conn.aclose()


async def test_a_cmdb_lookup_sends_the_documented_query_and_maps_the_answer(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", "/api/table/cmdb_ci", Reply(200, {"result": [CI]}))
    out = await make("servicenow_cmdb").invoke("lookup_ci", {"name": "ws-fin-042"})
    assert out == {
        "found": True,
        "name": "ws-fin-042",
        "sys_id": CI["sys_id"],
        "class_name": "Computer",
        "owner": "Jane Doe",
        "support_group": "Desktop Support",
        "operational_status": "Operational",
        "ip_address": "10.10.30.42",
    }
    (call,) = vendor_server.calls("GET", "/api/table/cmdb_ci")
    assert call.query["sysparm_query"] == ["name=ws-fin-042"]
    assert call.query["sysparm_limit"] == ["1"]
    assert call.header("authorization") == f"Bearer {TOKEN}"


async def test_a_name_that_would_add_query_conditions_is_refused_before_any_call(
    make: Make, vendor_server: VendorServer
) -> None:
    with pytest.raises(ConnectorError, match="invalid arguments: name"):
        await make("servicenow_cmdb").invoke("lookup_ci", {"name": "x^ORname=dc-01"})
    assert vendor_server.calls() == []


async def test_an_unknown_ci_is_found_false(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", "/api/table/cmdb_ci", Reply(200, {"result": []}))
    out = await make("servicenow_cmdb").invoke("lookup_ci", {"name": "nobody"})
    assert out["found"] is False and out["sys_id"] == ""


async def test_a_missing_case_is_an_answer_and_a_server_error_is_an_error(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route(
        "GET", "/api/case/~404", Reply(404, {"type": "NotFoundError", "message": "Case not found"})
    )
    vendor_server.route("GET", "/api/case/~500", Reply(500, {"type": "InternalError"}))
    thehive = make("thehive")
    missing = await thehive.invoke("get_case", {"case": "~404"})
    assert missing["found"] is False
    with pytest.raises(ConnectorError, match="HTTP 500"):
        await thehive.invoke("get_case", {"case": "~500"})


async def test_a_path_value_cannot_leave_its_segment(
    make: Make, vendor_server: VendorServer
) -> None:
    with pytest.raises(ConnectorError, match="invalid arguments: case"):
        await make("thehive").invoke("get_case", {"case": "../user"})
    assert vendor_server.calls() == []


async def test_an_answer_without_the_mapped_field_names_it(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("POST", "/api/case", Reply(201, {"title": "no id here"}))
    with pytest.raises(ConnectorError, match="result field 'case_id'"):
        await make("thehive").invoke(
            "open_case", {"target": "ws-fin-042", "title": "t", "idempotency_key": "k"}
        )
    # an action's POST is not idempotent: never retried
    assert len(vendor_server.calls("POST", "/api/case")) == 1


BROKEN = [
    ('path: "/case/${args.nope}"', "args.nope is not a declared argument"),
    ("value: alert.title", "'alert' is not defined here"),
    ("rollback: get_case", "rollback 'get_case' is not an action here"),
]


@pytest.mark.parametrize(("text", "message"), BROKEN)
def test_a_broken_definition_names_file_line_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    source = (shipped_definitions_dir() / "thehive.yaml").read_text()
    if text.startswith("path"):
        source = source.replace('path: "/case/${args.case}"', text)
    elif text.startswith("value"):
        source = source.replace("value: response._id,", f"{text},", 1)
    else:
        source = source.replace("rollback: close_case", text)
    path = tmp_path / "thehive.yaml"
    path.write_text(source)
    with pytest.raises(ConfigError) as caught:
        load_definitions([path])
    assert str(path) in str(caught.value) and caught.value.line is not None
    assert message in str(caught.value)

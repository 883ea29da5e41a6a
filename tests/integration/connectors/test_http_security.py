"""HttpConnector and the gateway as a security boundary: credentials rotate without a restart,
secrets never leak (logs, errors, audit), egress stays on the vendor's hosts, and alert-supplied
URLs never reach private addresses."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from soc_agent_connectors import (
    Connector,
    EgressDeniedError,
    HttpRuntime,
    VendorHTTPError,
    capability,
)

from soc_agent.audit import SQLiteAuditLog
from soc_agent.errors import ConfigError, ConnectorError, ScopeDeniedError
from soc_agent.gateway import Gateway
from soc_agent.runtime.control import describe_connectors
from soc_agent.settings import load_settings
from tests.integration.connectors.conftest import FakeTime
from tests.integration.connectors.intel_api import IntelApi, IntelApiConfig, ip_report, vt_error
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer

IP = "203.0.113.7"
IP_PATH = f"/api/v3/ip_addresses/{IP}"
ENV_KEY = "9d1e5a7c3b2f4e6a8c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b"
FILE_KEY_1 = "f1le-key-0001-aaaabbbbccccddddeeeeffff00001111"
FILE_KEY_2 = "f1le-key-0002-99998888777766665555444433332222"  # same length: see the 401 test
Make = Callable[..., IntelApi]


@pytest.fixture
async def make(
    vendor_server: VendorServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Make]:
    monkeypatch.setenv("VT_API_KEY", ENV_KEY)
    built: list[IntelApi] = []

    def build(*, runtime: HttpRuntime | None = None, **config: Any) -> IntelApi:
        config.setdefault("credentials", "env:VT_API_KEY")
        config.setdefault("base_url", f"{vendor_server.url}/api/v3")
        conn = IntelApi(IntelApiConfig(**config), runtime=runtime or fake_time.runtime())
        built.append(conn)
        return conn

    yield build
    for conn in built:
        await conn.aclose()


def _key_must_be(expected: Callable[[], str]) -> Callable[[RecordedRequest], Reply]:
    """The vendor's auth check: 401 with VirusTotal's error body unless x-apikey matches."""

    def answer(request: RecordedRequest) -> Reply:
        if request.header("x-apikey") != expected():
            return Reply(401, vt_error("WrongCredentialsError", "Wrong API key"))
        return Reply(200, ip_report(IP))

    return answer


def _write_secret(path: Path, value: str) -> None:
    path.write_text(value + "\n", encoding="utf-8")


# --- credentials ----------------------------------------------------------------------------


async def test_api_key_is_sent_as_the_vendor_documents(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", IP_PATH, Reply(200, ip_report(IP)))
    await make().invoke("ip_report", {"ip": IP})
    (request,) = vendor_server.calls()
    assert request.header("x-apikey") == ENV_KEY
    assert request.header("authorization") is None
    assert request.header("accept") == "application/json"


async def test_rotated_secret_file_is_used_without_restart(
    make: Make, vendor_server: VendorServer, tmp_path: Path
) -> None:
    secret = tmp_path / "vt_api_key"
    _write_secret(secret, FILE_KEY_1)
    valid = [FILE_KEY_1]
    vendor_server.route("GET", IP_PATH, _key_must_be(lambda: valid[0]))
    conn = make(credentials=f"file:{secret}", cache_ttl_seconds=0)
    await conn.invoke("ip_report", {"ip": IP})

    _write_secret(secret, FILE_KEY_2)  # rotation: new content, new mtime
    os.utime(secret, ns=(os.stat(secret).st_atime_ns, os.stat(secret).st_mtime_ns + 10**9))
    valid[0] = FILE_KEY_2
    await conn.invoke("ip_report", {"ip": IP})
    assert [r.header("x-apikey") for r in vendor_server.calls()] == [FILE_KEY_1, FILE_KEY_2]


async def test_401_rereads_the_secret_once_and_retries_once(
    make: Make, vendor_server: VendorServer, tmp_path: Path
) -> None:
    secret = tmp_path / "vt_api_key"
    _write_secret(secret, FILE_KEY_1)
    valid = [FILE_KEY_1]
    vendor_server.route("GET", IP_PATH, _key_must_be(lambda: valid[0]))
    conn = make(credentials=f"file:{secret}", cache_ttl_seconds=0)
    await conn.invoke("ip_report", {"ip": IP})

    # Rotated in place so that nothing on disk looks changed (same size, mtime, inode):
    # only the vendor's 401 reveals it.
    before = os.stat(secret)
    _write_secret(secret, FILE_KEY_2)
    os.utime(secret, ns=(before.st_atime_ns, before.st_mtime_ns))
    valid[0] = FILE_KEY_2
    out = await conn.invoke("ip_report", {"ip": IP})
    assert out["indicator"] == IP
    assert [(r.header("x-apikey")) for r in vendor_server.calls()] == [
        FILE_KEY_1,
        FILE_KEY_1,  # answered 401
        FILE_KEY_2,  # re-read once, retried once
    ]


async def test_401_with_unchanged_credentials_is_not_retried(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", IP_PATH, _key_must_be(lambda: "some-other-key"))
    with pytest.raises(VendorHTTPError) as caught:
        await make().invoke("ip_report", {"ip": IP})
    assert caught.value.status_code == 401
    assert "WrongCredentialsError" in str(caught.value)
    assert len(vendor_server.calls()) == 1


async def test_401_after_a_reread_is_final(
    make: Make, vendor_server: VendorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendor_server.route("GET", IP_PATH, Reply(401, vt_error("WrongCredentialsError", "revoked")))
    conn = make(cache_ttl_seconds=0)

    def rotate_env(request: RecordedRequest) -> Reply:
        monkeypatch.setenv("VT_API_KEY", ENV_KEY[::-1])  # rotated, but revoked as well
        return Reply(401, vt_error("WrongCredentialsError", "revoked"))

    vendor_server.route("GET", IP_PATH, rotate_env)
    with pytest.raises(VendorHTTPError, match=r"credentials re-read once"):
        await conn.invoke("ip_report", {"ip": IP})
    assert len(vendor_server.calls()) == 2


def test_literal_credentials_need_an_explicit_allow(caplog: pytest.LogCaptureFixture) -> None:
    literal = "plain-literal-api-key-123456"
    with pytest.raises(ConfigError) as caught:
        IntelApi.from_settings({"credentials": literal})
    assert "connectors.intel_api.credentials" in str(caught.value)
    assert "allow_literal_credentials" in str(caught.value)
    assert literal not in str(caught.value)

    with caplog.at_level(logging.WARNING):
        conn = IntelApi.from_settings({"credentials": literal, "allow_literal_credentials": True})
    assert "literal credential" in caplog.text and literal not in caplog.text
    assert isinstance(conn, IntelApi)
    assert literal not in repr(conn.http_config)
    assert literal not in conn.http_config.model_dump_json()


async def test_missing_env_secret_names_the_variable_not_a_value(
    make: Make, vendor_server: VendorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VT_API_KEY")
    with pytest.raises(ConnectorError, match="environment variable VT_API_KEY is not set"):
        await make().invoke("ip_report", {"ip": IP})
    assert vendor_server.calls() == []


# --- no secret anywhere ---------------------------------------------------------------------


async def test_secrets_never_reach_logs_errors_or_audit(
    make: Make,
    vendor_server: VendorServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = tmp_path / "vt_api_key"
    _write_secret(secret, FILE_KEY_1)
    env_conn = make(cache_ttl_seconds=0, max_retries=1, timeout_seconds=0.2)
    file_conn = make(credentials=f"file:{secret}", cache_ttl_seconds=0, max_retries=0)
    # A careless vendor echoing the key back in its error body, a URL carrying it in the
    # query, and a timeout: every path that builds a message.
    vendor_server.route(
        "GET",
        IP_PATH,
        Reply(403, vt_error("ForbiddenError", f"key {ENV_KEY} may not access {IP}")),
        Reply(403, vt_error("ForbiddenError", f"key {FILE_KEY_1} may not access {IP}")),
        Reply(200, ip_report(IP), delay=0.5),
    )
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    gateway = Gateway(
        {"vt_env": env_conn, "vt_file": file_conn},
        {"vt_env": ["intel:read"], "vt_file": ["intel:read"]},
        audit,
        audit_queries=True,
    )
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for name, capability, args in [
            ("vt_env", "ip_report", {"ip": IP}),
            ("vt_file", "ip_report", {"ip": IP}),
            ("vt_env", "ip_report", {"ip": IP}),  # times out, retried, times out
            ("vt_env", "follow_link", {"url": f"http://127.0.0.2/x?apikey={ENV_KEY}"}),
            ("vt_env", "submit_url", {"url": "http://x.example/", "token": FILE_KEY_1}),
        ]:
            try:
                await gateway.call(name, capability, args, reason="test")
            except ConnectorError as exc:
                errors.append(str(exc))
    try:
        entries = [e.model_dump_json() for e in await audit.list(limit=100)]
    finally:
        audit.close()

    assert len(errors) == 5
    assert "ForbiddenError key [REDACTED] may not access" in errors[0]
    assert "timed out" in errors[2]
    assert len(entries) == 5  # four queries and the denied submission (scope not granted)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    haystacks = {
        "errors": "\n".join(errors),
        "audit": "\n".join(entries),
        "logs": "\n".join(r.getMessage() for r in caplog.records),
        "reprs": repr(env_conn.http_config) + repr(file_conn.http_config),
    }
    for where, text in haystacks.items():
        for value in (ENV_KEY, FILE_KEY_1):
            assert value not in text, f"secret found in {where}"


async def test_a_secret_with_a_trailing_newline_is_sent_trimmed_and_never_leaks(
    make: Make,
    vendor_server: VendorServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the chart's secretEnv passes from a secret created from a file: KEY plus newline.

    The vendor here also echoes the key back in a successful answer; the gateway's
    result (the evidence an analyst reads through the API) must not carry it.
    """
    monkeypatch.setenv("VT_API_KEY", ENV_KEY + "\n")
    conn = make(cache_ttl_seconds=0, max_retries=0)
    echo = ip_report(IP)
    echo["data"]["id"] = f"{IP} (requested with key {ENV_KEY})"
    vendor_server.route(
        "GET",
        IP_PATH,
        lambda request: (
            Reply(200, echo)
            if request.header("x-apikey") == ENV_KEY
            else Reply(
                401,
                vt_error("WrongCredentialsError", f"Wrong API key {request.header('x-apikey')!r}"),
            )
        ),
    )
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    gateway = Gateway({"vt": conn}, {"vt": ["intel:read"]}, audit, audit_queries=True)
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        try:
            result = await gateway.call("vt", "ip_report", {"ip": IP}, reason="test")
        except ConnectorError as exc:
            errors.append(str(exc))
            result = {}
    try:
        entries = [e.model_dump_json() for e in await audit.list(limit=100)]
    finally:
        audit.close()
    assert errors == []
    assert result["indicator"] == f"{IP} (requested with key [REDACTED])"
    haystacks = {
        "result": json.dumps(result),
        "audit": "\n".join(entries),
        "logs": "\n".join(r.getMessage() for r in caplog.records),
    }
    for where, text in haystacks.items():
        assert ENV_KEY not in text, f"secret found in {where}"


# --- egress -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://evil.example.com/api/v3/ip_addresses/1.2.3.4", id="other-host"),
        pytest.param("http://127.0.0.2:{port}/api/v3/", id="other-loopback-host"),
        pytest.param("file:///etc/passwd", id="file-scheme"),
    ],
)
async def test_normal_calls_refuse_hosts_other_than_the_base_url(
    make: Make, vendor_server: VendorServer, url: str
) -> None:
    with pytest.raises(EgressDeniedError, match="refused"):
        await make().invoke("follow_link", {"url": url.format(port=vendor_server.port)})
    assert vendor_server.calls() == []


async def test_allowed_hosts_extend_where_normal_calls_may_go(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", "/oauth2/token", Reply(200, {"ok": True}))
    conn = make(allowed_hosts=["localhost"])
    out = await conn.invoke(
        "follow_link", {"url": f"http://localhost:{vendor_server.port}/oauth2/token"}
    )
    assert out["status"] == 200
    (request,) = vendor_server.calls()
    assert request.header("x-apikey") == ENV_KEY


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:{port}/landing", id="loopback-v4"),
        pytest.param("http://[::1]:{port}/landing", id="loopback-v6"),
        pytest.param("http://[::ffff:127.0.0.1]:{port}/landing", id="v4-mapped-v6"),
        pytest.param("http://10.20.30.40/admin", id="private-10"),
        pytest.param("http://192.168.1.1/", id="private-192.168"),
        pytest.param("http://169.254.169.254/latest/meta-data/iam/", id="cloud-metadata"),
        pytest.param("http://[fe80::1]/", id="link-local-v6"),
        pytest.param("http://224.0.0.251/", id="multicast"),
        pytest.param("http://0.0.0.0:{port}/", id="unspecified"),
        pytest.param("http://localhost:{port}/landing", id="name-resolving-to-loopback"),
    ],
)
async def test_untrusted_urls_never_reach_private_addresses(
    make: Make, vendor_server: VendorServer, url: str
) -> None:
    vendor_server.route("GET", "/landing", Reply(200, body="<html>internal</html>"))
    with pytest.raises(EgressDeniedError, match="refused to connect to"):
        await make().invoke("fetch_page", {"url": url.format(port=vendor_server.port)})
    assert vendor_server.calls() == []


async def test_every_resolved_address_is_checked(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    async def rebinding_dns(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.7"]  # one public, one internal

    runtime = HttpRuntime(
        monotonic=fake_time.monotonic, sleep=fake_time.sleep, resolve=rebinding_dns
    )
    conn = make(runtime=runtime)
    with pytest.raises(EgressDeniedError, match=r"10\.0\.0\.7: private address"):
        await conn.invoke("fetch_page", {"url": "http://landing.example.net/"})


async def test_untrusted_fetch_to_an_allowed_network_works_without_our_credentials(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", "/landing", Reply(200, body="<html>phish</html>"))
    conn = make(untrusted_url_allow_networks=["127.0.0.0/8"])
    out = await conn.invoke("fetch_page", {"url": f"{vendor_server.url}/landing"})
    assert out == {"status": 200, "length": len("<html>phish</html>")}
    (request,) = vendor_server.calls()
    assert request.header("x-apikey") is None  # never hand our key to an alert's URL


async def test_only_declared_capabilities_may_fetch_untrusted_urls(
    make: Make, vendor_server: VendorServer
) -> None:
    conn = make(untrusted_url_allow_networks=["127.0.0.0/8"])
    with pytest.raises(EgressDeniedError, match="not declared fetches_untrusted_urls"):
        await conn.invoke("sneak_fetch", {"url": f"{vendor_server.url}/landing"})
    assert vendor_server.calls() == []


# --- the gateway ------------------------------------------------------------------------------


async def test_ungranted_capability_is_denied_audited_and_never_sent(
    make: Make, vendor_server: VendorServer, tmp_path: Path
) -> None:
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    try:
        gateway = Gateway({"virustotal": make()}, {"virustotal": ["intel:read"]}, audit)
        with pytest.raises(ScopeDeniedError, match="intel:submit"):
            await gateway.call(
                "virustotal", "submit_url", {"url": "http://x.example/"}, reason="phish", ref="d-1"
            )
        (event,) = await audit.list(limit=10)
    finally:
        audit.close()
    assert (event.action, event.subject, event.outcome) == (
        "connector.denied",
        "virustotal.submit_url",
        "denied",
    )
    assert event.details["missing_scopes"] == ["intel:submit"]
    assert event.evidence_ref == "d-1"
    assert vendor_server.calls() == []


async def test_gateway_audits_every_query_with_outcome_and_latency(
    make: Make, vendor_server: VendorServer, tmp_path: Path
) -> None:
    vendor_server.route(
        "GET", IP_PATH, Reply(200, ip_report(IP)), Reply(500, vt_error("TransientError", "x"))
    )
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    try:
        conn = make(max_retries=0, cache_ttl_seconds=0)
        gateway = Gateway(
            {"virustotal": conn}, {"virustotal": ["intel:read"]}, audit, audit_queries=True
        )
        await gateway.call(
            "virustotal", "ip_report", {"ip": IP}, reason="step ip_intel", ref="inv-1"
        )
        with pytest.raises(ConnectorError, match=r"^virustotal.ip_report: GET .* HTTP 500"):
            await gateway.call("virustotal", "ip_report", {"ip": IP}, reason="step ip_intel")
        with pytest.raises(ConnectorError):
            await gateway.call("virustotal", "follow_link", {"url": "http://evil.example/"})
        events = await audit.list(limit=10)
        assert (await audit.verify()).ok
    finally:
        audit.close()
    assert [(e.action, e.subject, e.outcome) for e in events] == [
        ("connector.ip_report", "virustotal", "ok"),
        ("connector.ip_report", "virustotal", "error"),
        ("connector.follow_link", "virustotal", "denied"),
    ]
    assert set(events[0].details) == {"kind", "latency_ms"}
    assert events[0].details["kind"] == "query" and events[0].evidence_ref == "inv-1"
    assert "HTTP 500: TransientError" in events[1].details["error"]
    assert "refused to connect to evil.example" in events[2].details["error"]


async def test_connectors_list_shows_base_url_and_live_breaker_state(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", IP_PATH, Reply(503))
    conn = make(max_retries=0, breaker_failure_threshold=1)
    with pytest.raises(VendorHTTPError):
        await conn.invoke("ip_report", {"ip": IP})
    base_url = f"{vendor_server.url}/api/v3"
    settings = load_settings(
        connectors={"intel_api": {"base_url": base_url, "credentials": "env:VT_API_KEY"}},
        grants={"intel_api": ["intel:read"]},
    )
    offline = {row["name"]: row for row in describe_connectors(settings)}
    live = {row["name"]: row for row in describe_connectors(settings, live={"intel_api": conn})}
    assert "intel_api" not in offline  # not installed through an entry point
    row = live["intel_api"]
    assert row["base_url"] == base_url
    assert row["breaker"]["state"] == "open"
    caps = {c["name"]: c for c in row["capabilities"]}
    assert caps["ip_report"]["granted"] is True
    assert caps["submit_url"]["granted"] is False
    assert caps["fetch_page"]["fetches_untrusted_urls"] is True
    assert caps["search"]["idempotent"] is True
    json.dumps(row)  # the --json output stays serialisable


class _LeakyConfig(BaseModel):
    pass


class _Out(BaseModel):
    ok: bool


class _In(BaseModel):
    target: str
    api_key: str = ""


class _Leaky(Connector):
    """A careless third-party connector that puts credentials in its error messages."""

    name = "leaky"
    config_model = _LeakyConfig

    def secret_values(self) -> tuple[str, ...]:
        return (ENV_KEY,)

    @capability(kind="action", scopes=["x:do"])
    async def act(self, args: _In) -> _Out:
        """Fail loudly."""
        raise ConnectorError(
            f"POST https://api.example.com/v1/act?token=abc123 with Authorization: Bearer "
            f"{ENV_KEY} failed for key {ENV_KEY}"
        )


async def test_gateway_scrubs_any_connectors_errors_and_audit_details(tmp_path: Path) -> None:
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    try:
        gateway = Gateway({"leaky": _Leaky(_LeakyConfig())}, {"leaky": ["x:do"]}, audit)
        with pytest.raises(ConnectorError) as caught:
            await gateway.call("leaky", "act", {"target": "ws-1", "api_key": "sk-live-123456"})
        (event,) = await audit.list(limit=10)
    finally:
        audit.close()
    message = str(caught.value)
    assert ENV_KEY not in message and "abc123" not in message
    assert message.startswith("leaky.act: POST https://api.example.com/v1/act?token=[REDACTED]")
    stored = event.model_dump_json()
    assert ENV_KEY not in stored and "sk-live-123456" not in stored
    assert event.details["args"] == {"target": "ws-1", "api_key": "[REDACTED]"}
    assert event.outcome == "error"

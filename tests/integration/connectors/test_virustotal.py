"""VirusTotal API v3 over real HTTP, against answers recorded in the documented shapes."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from soc_agent_connectors import VendorHTTPError
from soc_agent_connectors.virustotal import VirusTotal, VirusTotalConfig, url_id

from soc_agent.audit import SQLiteAuditLog
from soc_agent.errors import ConnectorError, ScopeDeniedError
from soc_agent.gateway import Gateway
from tests.integration.connectors.conftest import FakeTime
from tests.integration.connectors.vendor_server import Reply, VendorServer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vendors" / "virustotal"
API_KEY = "7c1f0e9b2a4d6c8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e"
SHA256 = "498b72190a65c7fbdaa0ccb8bde413c30fa106403600864c9138d07dc8a37b41"
SHA1 = "6f2c1b7e0d93a4c85e7b1f40c2d9e8a3b5f60d17"
MD5 = "c3b8a9e10f4d27b65e1d09a8f7c2b4e6"
IP = "203.0.113.45"
DOMAIN = "cdn.contoso-updates.example"
PHISH_URL = (
    "http://login-microsoftonline.account-verify.example/common/oauth2/authorize"
    "?client_id=4765445b-32c6-49b0-83e6-1d93765276ca&login_hint=j.doe%40contoso.example"
)
Make = Callable[..., VirusTotal]


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
async def make(
    vendor_server: VendorServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Make]:
    monkeypatch.setenv("VT_API_KEY", API_KEY)
    built: list[VirusTotal] = []

    def build(**config: Any) -> VirusTotal:
        config.setdefault("base_url", f"{vendor_server.url}/api/v3")
        config.setdefault("credentials", "env:VT_API_KEY")
        config.setdefault("rate_limit_per_second", None)  # the quota has its own test
        conn = VirusTotal(VirusTotalConfig(**config), runtime=fake_time.runtime())
        built.append(conn)
        return conn

    yield build
    for conn in built:
        await conn.aclose()


def test_registered_under_its_entry_point() -> None:
    assert entry_points(group="soc_agent.connectors")["virustotal"].load() is VirusTotal


# --- mapping ------------------------------------------------------------------------------


async def test_file_report_maps_the_recorded_answer(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", f"/api/v3/files/{SHA256}", Reply(200, recorded("file_qakbot.json")))
    out = await make().invoke("file_report", {"hash": SHA256.upper()})

    (request,) = vendor_server.calls()
    assert request.header("x-apikey") == API_KEY
    assert request.header("authorization") is None
    assert request.header("accept") == "application/json"
    assert out["indicator"] == SHA256
    assert out["type"] == "file_hash"
    assert out["found"] is True
    assert out["verdict"] == "malicious"  # 58 engines
    assert out["score"] == 100  # more than half the engines with a verdict flagged it
    assert out["provider"] == "virustotal"
    assert out["sources"] == [
        "BitDefender",
        "CrowdStrike",
        "ESET-NOD32",
        "Kaspersky",
        "Microsoft",
        "Sophos",
    ]
    assert out["tags"] == [
        "pedll",
        "spreader",
        "detect-debug-environment",
        "long-sleeps",
        "trojan",
        "banker",
        "qakbot",
        "qbot",
    ]
    assert out["link"] == f"https://www.virustotal.com/gui/file/{SHA256}"
    assert out["threat_label"] == "trojan.qakbot/qbot"
    assert out["community_reputation"] == -47
    assert datetime.fromisoformat(out["last_analysis_at"]) == datetime.fromtimestamp(
        1794991360, UTC
    )
    assert out["stats"] == {
        "malicious": 58,
        "suspicious": 0,
        "harmless": 0,
        "undetected": 10,
        "timeout": 0,
        "confirmed_timeout": 0,
        "failure": 1,
        "type_unsupported": 4,
    }


@pytest.mark.parametrize("digest", [MD5, SHA1], ids=["md5", "sha1"])
async def test_file_report_accepts_md5_and_sha1(
    make: Make, vendor_server: VendorServer, digest: str
) -> None:
    vendor_server.route("GET", f"/api/v3/files/{digest}", Reply(200, recorded("file_qakbot.json")))
    out = await make().invoke("file_report", {"hash": digest})
    assert out["indicator"] == digest
    assert out["link"] == f"https://www.virustotal.com/gui/file/{SHA256}"  # the object's id


async def test_file_report_refuses_what_is_not_a_digest(
    make: Make, vendor_server: VendorServer
) -> None:
    with pytest.raises(ConnectorError, match="MD5, SHA-1 or SHA-256"):
        await make().invoke("file_report", {"hash": "../../users/me" + "0" * 30})
    assert vendor_server.calls() == []


async def test_ip_report_maps_a_malicious_address(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", f"/api/v3/ip_addresses/{IP}", Reply(200, recorded("ip_c2.json")))
    out = await make().invoke("ip_report", {"ip": IP})
    assert (out["indicator"], out["type"], out["found"]) == (IP, "ip", True)
    assert out["verdict"] == "malicious"
    # 9 malicious + 2 suspicious (half weight) of 90 engines: strength 0.22 in the 70-100 band
    assert out["score"] == 77
    assert out["sources"] == ["alphaMountain.ai", "CRDF", "Fortinet", "G-Data"]
    assert out["tags"] == []
    assert out["link"] == f"https://www.virustotal.com/gui/ip-address/{IP}"
    assert out["community_reputation"] == -12
    assert out["threat_label"] is None


async def test_domain_report_maps_a_benign_domain(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route(
        "GET", f"/api/v3/domains/{DOMAIN}", Reply(200, recorded("domain_benign.json"))
    )
    out = await make().invoke("domain_report", {"domain": "CDN.Contoso-Updates.example."})
    assert vendor_server.calls()[0].path == f"/api/v3/domains/{DOMAIN}"
    assert out["indicator"] == DOMAIN
    assert out["verdict"] == "benign"  # 92 engines, none flagging it
    assert out["score"] == 0
    assert out["sources"] == []
    assert out["tags"] == [
        "content delivery networks",
        "information technology",
    ]
    assert out["link"] == f"https://www.virustotal.com/gui/domain/{DOMAIN}"


async def test_url_report_identifies_the_url_by_unpadded_base64(
    make: Make, vendor_server: VendorServer
) -> None:
    identifier = url_id(PHISH_URL)
    assert "=" not in identifier
    assert base64.urlsafe_b64decode(identifier + "=" * (-len(identifier) % 4)).decode() == (
        PHISH_URL
    )
    vendor_server.route(
        "GET", f"/api/v3/urls/{identifier}", Reply(200, recorded("url_phishing.json"))
    )
    out = await make().invoke("url_report", {"url": PHISH_URL})
    body = recorded("url_phishing.json")
    assert out["indicator"] == PHISH_URL
    assert out["verdict"] == "suspicious"  # 2 malicious: below malicious_min_engines (3)
    assert out["score"] == 32
    assert out["sources"] == ["Netcraft", "Seclookup", "Sophos"]
    assert out["tags"] == ["external-resources", "phishing.microsoft", "phishing and fraud"]
    assert out["link"] == f"https://www.virustotal.com/gui/url/{body['data']['id']}"


async def test_verdict_thresholds_are_configurable(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route(
        "GET", f"/api/v3/urls/{url_id(PHISH_URL)}", Reply(200, recorded("url_phishing.json"))
    )
    out = await make(malicious_min_engines=2).invoke("url_report", {"url": PHISH_URL})
    assert (out["verdict"], out["score"]) == ("malicious", 72)


async def test_lookup_takes_the_offline_intel_arguments(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", f"/api/v3/ip_addresses/{IP}", Reply(200, recorded("ip_c2.json")))
    conn = make(cache_ttl_seconds=0)
    assert await conn.invoke("lookup", {"indicator": IP, "type": "ip"}) == await conn.invoke(
        "ip_report", {"ip": IP}
    )
    with pytest.raises(ConnectorError, match="no reports for indicators of type 'email'"):
        await conn.invoke("lookup", {"indicator": "ceo@contoso.example", "type": "email"})
    with pytest.raises(ConnectorError, match="invalid ip"):
        await conn.invoke("lookup", {"indicator": "not-an-ip", "type": "ip"})
    assert len(vendor_server.calls()) == 2


# --- errors -------------------------------------------------------------------------------


async def test_not_found_error_means_never_seen(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route(
        "GET", f"/api/v3/files/{SHA256}", Reply(404, recorded("error_not_found.json"))
    )
    out = await make().invoke("file_report", {"hash": SHA256})
    assert out == {
        "indicator": SHA256,
        "type": "file_hash",
        "found": False,
        "verdict": "unknown",
        "score": 0,
        "sources": [],
        "tags": [],
        "link": None,
        "provider": "virustotal",
        "stats": None,
        "community_reputation": None,
        "last_analysis_at": None,
        "threat_label": None,
    }


async def test_a_404_that_is_not_virustotals_not_found_is_an_error(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", f"/api/v3/files/{SHA256}", Reply(404, {"message": "no route"}))
    with pytest.raises(VendorHTTPError, match="HTTP 404") as caught:
        await make().invoke("file_report", {"hash": SHA256})
    assert caught.value.status_code == 404


async def test_wrong_credentials_fail_without_revealing_the_key(
    make: Make, vendor_server: VendorServer, caplog: pytest.LogCaptureFixture
) -> None:
    vendor_server.route(
        "GET", f"/api/v3/ip_addresses/{IP}", Reply(401, recorded("error_wrong_credentials.json"))
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(VendorHTTPError) as caught:
        await make().invoke("ip_report", {"ip": IP})
    assert caught.value.status_code == 401
    assert "WrongCredentialsError Wrong API key" in str(caught.value)
    assert len(vendor_server.calls()) == 1  # the key did not change: no second try
    assert caplog.records, "the call logs at DEBUG"
    assert API_KEY not in str(caught.value)
    assert API_KEY not in caplog.text


async def test_forbidden_names_the_vendor_error(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route(
        "GET", f"/api/v3/domains/{DOMAIN}", Reply(403, recorded("error_forbidden.json"))
    )
    with pytest.raises(VendorHTTPError, match="HTTP 403: ForbiddenError") as caught:
        await make().invoke("domain_report", {"domain": DOMAIN})
    assert caught.value.status_code == 403
    assert len(vendor_server.calls()) == 1


async def test_quota_exceeded_waits_for_retry_after(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "GET",
        f"/api/v3/ip_addresses/{IP}",
        Reply(429, recorded("error_quota_exceeded.json"), headers={"Retry-After": "7"}),
        Reply(200, recorded("ip_c2.json")),
    )
    out = await make().invoke("ip_report", {"ip": IP})
    assert out["verdict"] == "malicious"
    assert fake_time.sleeps == [7.0]
    assert [r.header("x-apikey") for r in vendor_server.calls()] == [API_KEY, API_KEY]


async def test_transient_5xx_is_retried_then_succeeds(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "GET",
        f"/api/v3/domains/{DOMAIN}",
        Reply(503, recorded("error_transient.json")),
        Reply(200, recorded("domain_benign.json")),
    )
    out = await make().invoke("domain_report", {"domain": DOMAIN})
    assert out["verdict"] == "benign"
    assert len(vendor_server.calls()) == 2
    assert fake_time.sleeps == [0.5]  # backoff_base_seconds, full jitter fixed at 1.0


async def test_slow_answer_times_out(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route(
        "GET", f"/api/v3/ip_addresses/{IP}", Reply(200, recorded("ip_c2.json"), delay=0.5)
    )
    with pytest.raises(ConnectorError, match=r"timed out after 0.1s .*after 2 attempts"):
        await make(timeout_seconds=0.1, max_retries=1).invoke("ip_report", {"ip": IP})
    assert len(vendor_server.calls()) == 2  # a GET is retried once, then gives up


# --- quota and cache ----------------------------------------------------------------------


async def test_default_rate_limit_keeps_to_the_public_quota(
    vendor_server: VendorServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VT_API_KEY", API_KEY)
    for ip in ("203.0.113.45", "203.0.113.46", "203.0.113.47"):
        vendor_server.route("GET", f"/api/v3/ip_addresses/{ip}", Reply(200, recorded("ip_c2.json")))
    config = VirusTotalConfig(base_url=f"{vendor_server.url}/api/v3", credentials="env:VT_API_KEY")
    conn = VirusTotal(config, runtime=fake_time.runtime())
    try:
        for ip in ("203.0.113.45", "203.0.113.46", "203.0.113.47"):
            await conn.invoke("ip_report", {"ip": ip})
    finally:
        await conn.aclose()
    assert fake_time.sleeps == [15.0, 15.0]  # 4 lookups a minute


async def test_repeated_lookup_is_served_from_the_cache_until_it_expires(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", f"/api/v3/ip_addresses/{IP}", Reply(200, recorded("ip_c2.json")))
    conn = make()
    first = await conn.invoke("ip_report", {"ip": IP})
    assert await conn.invoke("ip_report", {"ip": f" {IP} "}) == first  # same canonical argument
    assert len(vendor_server.calls()) == 1
    assert conn.status()["cache"] == {"entries": 1, "hits": 1, "misses": 1}

    fake_time.advance(3601)  # the default TTL for reports is an hour
    await conn.invoke("ip_report", {"ip": IP})
    assert len(vendor_server.calls()) == 2


# --- the gateway --------------------------------------------------------------------------


async def test_gateway_denies_an_ungranted_lookup_and_audits_it(
    make: Make, vendor_server: VendorServer, tmp_path: Path
) -> None:
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    try:
        gateway = Gateway({"virustotal": make()}, {"virustotal": ["notify:send"]}, audit)
        with pytest.raises(ScopeDeniedError, match="intel:read"):
            await gateway.call(
                "virustotal", "file_report", {"hash": SHA256}, reason="hash_intel", ref="inv-7"
            )
        (event,) = await audit.list(limit=10)
    finally:
        audit.close()
    assert (event.action, event.subject, event.outcome) == (
        "connector.denied",
        "virustotal.file_report",
        "denied",
    )
    assert event.details["missing_scopes"] == ["intel:read"]
    assert event.evidence_ref == "inv-7"
    assert vendor_server.calls() == []

"""A small VirusTotal-v3-shaped connector used to exercise the HttpConnector framework.

It is written the way a vendor connector is meant to be written: a config
model extending HttpConnectorConfig, the credential header declared, and
capabilities that only call `get_json` / `post_json` / `fetch_untrusted`.
Response shapes follow the VirusTotal API v3 documentation (`data.attributes`,
`{"error": {"code", "message"}}`, the `x-apikey` header).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from soc_agent_connectors import HttpConnector, HttpConnectorConfig, capability

__all__ = [
    "IntelApi",
    "IntelApiConfig",
    "ip_report",
    "vt_error",
]


class IntelApiConfig(HttpConnectorConfig):
    base_url: str = "https://www.virustotal.com/api/v3"


class IpInput(BaseModel):
    ip: str = Field(min_length=1, max_length=64)


class Reputation(BaseModel):
    indicator: str
    malicious: int
    harmless: int
    reputation: int


class SearchInput(BaseModel):
    query: str


class SearchOutput(BaseModel):
    total: int


class UrlInput(BaseModel):
    url: str = Field(min_length=1, max_length=4096)


class Submitted(BaseModel):
    analysis_id: str


class Page(BaseModel):
    status: int
    length: int


class IntelApi(HttpConnector):
    name = "intel_api"
    description = "VirusTotal-v3-shaped reputation API (test connector)"
    config_model = IntelApiConfig
    auth_header = "x-apikey"
    auth_scheme = None

    @capability(kind="query", scopes=["intel:read"])
    async def ip_report(self, args: IpInput) -> Reputation:
        """Reputation of an IP address."""
        body = await self.get_json(f"/ip_addresses/{args.ip}")
        attrs = body["data"]["attributes"]
        stats = attrs["last_analysis_stats"]
        return Reputation(
            indicator=body["data"]["id"],
            malicious=stats["malicious"],
            harmless=stats["harmless"],
            reputation=attrs.get("reputation", 0),
        )

    @capability(kind="query", scopes=["intel:read"], cache_ttl=0)
    async def ip_report_uncached(self, args: IpInput) -> Reputation:
        """The same lookup with caching switched off for this capability."""
        return await self.ip_report(args)

    @capability(kind="query", scopes=["intel:read"], idempotent=True)
    async def search(self, args: SearchInput) -> SearchOutput:
        """A read-only search sent as POST, declared idempotent so it may be retried."""
        body = await self.post_json("/intelligence/search", {"query": args.query})
        return SearchOutput(total=body["meta"]["total_hits"])

    @capability(kind="action", scopes=["intel:submit"], risk="low")
    async def submit_url(self, args: UrlInput) -> Submitted:
        """Submit a URL for scanning (POST, not idempotent: never retried)."""
        body = await self.request("POST", "/urls", data={"url": args.url})
        return Submitted(analysis_id=self.json_of(body)["data"]["id"])

    @capability(kind="query", scopes=["intel:read"], fetches_untrusted_urls=True, cache_ttl=0)
    async def fetch_page(self, args: UrlInput) -> Page:
        """Fetch a URL taken from an alert (e.g. a phishing landing page)."""
        response = await self.fetch_untrusted(args.url)
        return Page(status=response.status_code, length=len(response.content))

    @capability(kind="query", scopes=["intel:read"], cache_ttl=0)
    async def follow_link(self, args: UrlInput) -> Page:
        """A capability NOT declared for untrusted URLs, that tries an absolute URL anyway."""
        response = await self.request("GET", args.url)
        return Page(status=response.status_code, length=len(response.content))

    @capability(kind="query", scopes=["intel:read"], cache_ttl=0)
    async def sneak_fetch(self, args: UrlInput) -> Page:
        """A capability NOT declared for untrusted URLs calling fetch_untrusted."""
        response = await self.fetch_untrusted(args.url)
        return Page(status=response.status_code, length=len(response.content))


def ip_report(ip: str, malicious: int = 3) -> dict[str, Any]:
    """A GET /ip_addresses/{ip} answer as VirusTotal documents it (trimmed)."""
    return {
        "data": {
            "id": ip,
            "type": "ip_address",
            "links": {"self": f"https://www.virustotal.com/api/v3/ip_addresses/{ip}"},
            "attributes": {
                "as_owner": "Example Hosting B.V.",
                "asn": 64500,
                "country": "NL",
                "network": "203.0.113.0/24",
                "reputation": -11,
                "last_analysis_stats": {
                    "harmless": 58,
                    "malicious": malicious,
                    "suspicious": 1,
                    "undetected": 27,
                    "timeout": 0,
                },
            },
        }
    }


def vt_error(code: str, message: str) -> dict[str, Any]:
    """VirusTotal's error body: {"error": {"code": ..., "message": ...}}."""
    return {"error": {"code": code, "message": message}}

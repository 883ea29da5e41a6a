"""Configured URLs never point at cloud metadata or link-local addresses, nor (unless allowed)
at private ranges: refused at start-up, naming the key, before a credential is ever sent."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from soc_agent_connectors import HttpConnectorConfig

from soc_agent.errors import ConfigError
from soc_agent.settings import load_settings

ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data/",  # AWS, Azure, GCP instance metadata
    "http://[fe80::1]/",  # IPv6 link-local
    "http://[fd00:ec2::254]/",  # AWS IMDS over IPv6
    "http://100.100.100.200/",  # Alibaba Cloud metadata
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://instance-data.ec2.internal/",
    "http://[::ffff:169.254.169.254]/",  # the same address, IPv4-mapped
]
PRIVATE = [
    "http://10.0.0.5/api",
    "https://192.168.1.20/",
    "https://172.16.3.4/",
    "http://[fd12::5]/",
]
FINE = ["https://www.virustotal.com/api/v3", "http://127.0.0.1:8443/", "https://[::1]:9000/"]


@pytest.mark.parametrize("url", ALWAYS_REFUSED)
def test_metadata_and_link_local_are_refused_even_when_private_networks_are_allowed(
    url: str,
) -> None:
    for allow in (False, True):
        with pytest.raises(ValidationError, match=r"metadata|link-local"):
            HttpConnectorConfig(base_url=url, allow_private_network=allow)
        with pytest.raises(ValidationError, match=r"metadata|link-local"):
            HttpConnectorConfig(
                base_url="https://api.example.com/",
                allowed_hosts=[url.split("/")[2].strip("[]")],
                allow_private_network=allow,
            )


@pytest.mark.parametrize("url", PRIVATE)
def test_private_ranges_need_an_explicit_allow(url: str) -> None:
    with pytest.raises(ValidationError, match="allow_private_network"):
        HttpConnectorConfig(base_url=url)
    assert HttpConnectorConfig(base_url=url, allow_private_network=True).base_url == url


@pytest.mark.parametrize("url", FINE)
def test_public_names_and_loopback_sidecars_are_fine(url: str) -> None:
    assert HttpConnectorConfig(base_url=url).base_url == url


def test_start_up_names_the_key() -> None:
    from soc_agent.runtime.components import build_connectors

    settings = load_settings(
        connectors={"virustotal": {"base_url": "http://169.254.169.254/", "credentials": "env:X"}},
        grants={"virustotal": ["intel:read"]},
    )
    with pytest.raises(ConfigError) as caught:
        build_connectors(settings)
    assert "connectors.virustotal" in str(caught.value) and "metadata" in str(caught.value)


@pytest.mark.parametrize(
    ("oidc", "key"),
    [
        ({"issuer": "http://169.254.169.254/", "audience": "soc"}, "api.oidc.issuer"),
        (
            {
                "issuer": "https://idp.example.com",
                "audience": "soc",
                "jwks_url": "http://10.1.2.3/k",
            },
            "api.oidc.jwks_url",
        ),
    ],
)
def test_oidc_issuer_and_jwks_url_are_checked_too(oidc: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(api={"oidc": oidc})
    assert caught.value.key == key

"""Secret scrubbing: known values anywhere, and the common shapes of credentials."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from soc_agent_connectors import REDACTED, RedactingFilter, redact_data, redact_text, scrub_known

KEY = "4f9c0de1b2a3c4d5e6f7"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOi.J9eyJzdWIi.OiIxMjM0", "Authorization: [REDACTED]"),
        ('{"authorization": "SSWS 00abcDEF123"}', '{"authorization": "[REDACTED]"}'),
        ("sent Bearer eyJhbGciOiJIUzI1NiJ9 upstream", "sent Bearer [REDACTED] upstream"),
        ("Basic dXNlcjpwYXNzd29yZA==", "Basic [REDACTED]"),
        (
            "GET /v2/check?ipAddress=1.2.3.4&apikey=abc123&x=1",
            "GET /v2/check?ipAddress=1.2.3.4&apikey=[REDACTED]&x=1",
        ),
        ("https://h/api?token=s3cr3t#frag", "https://h/api?token=[REDACTED]#frag"),
        ("access_token=zzz&refresh_token=yyy", "access_token=[REDACTED]&refresh_token=[REDACTED]"),
        (
            '{"client_secret": "abc.def", "scope": "x"}',
            '{"client_secret": "[REDACTED]", "scope": "x"}',
        ),
        ("x-apikey: 0123456789abcdef", "x-apikey: [REDACTED]"),
        # prose and look-alikes survive
        (
            "basic validation failed for the monkey=1 field",
            "basic validation failed for the monkey=1 field",
        ),
        ("idempotency_key=abc123 reason: contain", "idempotency_key=abc123 reason: contain"),
        ("GET /etc/passwd: HTTP 404", "GET /etc/passwd: HTTP 404"),
    ],
)
def test_secret_shapes_are_scrubbed(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@given(
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=4, max_size=64),
)
def test_a_known_secret_never_survives(before: str, after: str, secret: str) -> None:
    assert secret not in redact_text(f"{before}{secret}{after}", [secret])


def test_redact_data_blanks_sensitive_keys_and_scrubs_strings() -> None:
    data = {
        "args": {"target": "ws-fin-042", "idempotency_key": "k-1", "api_key": "whatever"},
        "headers": [{"Authorization": "Bearer abcdefgh"}],
        "note": f"failed with key {KEY}",
        "count": 3,
    }
    assert redact_data(data, [KEY]) == {
        "args": {"target": "ws-fin-042", "idempotency_key": "k-1", "api_key": REDACTED},
        "headers": [{"Authorization": REDACTED}],
        "note": f"failed with key {REDACTED}",
        "count": 3,
    }


def test_logging_filter_scrubs_records() -> None:
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "GET %s key=%s", ("/x", KEY), None
    )
    assert RedactingFilter(lambda: [KEY]).filter(record)
    assert KEY not in record.getMessage()


def test_every_encoding_of_a_known_secret_is_scrubbed() -> None:
    """httpx reprs escape a newline; URLs percent-encode; headers and bodies base64-encode."""
    import base64
    import json
    from urllib.parse import quote, quote_plus

    secret = "s3cr3t/K+y=with spaces&sym"
    encodings = {
        "raw": secret,
        "repr": repr(secret + "\n")[1:-1],
        "json": json.dumps(secret)[1:-1],
        "url": quote(secret, safe=""),
        "url-plus": quote_plus(secret),
        "base64": base64.b64encode(secret.encode()).decode(),
        "base64-unpadded": base64.b64encode(secret.encode()).decode().rstrip("="),
        "base64-url": base64.urlsafe_b64encode(secret.encode()).decode(),
    }
    for name, encoded in encodings.items():
        text = f"Invalid header value b'{encoded}' while sending"
        cleaned = redact_text(text, [secret])
        assert encoded not in cleaned, name
        assert REDACTED in cleaned, name
    assert redact_text("nothing secret here", [secret]) == "nothing secret here"


def test_scrub_known_replaces_only_known_values_in_results() -> None:
    """Evidence keeps its words ('token=' in a log line stays); only real secrets go."""
    secret = "9d1e5a7c3b2f4e6a8c0d"
    result = {
        "events": [{"message": f"GET /x?token=public-sample echo {secret}"}],
        "count": 1,
        "echo": secret + "\n",
    }
    cleaned = scrub_known(result, [secret])
    assert cleaned == {
        "events": [{"message": f"GET /x?token=public-sample echo {REDACTED}"}],
        "count": 1,
        "echo": REDACTED + "\n",
    }
    assert scrub_known(result, []) is result

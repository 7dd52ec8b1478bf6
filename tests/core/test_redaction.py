"""Secret scrubbing of URLs, query strings and free text."""

from __future__ import annotations

import pytest

from otel_trader.redaction import add_redact_keys, redact_query, redact_text, redact_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer REDACTED"),
        ("authorization=Basic dXNlcjpwYXNz", "authorization=Basic REDACTED"),
        ("GET /x?api_key=123&q=1", "GET /x?api_key=REDACTED&q=1"),
        ("placing order with passphrase: hunter2 now", "placing order with passphrase: REDACTED now"),
        ('{"secret": "s3cr3t", "symbol": "BTC"}', '{"secret": "REDACTED", "symbol": "BTC"}'),
        ("POST https://api.telegram.org/bot123456:ABC-def_9/sendMessage", "POST https://api.telegram.org/botREDACTED/sendMessage"),
        ("nothing to hide here", "nothing to hide here"),
    ],
)
def test_redact_text(text, expected):
    assert redact_text(text) == expected


def test_redact_url_and_query():
    assert redact_url("https://u:p@ex.com/v5/order?symbol=BTC&signature=abc&X-MBX-APIKEY=k") == (
        "https://REDACTED:REDACTED@ex.com/v5/order?symbol=BTC&signature=REDACTED&X-MBX-APIKEY=REDACTED"
    )
    assert redact_query("limit=5&offset=10") == "limit=5&offset=10"


def test_users_can_add_keys():
    assert redact_query("desk_pin=1234") == "desk_pin=1234"
    add_redact_keys(["desk-pin"])
    assert redact_query("desk_pin=1234") == "desk_pin=REDACTED"
    assert redact_text("desk_pin=1234") == "desk_pin=REDACTED"

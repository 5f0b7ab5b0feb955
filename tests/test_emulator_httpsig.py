"""AudioHook handshake signatures: the published test vector, then what must be refused."""

from __future__ import annotations

import pytest

from dasctl.emulator import httpsig

API_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
INPUT = (
    'sig1=("@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
    '"audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
    'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430'
)
HEADERS = {
    "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
    "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "x-api-key": API_KEY,
    "signature-input": INPUT,
    "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
}
NOW = 1641013260


def check(headers=HEADERS, target="/api/v1/voicebiometrics/ws", authority="audiohook.example.com", now=NOW):
    import base64

    httpsig.verify(headers, target, authority, API_KEY, base64.b64decode(SECRET), now)


def test_published_test_vector_verifies():
    check()


def test_published_test_vector_signature_base():
    import base64

    parsed = httpsig.parse_signature_input(INPUT)
    values = {
        "@request-target": "/api/v1/voicebiometrics/ws",
        "@authority": "audiohook.example.com",
        **HEADERS,
    }
    base = httpsig.signature_base(values, parsed)
    assert base.splitlines()[0] == '"@request-target": /api/v1/voicebiometrics/ws'
    assert httpsig.sign(base, base64.b64decode(SECRET)) == "NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4="


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signature": "sig1=:AZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:"}, "does not match"),
        ({"audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c1"}, "does not match"),
        ({"signature": None}, "not signed"),
        ({"signature-input": INPUT.replace(' "x-api-key"', "")}, "does not cover x-api-key"),
        ({"signature-input": INPUT.replace("hmac-sha256", "rsa-pss-sha512")}, "alg"),
        ({"signature-input": INPUT.replace("VGhpc0lzQVVuaXF1ZU5vbmNl", "short")}, "nonce"),
        ({"signature-input": "sig1=garbage"}, "component list"),
        ({"signature": "sig2=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:"}, "sig1"),
    ],
)
def test_refused_signatures(change, message):
    headers = {key: value for key, value in {**HEADERS, **change}.items() if value is not None}
    with pytest.raises(httpsig.SignatureError, match=message):
        check(headers)


def test_other_authority_or_path_does_not_match():
    with pytest.raises(httpsig.SignatureError, match="does not match"):
        check(authority="127.0.0.1:7272")
    with pytest.raises(httpsig.SignatureError, match="does not match"):
        check(target="/audio/audiohook")


def test_expired_and_future_signatures():
    with pytest.raises(httpsig.SignatureError, match="expired"):
        check(now=3282026431)
    with pytest.raises(httpsig.SignatureError, match="future"):
        check(now=1641013200 - 3600)

"""RFC 9421 signatures and key ids: RFC vectors, a cross-check with http-message-signatures,
every tampering class, and the strict parser under arbitrary and mutated input."""

from __future__ import annotations

import base64
import contextlib
import datetime

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)
from hypothesis import given
from hypothesis import strategies as st

from wire.digest import content_digest, verify_content_digest
from wire.errors import SignatureError
from wire.keys import (
    b64url_decode,
    b64url_encode,
    jwk_thumbprint,
    key_id,
    load_private_key_pem,
    private_key_to_pem,
    public_key_from_raw,
    public_key_to_raw,
)
from wire.signatures import (
    BASE_COMPONENTS,
    ENROLL_TAG,
    TAG,
    ParsedSignature,
    SignatureParams,
    _parse_canonical,
    _parse_general,
    parse_signature,
    sign_request,
    signature_base,
    verify_request,
)

# RFC 9421 appendix B.1.4, test-key-ed25519 (public test material).
RFC_PRIVATE_PEM = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n"
    b"-----END PRIVATE KEY-----\n"
)
RFC_PUBLIC_PEM = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n"
    b"-----END PUBLIC KEY-----\n"
)
RFC_KEY = load_private_key_pem(RFC_PRIVATE_PEM)
RFC_KEYID = "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U"

# RFC 9421 appendix B.2: the request, and B.2.6 (ed25519) with its base and signature.
RFC_URI = "https://example.com/foo?param=Value&Pet=dog"
RFC_HEADERS = {
    "host": "example.com",
    "date": "Tue, 20 Apr 2021 02:07:55 GMT",
    "content-type": "application/json",
    "content-digest": "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+"
    "AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
    "content-length": "18",
}
B26_COMPONENTS = ("date", "@method", "@path", "@authority", "content-type", "content-length")
B26_SIGNATURE_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
B26_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu"
    "4A0w6vuQv5lIp5WPpBKRCw==:"
)
B26_BASE = (
    b'"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    b'"@method": POST\n'
    b'"@path": /foo\n'
    b'"@authority": example.com\n'
    b'"content-type": application/json\n'
    b'"content-length": 18\n'
    b'"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    b'"content-length");created=1618884473;keyid="test-key-ed25519"'
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes([7] * 32))
URI = "https://ingest.example.com/v1/batches"
MEDIA_TYPE = "application/vnd.tierless.batch.v1+msgpack"
BODY = b"\x1f\x8b\x08\x00batch bytes as sent"
CREATED = 1767225600


def _rfc_public_key() -> Ed25519PublicKey:
    """The RFC's public key, loaded independently of the private one."""
    key = serialization.load_pem_public_key(RFC_PUBLIC_PEM)
    assert isinstance(key, Ed25519PublicKey)
    return key


def _request(*, body: bytes = BODY, encoding: str | None = "gzip", **sign_kwargs) -> dict[str, str]:
    headers = {"content-type": MEDIA_TYPE, "content-digest": content_digest(body)}
    if encoding is not None:
        headers["content-encoding"] = encoding
    headers.update(sign_request(KEY, "POST", URI, headers, created=CREATED, **sign_kwargs))
    return headers


def _verify(
    headers: dict[str, str], *, method: str = "POST", uri: str = URI, key=KEY, **kwargs
) -> None:
    parsed = parse_signature(headers["signature-input"], headers["signature"])
    verify_request(parsed, key.public_key(), method, uri, headers, **kwargs)


def _sign_custom(
    headers: dict[str, str], params: SignatureParams, components, *, key=KEY
) -> dict[str, str]:
    """Headers signed with arbitrary parameters, which sign_request does not offer."""
    base = signature_base("POST", URI, headers, components, params)
    signature = base64.b64encode(key.sign(base)).decode()
    return {
        **headers,
        "signature-input": "sig1=" + params.serialize(components),
        "signature": f"sig1=:{signature}:",
    }


# Keys and key ids.


def test_rfc7638_rsa_thumbprint():
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
        "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWh"
        "AI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rfc8037_ed25519_thumbprint():
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    raw = b64url_decode(jwk["x"])
    assert key_id(public_key_from_raw(raw)) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_rfc9421_test_key_id():
    assert public_key_to_raw(_rfc_public_key()) == public_key_to_raw(RFC_KEY.public_key())
    assert key_id(RFC_KEY.public_key()) == RFC_KEYID


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": "AAAA"},
        {"crv": "Ed25519", "x": "AAAA"},
        {"kty": "OKP", "crv": "Ed25519"},
        {"kty": "EC", "crv": "P-256", "x": "AAAA"},
        {"kty": "OKP", "crv": "Ed25519", "x": 5},
        {"kty": "OKP", "crv": "Ed25519", "x": "\ud800"},
    ],
)
def test_thumbprint_refusals(jwk):
    with pytest.raises(SignatureError):
        jwk_thumbprint(jwk)


def test_b64url_is_strict():
    assert b64url_decode(b64url_encode(b"\xfb\xff")) == b"\xfb\xff"
    assert b64url_encode(b"\xfb\xff") == "-_8"
    for bad in ("-_8=", "+/8", "A", "AB", "A B", "é", 5):
        with pytest.raises(SignatureError):
            b64url_decode(bad)  # type: ignore[arg-type]


def test_raw_and_pem_round_trip_and_refusals():
    raw = public_key_to_raw(KEY.public_key())
    assert len(raw) == 32
    assert public_key_to_raw(public_key_from_raw(raw)) == raw
    pem = private_key_to_pem(KEY)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_private_key_pem(pem).private_bytes_raw() == KEY.private_bytes_raw()
    for bad_raw in (raw[:31], raw + b"\0", bytearray(raw), "x" * 32):
        with pytest.raises(SignatureError):
            public_key_from_raw(bad_raw)  # type: ignore[arg-type]
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    encrypted = KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    for bad_pem in (b"garbage", pem[:40], ec_pem, encrypted, RFC_PUBLIC_PEM, pem.decode()):
        with pytest.raises(SignatureError):
            load_private_key_pem(bad_pem)  # type: ignore[arg-type]
    for bad_key in (ec_key, KEY.public_key()):
        with pytest.raises(SignatureError):
            private_key_to_pem(bad_key)  # type: ignore[arg-type]
    with pytest.raises(SignatureError):
        public_key_to_raw(ec_key.public_key())  # type: ignore[arg-type]


# RFC 9421 B.2.6, and our profile signed by an independent implementation.


def test_rfc9421_b26_base_and_signature_byte_for_byte():
    params = SignatureParams(created=1618884473, keyid="test-key-ed25519", alg=None, tag=None)
    base = signature_base("POST", RFC_URI, RFC_HEADERS, B26_COMPONENTS, params)
    assert base == B26_BASE
    signature = base64.b64encode(RFC_KEY.sign(base)).decode()
    assert f"sig-b26=:{signature}:" == B26_SIGNATURE
    assert "sig-b26=" + params.serialize(B26_COMPONENTS) == B26_SIGNATURE_INPUT


def test_rfc9421_b26_verifies():
    parsed = parse_signature(B26_SIGNATURE_INPUT, B26_SIGNATURE)
    assert parsed.label == "sig-b26"
    assert parsed.components == B26_COMPONENTS
    assert parsed.serialized_params == B26_SIGNATURE_INPUT.removeprefix("sig-b26=")
    public = _rfc_public_key()

    def verify(
        headers=RFC_HEADERS, *, keyid: str | None = "test-key-ed25519", required=B26_COMPONENTS
    ):
        verify_request(
            parsed,
            public,
            "POST",
            RFC_URI,
            headers,
            expect_tag=None,
            required=required,
            keyid=keyid,
        )

    verify()
    # Under the profile it is refused: its keyid is a name, not the key's thumbprint, and it
    # covers neither the target URI nor a digest.
    with pytest.raises(SignatureError, match="keyid"):
        verify(keyid=None)
    with pytest.raises(SignatureError, match="not covered"):
        verify(required=None)
    with pytest.raises(SignatureError, match="does not verify"):
        verify({**RFC_HEADERS, "date": "Tue, 20 Apr 2021 02:07:56 GMT"})


def test_profile_example_signed_by_http_message_signatures_reproduces():
    # Made once with http-message-signatures 3.0.0 and the RFC's test-key-ed25519, with the JSON
    # content type and the tag "edge-batch-v1" of an early draft of the protocol: our signer must
    # give the same two header values, byte for byte.
    headers = {
        "content-type": "application/json",
        "content-encoding": "gzip",
        "content-digest": "sha-256=:jMmnjOt0EAipKM7aOfeu7jg5GJ1e5cyr3dqFKz6l4VE=:",
    }
    uri = "https://ingest.example.com/v1/batches"
    signed = sign_request(RFC_KEY, "POST", uri, headers, created=1767225600, tag="edge-batch-v1")
    assert signed == {
        "signature-input": 'sig1=("@method" "@target-uri" "content-type" "content-digest" '
        '"content-encoding");created=1767225600;keyid="poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U"'
        ';alg="ed25519";tag="edge-batch-v1"',
        "signature": "sig1=:ESV01fknUA0p/4SVfoyd+bV15u9sobOkUbiupsvbU1s1Lc38kNUOQqwCS3ECArbhOuz"
        "ZPoEmWIkkM4XRRcM0DQ==:",
    }


# Round trips and the cross-check.


@pytest.mark.parametrize("encoding", [None, "gzip", "zstd"])
def test_sign_parse_verify_round_trip(encoding):
    headers = _request(encoding=encoding)
    parsed = parse_signature(headers["signature-input"], headers["signature"])
    expected = BASE_COMPONENTS + (("content-encoding",) if encoding else ())
    assert parsed.components == expected
    assert parsed.params.order == ("created", "keyid", "alg", "tag")
    assert parsed.params == SignatureParams(
        created=CREATED, keyid=key_id(KEY.public_key()), order=parsed.params.order
    )
    _verify(headers)
    verify_content_digest(headers["content-digest"], BODY)


def test_enroll_tag_round_trip():
    headers = _request(tag=ENROLL_TAG)
    _verify(headers, expect_tag=ENROLL_TAG)
    with pytest.raises(SignatureError, match="tag"):
        _verify(headers)


ALL_DERIVED = (
    "@method",
    "@target-uri",
    "@authority",
    "@scheme",
    "@path",
    "@query",
    "@request-target",
    "content-type",
    "content-digest",
)


def _library_verifier(public_key) -> HTTPMessageVerifier:
    keys = MappingKeyResolver(public_keys={key_id(public_key): public_key}, private_keys={})
    return HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=keys)


def test_interoperates_with_http_message_signatures_both_ways():
    uri = "https://ingest.example.com:8443/v1/batches?x=1&y=%20"
    headers = {"content-type": MEDIA_TYPE, "content-digest": content_digest(BODY)}
    signed = sign_request(KEY, "POST", uri, headers, created=CREATED, components=ALL_DERIVED)
    mine = {**headers, **signed}
    # Ours -> theirs.
    request = httpx.Request("POST", uri, content=BODY, headers=mine)
    results = _library_verifier(KEY.public_key()).verify(
        request, expect_tag=TAG, require_components=ALL_DERIVED, max_age=None, body=BODY
    )
    assert [r.label for r in results] == ["sig1"]
    # Theirs -> ours, byte-identical headers.
    theirs = httpx.Request("POST", uri, content=BODY, headers=headers)
    kid = key_id(KEY.public_key())
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={kid: KEY}),
    )
    signer.sign(
        theirs,
        key_id=kid,
        created=datetime.datetime.fromtimestamp(CREATED, datetime.UTC),
        label="sig1",
        tag=TAG,
        covered_component_ids=ALL_DERIVED,
        use_existing_digest=True,
    )
    signed = {name.lower(): value for name, value in theirs.headers.items()}
    assert signed["signature-input"] == mine["signature-input"]
    assert signed["signature"] == mine["signature"]
    _verify(signed, uri=uri, required=ALL_DERIVED)


# Derived components and base construction.


@pytest.mark.parametrize(
    ("uri", "component", "value"),
    [
        ("https://Example.COM:443/foo?param=Value&Pet=dog", "@authority", "example.com"),
        ("http://example.com:80/", "@authority", "example.com"),
        ("http://example.com:8080/", "@authority", "example.com:8080"),
        ("https://example.com:/x", "@authority", "example.com"),
        ("https://[::1]:8443/x", "@authority", "[::1]:8443"),
        ("https://example.com:80/x", "@authority", "example.com:80"),
        ("https://example.com/foo?param=Value&Pet=dog", "@query", "?param=Value&Pet=dog"),
        ("https://example.com/foo", "@query", "?"),
        ("https://example.com/foo?", "@request-target", "/foo?"),
        ("https://example.com/foo?a=b", "@request-target", "/foo?a=b"),
        ("https://example.com/foo", "@request-target", "/foo"),
        ("https://example.com/f%20o?a", "@path", "/f%20o"),
        ("http://example.com/", "@scheme", "http"),
        ("https://Example.com/x?y", "@target-uri", "https://Example.com/x?y"),
    ],
)
def test_derived_components(uri, component, value):
    params = SignatureParams(created=1, keyid="k", alg=None, tag=None)
    base = signature_base("POST", uri, {}, (component,), params)
    assert base.split(b"\n")[0] == f'"{component}": {value}'.encode()


@pytest.mark.parametrize(
    "uri",
    [
        "https://example.com",
        "https://user@example.com/",
        "https://example.com/#frag",
        "ftp://example.com/",
        "HTTPS://example.com/",
        "https://exa mple.com/",
        "/v1/batches",
        "https://example.com/\u00e9",
        "https://example.com/\n",
        "https://example.com:123456/",
        "https://example.com/%zz",
        b"https://example.com/",
    ],
)
def test_bad_target_uris_are_refused(uri):
    params = SignatureParams(created=1, keyid="k")
    with pytest.raises(SignatureError, match="target URI"):
        signature_base("POST", uri, {}, ("@target-uri",), params)


@pytest.mark.parametrize(
    ("method", "headers", "components"),
    [
        ("POST", {}, ("content-type",)),  # missing field
        ("POST", {"x": "a\nb"}, ("x",)),
        ("POST", {"x": "a\rb"}, ("x",)),
        ("POST", {"x": "caf\u00e9"}, ("x",)),
        ("POST", {"x": b"a"}, ("x",)),
        ("PO ST", {}, ("@method",)),
        ("", {}, ("@method",)),
        ("POST", {}, ("@method", "@method")),
        ("POST", {}, ("@status",)),
        ("POST", {}, ("@signature-params",)),
        ("POST", {"Content-Type": "a"}, ("Content-Type",)),
        ("POST", {}, ('"x"',)),
    ],
)
def test_bad_base_inputs_are_refused(method, headers, components):
    params = SignatureParams(created=1, keyid="k")
    with pytest.raises(SignatureError):
        signature_base(method, URI, headers, components, params)


def test_field_values_are_trimmed():
    params = SignatureParams(created=1, keyid="k", alg=None, tag=None)
    base = signature_base("POST", URI, {"x": " \ta,\tb \t"}, ("x",), params)
    assert base.startswith(b'"x": a,\tb\n')


@pytest.mark.parametrize(
    "params",
    [
        SignatureParams(created=-1, keyid="k"),
        SignatureParams(created=True, keyid="k"),
        SignatureParams(created=10**15, keyid="k"),
        SignatureParams(created=1, keyid="k\n"),
        SignatureParams(created=1, keyid="k", order=("created", "keyid")),
        SignatureParams(created=1, keyid="k", order=("created", "keyid", "alg", "tag", "nonce")),
    ],
)
def test_unserialisable_params_are_refused(params):
    with pytest.raises(SignatureError):
        params.serialize(BASE_COMPONENTS)


def test_sign_request_refusals():
    headers = {"content-type": MEDIA_TYPE, "content-digest": content_digest(BODY)}
    with pytest.raises(SignatureError):
        sign_request(KEY, "POST", URI, headers, created=-5)
    with pytest.raises(SignatureError):
        sign_request(KEY, "POST", URI, headers, created=1, label="Sig1")
    with pytest.raises(SignatureError):
        sign_request(KEY, "POST", URI, headers, created=1, tag="t\u00e9")
    with pytest.raises(SignatureError):
        sign_request(KEY.public_key(), "POST", URI, headers, created=1)  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match="sequence of names"):
        sign_request(KEY, "POST", URI, headers, created=1, components="content-type")
    with pytest.raises(SignatureError, match="sequence of names"):
        _verify(_request(), required="content-type")
    many = tuple(f"x-{i}" for i in range(17))
    with pytest.raises(SignatureError):
        sign_request(KEY, "POST", URI, {n: "v" for n in many}, created=1, components=many)


# Tampering: every class is refused with SignatureError.


def test_body_changed_is_caught_by_the_digest():
    headers = _request()
    _verify(headers)  # the signature alone cannot see the body
    with pytest.raises(SignatureError, match="does not match"):
        verify_content_digest(headers["content-digest"], BODY + b"!")


def test_digest_recomputed_for_a_new_body_breaks_the_signature():
    headers = _request()
    forged = {**headers, "content-digest": content_digest(b"attacker body")}
    verify_content_digest(forged["content-digest"], b"attacker body")
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(forged)


def test_content_digest_not_covered():
    components = ("@method", "@target-uri", "content-type", "content-encoding")
    with pytest.raises(SignatureError, match="content-digest"):
        _verify(_request(components=components))


def test_content_encoding_present_but_not_covered():
    with pytest.raises(SignatureError, match="content-encoding"):
        _verify(_request(components=BASE_COMPONENTS))
    # Added after signing: now required, and not covered.
    headers = {**_request(encoding=None), "content-encoding": "gzip"}
    with pytest.raises(SignatureError, match="content-encoding"):
        _verify(headers)
    # Required even when the caller passes its own list.
    with pytest.raises(SignatureError, match="content-encoding"):
        _verify(headers, required=BASE_COMPONENTS)


def test_content_encoding_relabelled():
    headers = {**_request(encoding="gzip"), "content-encoding": "zstd"}
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(headers)


def test_wrong_and_missing_tag():
    with pytest.raises(SignatureError, match="tag"):
        _verify(_request(tag="other-app-v1"))
    headers = {"content-type": MEDIA_TYPE, "content-digest": content_digest(BODY)}
    untagged = SignatureParams(created=CREATED, keyid=key_id(KEY.public_key()), tag=None)
    signed = _sign_custom(headers, untagged, BASE_COMPONENTS)
    _verify(signed, expect_tag=None)
    with pytest.raises(SignatureError, match="tag None"):
        _verify(signed)


@pytest.mark.parametrize("alg", ['"hmac-sha256"', '"rsa-pss-sha512"', '"ED25519"', "ed25519"])
def test_wrong_alg(alg):
    headers = _request()
    tampered = headers["signature-input"].replace('alg="ed25519"', f"alg={alg}")
    with pytest.raises(SignatureError, match="alg"):
        parse_signature(tampered, headers["signature"])


def test_alg_absent_is_accepted():
    headers = {"content-type": MEDIA_TYPE, "content-digest": content_digest(BODY)}
    params = SignatureParams(created=CREATED, keyid=key_id(KEY.public_key()), alg=None)
    _verify(_sign_custom(headers, params, BASE_COMPONENTS))


def test_hand_built_parsed_signature_with_foreign_alg_is_refused():
    headers = _request()
    parsed = parse_signature(headers["signature-input"], headers["signature"])
    params = SignatureParams(created=CREATED, keyid=parsed.params.keyid, alg="hmac-sha256")
    forged = ParsedSignature(
        parsed.label, parsed.components, params, parsed.signature, parsed.serialized_params
    )
    with pytest.raises(SignatureError, match="alg"):
        verify_request(forged, KEY.public_key(), "POST", URI, headers)


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example.com/v1/batches",
        "https://ingest.example.com:8443/v1/batches",
        "http://ingest.example.com/v1/batches",
        "https://ingest.example.com/v1/enroll",
        "https://ingest.example.com/v1/batches/",
        "https://ingest.example.com/v1/batches?x=1",
        "https://INGEST.example.com/v1/batches",
    ],
)
def test_wrong_target_uri(uri):
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(_request(), uri=uri)


def test_wrong_method():
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(_request(), method="PUT")
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(_request(), method="post")


def test_wrong_key_and_keyid_mismatch():
    with pytest.raises(SignatureError, match="keyid"):
        _verify(_request(), key=OTHER_KEY)
    # keyid names OTHER_KEY but KEY signed: the keyid check passes, the signature does not.
    headers = {"content-type": MEDIA_TYPE, "content-digest": content_digest(BODY)}
    params = SignatureParams(created=CREATED, keyid=key_id(OTHER_KEY.public_key()))
    forged = _sign_custom(headers, params, BASE_COMPONENTS, key=KEY)
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(forged, key=OTHER_KEY)
    parsed = parse_signature(forged["signature-input"], forged["signature"])
    with pytest.raises(SignatureError, match="not an Ed25519 public key"):
        verify_request(parsed, KEY, "POST", URI, forged)  # type: ignore[arg-type]


def test_flipped_signature_bit():
    headers = _request()
    raw = bytearray(base64.b64decode(headers["signature"].removeprefix("sig1=:").rstrip(":")))
    raw[10] ^= 1
    headers["signature"] = f"sig1=:{base64.b64encode(bytes(raw)).decode()}:"
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(headers)


def _b64(n: int) -> str:
    return base64.b64encode(bytes(n)).decode()


_SI = _request()["signature-input"]
_SIG = _request()["signature"]
_INNER = '("@method" "@target-uri" "content-type" "content-digest" "content-encoding")'


@pytest.mark.parametrize(
    ("signature_input", "signature", "reason"),
    [
        (_SI, f"sig1=:{_b64(63)}:", "63 bytes"),
        (_SI, f"sig1=:{_b64(65)}:", "65 bytes"),
        (_SI, "sig1=::", "0 bytes"),
        (_SI, "sig1=abc", "sf-binary"),
        (_SI, _SIG + ";x", "sf-binary"),
        (_SI, f"sig1=(:{_b64(64)}:)", "inner list"),
        (_SI, _SIG[:-3] + "B=:", "non-canonical"),
        (_SI, f"{_SIG}, sig2=:{_b64(64)}:", "member"),
        (f"{_SI}, sig2={_SI[5:]}", _SIG, "member"),
        (f"{_SI}, {_SI}", f"{_SIG}, {_SIG}", "duplicate"),
        (_SI, _SIG.replace("sig1", "sig2"), "labels differ"),
        ("", _SIG, "exactly one label"),
        (_SI, "", "exactly one label"),
        ('sig1="x"', _SIG, "not an inner list"),
        ("sig1", _SIG, "not an inner list"),
        (_SI.replace('"content-type"', "content-type"), _SIG, "sf-strings"),
        (_SI.replace('"@method"', '"@query-param";name="Pet"'), _SIG, "component parameters"),
        (_SI.replace('"content-type"', '"Content-Type"'), _SIG, "lowercase"),
        (_SI.replace('"content-type"', '"@method"'), _SIG, "twice"),
        (_SI.replace('"content-type"', '"@signature-params"'), _SIG, "not supported"),
        (_SI.replace('"content-type"', '"@status"'), _SIG, "not supported"),
        (
            "sig1=(" + " ".join(f'"x-{i}"' for i in range(17)) + ');created=1;keyid="k"',
            _SIG,
            "inner-list",
        ),
        (_SI.replace("created=1767225600;", ""), _SIG, "created is required"),
        (_SI.replace("created=1767225600", 'created="1767225600"'), _SIG, "created"),
        (_SI.replace("created=1767225600", "created=-1"), _SIG, "created"),
        (_SI.replace("created=1767225600", "created=1767225600.5"), _SIG, "decimal"),
        (_SI.replace("created=1767225600", "created"), _SIG, "created"),
        (_SI.replace("created=1767225600", "created=1;created=2"), _SIG, "duplicate"),
        ("sig1=" + _INNER + ';created=1;alg="ed25519"', _SIG, "keyid is required"),
        ("sig1=" + _INNER + ";created=1;keyid=abc", _SIG, "keyid"),
        ("sig1=" + _INNER + ';created=1;keyid=""', _SIG, "keyid is required"),
        (_SI.replace(';tag="tierless-batch-v1"', ";tag=tierless"), _SIG, "tag"),
        (_SI + ";foo=1", _SIG, "foo"),
        (_SI + ";expires=?1", _SIG, "expires"),
        (_SI + ";nonce=1", _SIG, "nonce"),
        (_SI + " " * 700 + ", a" + " " * 400, _SIG, "over the cap"),
        (_SI + "\u00e9", _SIG, "non-ASCII"),
    ],
)
def test_strict_parse_refusals(signature_input, signature, reason):
    with pytest.raises(SignatureError, match=reason):
        parse_signature(signature_input, signature)


def test_optional_params_parse_and_keep_their_order():
    headers = {"content-type": MEDIA_TYPE, "content-digest": content_digest(BODY)}
    params = SignatureParams(
        created=CREATED,
        keyid=key_id(KEY.public_key()),
        expires=CREATED + 60,
        nonce="n-1",
        order=("nonce", "tag", "keyid", "expires", "alg", "created"),
    )
    signed = _sign_custom(headers, params, BASE_COMPONENTS)
    kid = key_id(KEY.public_key())
    assert signed["signature-input"] == (
        'sig1=("@method" "@target-uri" "content-type" "content-digest");nonce="n-1"'
        f';tag="{TAG}";keyid="{kid}";expires={CREATED + 60};alg="ed25519";created={CREATED}'
    )
    parsed = parse_signature(signed["signature-input"], signed["signature"])
    assert parsed.params == params
    _verify(signed)  # expires is not judged either: time is the caller's business


# Arbitrary and mutated input.

_SF_CHARS = 'sig1=():;,"@ -abcdefkyt0123456789?*/+\\\t'


@given(st.text(max_size=300), st.text(max_size=300))
def test_arbitrary_text_raises_only_signature_error(signature_input, signature):
    with contextlib.suppress(SignatureError):
        parse_signature(signature_input, signature)


@given(st.text(alphabet=_SF_CHARS, max_size=200), st.text(alphabet=_SF_CHARS, max_size=200))
def test_sf_shaped_text_raises_only_signature_error(signature_input, signature):
    with contextlib.suppress(SignatureError):
        parse_signature(signature_input, signature)


_VALID = _request()
_VALID_PARSED = parse_signature(_VALID["signature-input"], _VALID["signature"])


@given(
    which=st.sampled_from(["signature-input", "signature"]),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["delete", "insert", "replace", "duplicate"]),
            st.integers(min_value=0, max_value=400),
            st.sampled_from(list(_SF_CHARS) + ["\u00e9", "\x00", "A", "Z"]),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_valid_headers_are_refused_or_mean_the_same(which, edits):
    text = _VALID[which]
    for operation, position, char in edits:
        i = position % (len(text) + 1)
        if operation == "delete":
            text = text[:i] + text[i + 1 :]
        elif operation == "insert":
            text = text[:i] + char + text[i:]
        elif operation == "replace":
            text = text[:i] + char + text[i + 1 :]
        else:
            text = text[:i] + text[i : i + 8] + text[i:]
    headers = {**_VALID, which: text}
    try:
        parsed = parse_signature(headers["signature-input"], headers["signature"])
        verify_request(parsed, KEY.public_key(), "POST", URI, headers)
    except SignatureError:
        return
    # Accepted only if it still says exactly what was signed (e.g. extra spaces in the list).
    assert parsed.serialized_params == _VALID_PARSED.serialized_params
    assert parsed.signature == _VALID_PARSED.signature
    assert parsed.label == _VALID_PARSED.label


# The canonical fast path of parse_signature must mean exactly what the general parser means.


def test_our_own_signatures_take_the_canonical_path():
    parsed = _parse_canonical(_VALID["signature-input"], _VALID["signature"])
    assert parsed is not None
    assert parsed == _parse_general(_VALID["signature-input"], _VALID["signature"])


@given(
    which=st.sampled_from(["signature-input", "signature"]),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["delete", "insert", "replace", "duplicate"]),
            st.integers(min_value=0, max_value=400),
            st.sampled_from(list(_SF_CHARS) + ["\u00e9", "\x00", "A", "Z", "0", "="]),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_canonical_path_agrees_with_the_general_parser_on_mutations(which, edits):
    text = _VALID[which]
    for operation, position, char in edits:
        i = position % (len(text) + 1)
        if operation == "delete":
            text = text[:i] + text[i + 1 :]
        elif operation == "insert":
            text = text[:i] + char + text[i:]
        elif operation == "replace":
            text = text[:i] + char + text[i + 1 :]
        else:
            text = text[:i] + text[i : i + 8] + text[i:]
    headers = {**_VALID, which: text}
    fast = _parse_canonical(headers["signature-input"], headers["signature"])
    if fast is not None:
        assert fast == _parse_general(headers["signature-input"], headers["signature"])


_NAMES = st.sampled_from(["@method", "@target-uri", "@path", "@query", "content-type", "x-a"]) | (
    st.text(alphabet="@abcA-_.*", min_size=1, max_size=6)
)
_SF = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)


@given(
    label=st.sampled_from(["sig1", "a", "*x", "s-1.b*", "Sig"]),
    components=st.lists(_NAMES, min_size=1, max_size=18, unique=True) | st.lists(_NAMES),
    created=st.integers(min_value=0, max_value=10**16),
    keyid=_SF,
    tag=_SF,
    raw=st.binary(min_size=63, max_size=65),
    padding=st.sampled_from(["", "0", " "]),
)
def test_canonical_path_agrees_with_the_general_parser_on_built_fields(
    label, components, created, keyid, tag, raw, padding
):
    inner = "(" + " ".join(f'"{c}"' for c in components) + ")"
    quoted_keyid = keyid.replace("\\", "\\\\").replace('"', '\\"')
    quoted_tag = tag.replace("\\", "\\\\").replace('"', '\\"')
    signature_input = (
        f'{label}={inner};created={padding}{created};keyid="{quoted_keyid}";alg="ed25519"'
        f';tag="{quoted_tag}"'
    )
    signature = f"{label}=:{base64.b64encode(raw).decode('ascii')}:"
    fast = _parse_canonical(signature_input, signature)
    try:
        general = _parse_general(signature_input, signature)
    except SignatureError:
        assert fast is None
        return
    assert fast is None or fast == general

"""RFC 9421 HTTP Message Signatures, for the one profile gateway and cloud speak.

Profile:
- One signature labelled `sig1` with `alg="ed25519"`, `keyid` = `wire.keys.key_id` of the device's
  public key (an RFC 7638 thumbprint), `created` in integer epoch seconds, and a `tag` naming the
  purpose: `tierless-batch-v1` for batches, `tierless-enroll-v1` for enrolment.
- Covered components: `("@method" "@target-uri" "content-type" "content-digest")`, plus
  `"content-encoding"` whenever that header is sent. Content-Digest (`wire.digest`) binds the body
  as sent, so covering it binds the body.
- Signing order of parameters: created, keyid, alg, tag (then expires, nonce if ever set).

Invariants:
1. The signature base is RFC 9421 section 2.5 exactly: one `"<name>": <value>` line per covered
   component, then `"@signature-params": <inner list>`. On verification the inner list is the
   canonical RFC 8941 re-serialisation of the received Signature-Input member, parameters in the
   order received, so we agree byte for byte with any conforming signer (RFC 9421 B.2.6 is tested).
2. `parse_signature` is strict and capped: each field at most 1024 bytes, exactly one label and
   the same one in both fields, at most 16 distinct components without parameters, only the
   parameters created/expires/keyid/alg/tag/nonce with their RFC types, `created` and `keyid`
   required, `alg` absent or "ed25519", and a 64-byte signature.
3. `verify_request` checks, cheapest first: tag, required components covered (content-encoding
   is required whenever the header is present, whatever the caller passes), keyid names the
   key, then Ed25519 over the rebuilt base. It does NOT check the body against Content-Digest
   (call `wire.digest.verify_content_digest`) and does NOT judge `created`: gateway clocks may be
   wrong, and replay protection is the sequence number and hash chain inside the signed body.
4. Field values and derived components must be printable ASCII (HTAB allowed inside field values),
   so no value can smuggle a line into the base. Target URIs are absolute `http`/`https` URIs with
   an absolute path, no userinfo and no fragment; both sides must build the same string (the
   receiver uses its configured public origin plus the raw path and query, never `Host`).
5. Every failure is `SignatureError`, with a reason for server logs; clients get one fixed body.
   No I/O and no clock: `created` is passed in.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from wire.errors import SignatureError
from wire.keys import key_id
from wire.structured import (
    InnerList,
    Item,
    Params,
    parse_dictionary,
    serialize_key,
    serialize_params,
)

TAG = "tierless-batch-v1"
ENROLL_TAG = "tierless-enroll-v1"
LABEL = "sig1"
ALG = "ed25519"
BASE_COMPONENTS = ("@method", "@target-uri", "content-type", "content-digest")
CONTENT_ENCODING = "content-encoding"

MAX_FIELD_LENGTH = 1024
MAX_COMPONENTS = 16
SIGNATURE_LENGTH = 64

_DERIVED = frozenset(
    {"@method", "@target-uri", "@authority", "@scheme", "@path", "@query", "@request-target"}
)
_PARAM_ORDER = ("created", "keyid", "alg", "tag", "expires", "nonce")
_INT_PARAMS = frozenset({"created", "expires"})
_STR_PARAMS = frozenset({"keyid", "alg", "tag", "nonce"})
_FIELD_NAME = re.compile(r"[a-z0-9!#$%&'*+\-.^_`|~]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")  # applied after trimming SP and HTAB
_METHOD = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
_HEX2 = "%[0-9A-Fa-f]{2}"
_PCHAR = r"A-Za-z0-9\-._~!$&'()*+,;=:@"
_URI = re.compile(
    r"(?P<scheme>https?)://"
    rf"(?P<host>\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|{_HEX2})+)"
    r"(?::(?P<port>[0-9]{0,5}))?"
    rf"(?P<path>/(?:[{_PCHAR}/]|{_HEX2})*)"
    rf"(?:\?(?P<query>(?:[{_PCHAR}/?]|{_HEX2})*))?"
)
_DEFAULT_PORT = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class SignatureParams:
    """The signature parameters; `order` keeps the received order (None: the signing order)."""

    created: int
    keyid: str
    alg: str | None = ALG
    tag: str | None = TAG
    expires: int | None = None
    nonce: str | None = None
    order: tuple[str, ...] | None = None

    def members(self) -> Params:
        """The parameters that are set, as (name, value) in serialisation order."""
        values: dict[str, int | str | None] = {
            "created": self.created,
            "keyid": self.keyid,
            "alg": self.alg,
            "tag": self.tag,
            "expires": self.expires,
            "nonce": self.nonce,
        }
        present = tuple(name for name in _PARAM_ORDER if values[name] is not None)
        order = present if self.order is None else self.order
        if sorted(order) != sorted(present):
            raise SignatureError(f"parameter order {order} does not match the parameters set")
        members: list[tuple[str, int | str]] = []
        for name in order:
            value = values[name]
            if value is None:  # pragma: no cover - excluded by the order check above
                raise SignatureError(f"parameter {name} is not set")
            if name in _INT_PARAMS:
                if type(value) is not int or value < 0:
                    raise SignatureError(f"parameter {name} must be a non-negative int")
            elif type(value) is not str:
                raise SignatureError(f"parameter {name} must be a str")
            members.append((name, value))
        return tuple(members)

    def serialize(self, components: Sequence[str]) -> str:
        """The `@signature-params` value: the component inner list, then the parameters."""
        for name in components:
            _check_component_name(name)
        inner = "(" + " ".join(f'"{name}"' for name in components) + ")"
        return inner + serialize_params(self.members())


@dataclass(frozen=True, slots=True)
class ParsedSignature:
    """One signature as received; `serialized_params` is its `@signature-params` value."""

    label: str
    components: tuple[str, ...]
    params: SignatureParams
    signature: bytes
    serialized_params: str


def default_components(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The profile's covered components for a request with these (lowercase) headers."""
    if CONTENT_ENCODING in headers:
        return (*BASE_COMPONENTS, CONTENT_ENCODING)
    return BASE_COMPONENTS


def signature_base(
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    components: Sequence[str],
    params: SignatureParams,
) -> bytes:
    """The RFC 9421 section 2.5 signature base, ASCII bytes.

    `headers` maps lowercase names to values, repeated field lines already joined by ", ". A
    covered field that is absent, a duplicate or unknown component, or a value that is not
    printable ASCII is SignatureError. Derived components: @method, @target-uri, @authority (host
    lowercased, default port dropped), @scheme, @path, @query, @request-target.
    """
    components = _names(components)
    return _base(method, target_uri, headers, components, params.serialize(components))


def _base(
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    components: Sequence[str],
    params_value: str,
) -> bytes:
    lines = []
    seen: set[str] = set()
    uri: re.Match[str] | None = None
    for name in components:
        if name in seen:
            raise SignatureError(f"component {name!r} covered twice")
        seen.add(name)
        if name == "@method":
            if not isinstance(method, str) or _METHOD.fullmatch(method) is None:
                raise SignatureError(f"method {method!r} is not an HTTP token")
            value = method
        elif name.startswith("@"):
            if uri is None:
                uri = _parse_uri(target_uri)
            value = _derived(name, target_uri, uri)
        else:
            _check_component_name(name)
            raw = headers.get(name)
            if raw is None:
                raise SignatureError(f"covered field {name!r} is not in the request")
            if not isinstance(raw, str):
                raise SignatureError(f"field {name!r} is not a str")
            value = raw.strip(" \t")
            if _FIELD_VALUE.fullmatch(value) is None:
                raise SignatureError(f"field {name!r} has characters outside printable ASCII")
        lines.append(f'"{name}": {value}\n')
    lines.append(f'"@signature-params": {params_value}')
    return "".join(lines).encode("ascii")


def _parse_uri(target_uri: str) -> re.Match[str]:
    match = _URI.fullmatch(target_uri) if isinstance(target_uri, str) else None
    if match is None:
        raise SignatureError(
            f"target URI {target_uri!r} is not an absolute http(s) URI with a path, "
            "without userinfo or fragment"
        )
    return match


def _derived(name: str, target_uri: str, uri: re.Match[str]) -> str:
    path: str = uri["path"]
    query: str | None = uri["query"]
    if name == "@target-uri":
        return target_uri
    if name == "@scheme":
        return str(uri["scheme"])
    if name == "@authority":
        host = uri["host"].lower()
        port: str | None = uri["port"]
        if not port or int(port) == _DEFAULT_PORT[uri["scheme"]]:
            return str(host)
        return f"{host}:{port}"
    if name == "@path":
        return path
    if name == "@query":
        return "?" + (query or "")
    if name == "@request-target":
        return path if query is None else f"{path}?{query}"
    raise SignatureError(f"derived component {name!r} not supported")


def _names(components: Sequence[str]) -> tuple[str, ...]:
    # A bare str is a Sequence[str] too, of one-letter "components": refuse it outright.
    if isinstance(components, str):
        raise SignatureError("components must be a sequence of names, not one str")
    return tuple(components)


def _check_component_name(name: str) -> None:
    if not isinstance(name, str):
        raise SignatureError("component names are str")
    if name.startswith("@"):
        if name not in _DERIVED:
            raise SignatureError(f"derived component {name!r} not supported")
    elif _FIELD_NAME.fullmatch(name) is None:
        raise SignatureError(f"component {name!r} is not a lowercase field name")


def sign_request(
    private_key: Ed25519PrivateKey,
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    *,
    created: int,
    tag: str = TAG,
    label: str = LABEL,
    components: Sequence[str] | None = None,
) -> dict[str, str]:
    """Sign a request: `{"signature-input": ..., "signature": ...}` to add to its headers.

    `headers` (lowercase names) must already hold every covered field, Content-Digest included
    (`wire.digest.content_digest` of the body as sent). Components default to
    `default_components(headers)`; keyid is `key_id` of the private key's public key.
    """
    if not isinstance(private_key, Ed25519PrivateKey):
        raise SignatureError(f"{type(private_key).__name__} is not an Ed25519 private key")
    label = serialize_key(label)
    components = default_components(headers) if components is None else _names(components)
    if len(components) > MAX_COMPONENTS:
        raise SignatureError(f"more than {MAX_COMPONENTS} components")
    params = SignatureParams(created=created, keyid=key_id(private_key.public_key()), tag=tag)
    serialized = params.serialize(components)
    signature = private_key.sign(_base(method, target_uri, headers, components, serialized))
    return {
        "signature-input": f"{label}={serialized}",
        "signature": f"{label}=:{base64.b64encode(signature).decode('ascii')}:",
    }


# The exact text our own signers send (canonical RFC 8941, parameters in the signing order):
# `parse_signature` reads it with one match, and everything else with the general parser. The
# fast path only ever accepts; on any doubt it defers, so refusals and their reasons are the
# general parser's (tests/wire/test_signatures.py compares the two on mutated inputs).
_SF_CHARS = r"[\x20\x21\x23-\x5b\x5d-\x7e]"  # an sf-string's characters without escapes
_CANONICAL_INPUT = re.compile(
    r"(?P<label>[a-z*][a-z0-9_\-.*]*)="
    rf'(?P<value>\((?P<components>"{_SF_CHARS}+"(?: "{_SF_CHARS}+")*)\)'
    r";created=(?P<created>0|[1-9][0-9]{0,14})"
    rf';keyid="(?P<keyid>{_SF_CHARS}+)";alg="ed25519";tag="(?P<tag>{_SF_CHARS}*)")'
)
_CANONICAL_SIGNATURE = re.compile(r"(?P<label>[a-z*][a-z0-9_\-.*]*)=:(?P<b64>[A-Za-z0-9+/]{86}==):")


def _parse_canonical(signature_input: str, signature: str) -> ParsedSignature | None:
    """The profile's canonical form, parsed in one step; None for anything else."""
    if len(signature_input) > MAX_FIELD_LENGTH or len(signature) > MAX_FIELD_LENGTH:
        return None
    inp = _CANONICAL_INPUT.fullmatch(signature_input)
    sig = _CANONICAL_SIGNATURE.fullmatch(signature)
    if inp is None or sig is None or inp["label"] != sig["label"]:
        return None
    components = inp["components"][1:-1].split('" "')
    if len(components) > MAX_COMPONENTS or len(set(components)) != len(components):
        return None
    try:
        for name in components:
            _check_component_name(name)
    except SignatureError:
        return None
    encoded = sig["b64"]
    raw = base64.b64decode(encoded)  # the pattern admits only valid, padded base64
    if base64.b64encode(raw).decode("ascii") != encoded:  # unused bits set: not canonical
        return None
    params = SignatureParams(
        created=int(inp["created"]),
        keyid=inp["keyid"],
        alg=ALG,
        tag=inp["tag"],
        order=("created", "keyid", "alg", "tag"),
    )
    return ParsedSignature(
        label=inp["label"],
        components=tuple(components),
        params=params,
        signature=raw,
        serialized_params=inp["value"],  # canonical text: what params.serialize() rebuilds
    )


def parse_signature(signature_input: str, signature: str) -> ParsedSignature:
    """Parse the Signature-Input and Signature fields under the profile's strict rules.

    Both must carry exactly one member, under the same label. See invariant 2 for what else is
    required; any departure is SignatureError.
    """
    if isinstance(signature_input, str) and isinstance(signature, str):
        canonical = _parse_canonical(signature_input, signature)
        if canonical is not None:
            return canonical
    return _parse_general(signature_input, signature)


def _parse_general(signature_input: str, signature: str) -> ParsedSignature:
    inputs = parse_dictionary(
        signature_input,
        field="signature-input",
        max_length=MAX_FIELD_LENGTH,
        max_members=1,
        max_inner_items=MAX_COMPONENTS,
    )
    signatures = parse_dictionary(
        signature, field="signature", max_length=MAX_FIELD_LENGTH, max_members=1
    )
    if len(inputs) != 1 or len(signatures) != 1:
        raise SignatureError("signature-input and signature must each carry exactly one label")
    (label, member), (signature_label, signature_member) = inputs[0], signatures[0]
    if label != signature_label:
        raise SignatureError(f"labels differ: {label!r} and {signature_label!r}")
    if not isinstance(member, InnerList):
        raise SignatureError("signature-input member is not an inner list")
    components = []
    for item in member.items:
        # type() rather than isinstance(): a Token is a str subclass and must be refused.
        if type(item.value) is not str:
            raise SignatureError("component identifiers must be sf-strings")
        if item.params:
            raise SignatureError(f"component parameters not supported (on {item.value!r})")
        _check_component_name(item.value)
        if item.value in components:
            raise SignatureError(f"component {item.value!r} covered twice")
        components.append(item.value)
    params = _signature_params(member.params)
    if (
        not isinstance(signature_member, Item)
        or type(signature_member.value) is not bytes
        or signature_member.params
    ):
        raise SignatureError("signature member is not a bare sf-binary")
    if len(signature_member.value) != SIGNATURE_LENGTH:
        raise SignatureError(f"signature is {len(signature_member.value)} bytes, not 64")
    return ParsedSignature(
        label=label,
        components=tuple(components),
        params=params,
        signature=signature_member.value,
        serialized_params=params.serialize(components),
    )


def _signature_params(params: Params) -> SignatureParams:
    values: dict[str, int | str] = {}
    for name, value in params:
        if name in _INT_PARAMS:
            if type(value) is not int or value < 0:
                raise SignatureError(f"parameter {name} must be a non-negative sf-integer")
        elif name in _STR_PARAMS:
            if type(value) is not str:
                raise SignatureError(f"parameter {name} must be an sf-string")
        else:
            raise SignatureError(f"parameter {name!r} not supported")
        values[name] = value
    created, keyid, alg = values.get("created"), values.get("keyid"), values.get("alg")
    if not isinstance(created, int):
        raise SignatureError("parameter created is required")
    if not isinstance(keyid, str) or not keyid:
        raise SignatureError("parameter keyid is required")
    if alg is not None and alg != ALG:
        raise SignatureError(f"alg {alg!r} refused: only {ALG!r} is accepted")
    tag, expires, nonce = values.get("tag"), values.get("expires"), values.get("nonce")
    return SignatureParams(
        created=created,
        keyid=keyid,
        alg=None if alg is None else str(alg),
        tag=None if tag is None else str(tag),
        expires=None if expires is None else int(expires),
        nonce=None if nonce is None else str(nonce),
        order=tuple(name for name, _ in params),
    )


def verify_request(
    parsed: ParsedSignature,
    public_key: Ed25519PublicKey,
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    *,
    expect_tag: str | None = TAG,
    required: Sequence[str] | None = None,
    keyid: str | None = None,
) -> None:
    """Verify a parsed signature over this request; SignatureError on any failure.

    - `expect_tag`: the tag the signature must carry; None accepts any tag or none.
    - `required`: components that must be covered (default `BASE_COMPONENTS`); content-encoding
      is added whenever `headers` has it.
    - `keyid`: the keyid the signature must name; default `key_id(public_key)`, which binds the
      keyid to the key itself. Passing it skips that binding (and ~4 µs): do so only when the
      store already guarantees keyid == key_id(key), or for RFC vectors whose keyids are names.

    The body is not checked here: the caller must also run
    `wire.digest.verify_content_digest(headers["content-digest"], body)`. `created` is not
    judged (see the module docstring).
    """
    if not isinstance(public_key, Ed25519PublicKey):
        raise SignatureError(f"{type(public_key).__name__} is not an Ed25519 public key")
    params = parsed.params
    if params.alg not in (None, ALG):
        raise SignatureError(f"alg {params.alg!r} refused")
    if expect_tag is not None and params.tag != expect_tag:
        raise SignatureError(f"tag {params.tag!r} is not {expect_tag!r}")
    needed = list(BASE_COMPONENTS if required is None else _names(required))
    if CONTENT_ENCODING in headers:
        needed.append(CONTENT_ENCODING)
    missing = [name for name in needed if name not in parsed.components]
    if missing:
        raise SignatureError(f"required components not covered: {', '.join(missing)}")
    expected_keyid = key_id(public_key) if keyid is None else keyid
    if params.keyid != expected_keyid:
        raise SignatureError(f"keyid {params.keyid!r} does not name the key {expected_keyid!r}")
    base = _base(method, target_uri, headers, parsed.components, parsed.serialized_params)
    try:
        public_key.verify(parsed.signature, base)
    except InvalidSignature as exc:
        raise SignatureError("ed25519 signature does not verify") from exc

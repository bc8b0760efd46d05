"""Authentication of device requests (RFC 9421 signatures); operators' bearer tokens are
`cloud.bearer`'s.

Device request checks, in this order (cheapest first; nothing is read or decoded before a valid
signature except the headers):
1. exactly one Signature-Input and one Signature field line, parsed strictly (`wire.signatures`);
2. the key, looked up by keyid (an unknown key fails here); a key's record is reused for at most
   `Limits.key_cache_s` (1 s) so a busy device costs no store round trip per request, and an
   unknown keyid is remembered as unknown for `Limits.unknown_key_cache_s` (5 s, at most
   `Limits.unknown_key_cache_max` ids) so a flood of made-up ids costs one look-up each per 5 s;
3. the Ed25519 signature over `@method`, `@target-uri` (configured public URL + raw path + query,
   never Host), content-type, content-digest and content-encoding when present, with our tag;
4. only then the key state: revoked, retiring past its end, or device disabled is 403, so an
   unauthenticated caller cannot learn which keys exist or are revoked.
Steps 1-3 fail with the one 401 body; the reason goes to the log and the metrics only.
The body's Content-Digest is checked by the caller once the body is read.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.requests import Request

from cloud import responses
from cloud.errors import RejectedError
from cloud.storage.batches import BatchStore
from cloud.storage.devices import KeyRecord
from wire.errors import SignatureError
from wire.keys import public_key_from_raw
from wire.signatures import TAG, ParsedSignature, parse_signature, verify_request

log = logging.getLogger("cloud.receiver.auth")
_KEY_CACHE_MAX = 10_000


def unauthorized(reason: str) -> RejectedError:
    return RejectedError(
        401, responses.UNAUTHORIZED, reason=reason, headers=responses.UNAUTHORIZED_HEADERS
    )


def target_uri(public_url: str, request: Request) -> str:
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    uri = public_url + raw.decode("latin-1")
    query = request.scope.get("query_string", b"")
    return f"{uri}?{query.decode('latin-1')}" if query else uri


def parse_signature_headers(request: Request) -> ParsedSignature:
    inputs = request.headers.getlist("signature-input")
    signatures = request.headers.getlist("signature")
    if len(inputs) != 1 or len(signatures) != 1:
        raise SignatureError("expected exactly one signature-input and one signature line")
    return parse_signature(inputs[0], signatures[0])


def covered_headers(request: Request, parsed: ParsedSignature) -> dict[str, str]:
    """Lowercase name -> value for every covered field, plus content-encoding if sent."""
    names = {c for c in parsed.components if not c.startswith("@")}
    names.add("content-encoding")
    out = {}
    for name in names:
        values = request.headers.getlist(name)
        if values:
            out[name] = ", ".join(values)
    return out


class PublicKeys:
    """Ed25519 key objects by keyid. A keyid names its key bytes forever, so no invalidation;
    key *state* is never cached, it comes from the store on every request."""

    def __init__(self) -> None:
        self._keys: OrderedDict[str, Ed25519PublicKey] = OrderedDict()

    def get(self, record: KeyRecord) -> Ed25519PublicKey:
        key = self._keys.get(record.keyid)
        if key is None:
            key = public_key_from_raw(record.public_key)
            self._keys[record.keyid] = key
            if len(self._keys) > _KEY_CACHE_MAX:
                self._keys.popitem(last=False)
        return key


class KeyRecords:
    """Key records by keyid for at most `ttl_s` (monotonic), so a busy device costs no store
    round trip per request. A revocation made through this process's admin API invalidates at
    once; one made through another receiver takes effect here within `ttl_s`, and in the batch
    transaction at once (the store re-checks the key under the device's row lock).

    Unknown key ids are remembered as unknown for `unknown_ttl_s`, at most `unknown_max` of them,
    in a table of their own: a flood of made-up key ids costs one store look-up per id and
    `unknown_ttl_s`, and cannot push the keys of real devices out of the cache. A key enrolled
    through this process is known at once (enrolment calls `invalidate`); one enrolled through
    another receiver is known here within `unknown_ttl_s`."""

    def __init__(
        self,
        store: BatchStore,
        ttl_s: float,
        clock: Callable[[], float],
        *,
        unknown_ttl_s: float = 5.0,
        unknown_max: int = 10_000,
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._unknown_ttl_s = unknown_ttl_s
        self._unknown_max = unknown_max
        self._records: OrderedDict[str, tuple[float, KeyRecord]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()  # keyid -> when looked up
        self.lookups = 0  # store look-ups made, for tests and metrics

    async def get(self, keyid: str) -> KeyRecord | None:
        now = self._clock()
        hit = self._records.get(keyid)
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        missed = self._unknown.get(keyid)
        if missed is not None and now - missed < self._unknown_ttl_s:
            return None
        self.lookups += 1
        record = await self._store.get_key(keyid)
        if record is None:
            self._records.pop(keyid, None)
            self._unknown[keyid] = now
            self._unknown.move_to_end(keyid)
            while len(self._unknown) > self._unknown_max:
                self._unknown.popitem(last=False)
            return None
        self._unknown.pop(keyid, None)
        self._records[keyid] = (now, record)
        self._records.move_to_end(keyid)
        if len(self._records) > _KEY_CACHE_MAX:
            self._records.popitem(last=False)
        return record

    def forget(self, keyid: str) -> None:
        """Drop what is cached about one key (the store said its state changed)."""
        self._records.pop(keyid, None)
        self._unknown.pop(keyid, None)

    def invalidate(self) -> None:
        self._records.clear()
        self._unknown.clear()


async def authenticate_device(
    request: Request,
    records: KeyRecords,
    keys: PublicKeys,
    *,
    public_url: str,
    now_ms: Callable[[], int],
    tag: str = TAG,
) -> tuple[KeyRecord, ParsedSignature, dict[str, str]]:
    """The key a device request is validly signed with, usable now; RejectedError otherwise.

    Returns the key, the parsed signature and the covered headers (content-digest among them).
    """
    try:
        parsed = parse_signature_headers(request)
    except SignatureError as exc:
        raise unauthorized(f"signature headers: {exc}") from exc
    record = await records.get(parsed.params.keyid)
    if record is None:
        raise unauthorized("unknown keyid")
    headers = covered_headers(request, parsed)
    try:
        verify_request(
            parsed,
            keys.get(record),
            request.method,
            target_uri(public_url, request),
            headers,
            expect_tag=tag,
            keyid=record.keyid,
        )
    except SignatureError as exc:
        raise unauthorized(f"signature: {exc}") from exc
    if not record.usable(now_ms()):
        raise RejectedError(
            403, responses.FORBIDDEN, reason=f"key {record.status}, device {record.device_status}"
        )
    return record, parsed, headers

"""Errors of the wire contract.

    WireError                      anything wire refuses; never a bare ValueError/KeyError/…
    ├── DecodeError                bytes that are not a valid batch: the peer is at fault
    │   ├── UnsupportedEncodingError   content-coding or format version we do not speak (415)
    │   ├── TooLargeError          a cap was hit: wire size, decoded size, counts (413)
    │   └── InvalidBatchError      well-formed bytes, invalid contents: NaN, bad lengths, … (400)
    ├── EncodeError                our own batch cannot be encoded (a local bug or bad reading)
    ├── BodyError                  a JSON request body that does not decode strictly (400); the
    │                              message names the field and the fault, never echoes input
    ├── TokenFormatError           a string that is not an enrolment token (mistyped, cut, altered)
    ├── RemoteConfigError          a signed config a gateway must not apply: bad signature, digest,
    │                              device or version (`wire.remoteconfig`); the running one stays
    └── SignatureError             signature, digest or key not acceptable (401); one message
                                   for the client, the reason for our logs only

Callers decide by class: a receiver maps DecodeError subclasses to 4xx codes and SignatureError to a
single 401 body; an agent that gets EncodeError drops nothing and reports the reading it refused.
"""

from __future__ import annotations


class WireError(Exception):
    """Base of every error raised by wire."""


class DecodeError(WireError):
    """The peer sent bytes that are not a valid batch."""


class UnsupportedEncodingError(DecodeError):
    """A content-coding, format or version this side does not speak."""


class TooLargeError(DecodeError):
    """A size or count cap was reached; decoding stopped there."""


class InvalidBatchError(DecodeError):
    """The bytes decode, but what they say breaks the contract."""


class EncodeError(WireError):
    """A batch built on this side cannot be encoded."""


class BodyError(WireError):
    """A JSON request body that is not exactly the expected object (`wire.jsonbody`): not
    UTF-8, not JSON, a repeated key, a missing, unknown or mistyped field. `str()` is
    `<path>: <fault>`, safe to send back."""


class TokenFormatError(WireError, ValueError):
    """The string is not an enrolment token of this format (mistyped, cut off, or altered)."""


class SignatureError(WireError):
    """A signature, Content-Digest or key that must not be trusted."""


class RemoteConfigError(WireError):
    """A signed config that must not be applied; the message says why, never the body."""

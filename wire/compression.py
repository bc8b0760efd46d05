"""Content-coding of batch bodies: gzip always, zstd when both sides have `zstandard`.

Decompression of untrusted bytes is bounded: it streams in small steps and stops as soon as the
output would pass `max_size`, whatever size a frame header declares (a zstd frame may claim any
content size; `ZstdDecompressor().decompress()` trusts it, so it is never used here). gzip must be a
single member with nothing after it; zstd a single frame with a window of at most 8 MiB.
"""

from __future__ import annotations

import threading
import zlib
from types import ModuleType

from wire.errors import InvalidBatchError, TooLargeError, UnsupportedEncodingError

zstd: ModuleType | None
try:
    import zstandard as zstd
except ImportError:  # 32-bit ARM gateways have no wheel: gzip still works
    zstd = None

GZIP = "gzip"
ZSTD = "zstd"
IDENTITY = "identity"
_STEP = 64 * 1024
_ZSTD_STEP = 128
_ZSTD_MAX_WINDOW = 8 * 1024 * 1024
GZIP_LEVEL = 6
ZSTD_LEVEL = 3

# One zstd decoder context per thread, reused: creating one costs ~8 us, 90 % of decoding a small
# batch. Each decompressobj() resets the context's session, so no data carries over between
# bodies; a context keeps at most one window buffer (<= 8 MiB) between calls.
_zstd_contexts = threading.local()


def available_encodings() -> tuple[str, ...]:
    """Content-codings this process can both produce and read, preferred first."""
    return (ZSTD, GZIP) if zstd is not None else (GZIP,)


def choose_encoding(peer_accepts: str | None) -> str:
    """The best coding both sides have; a peer that says nothing gets gzip, which always works."""
    offered = {p.split(";")[0].strip().lower() for p in (peer_accepts or "").split(",")}
    for enc in available_encodings():
        if enc in offered:
            return enc
    return GZIP


def compress(body: bytes, encoding: str) -> bytes:
    if encoding == GZIP:
        c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return c.compress(body) + c.flush()
    if encoding == ZSTD:
        if zstd is None:
            raise UnsupportedEncodingError("zstd is not installed on this side")
        return bytes(zstd.ZstdCompressor(level=ZSTD_LEVEL).compress(body))
    if encoding == IDENTITY:
        return body
    raise UnsupportedEncodingError(f"content-coding {encoding!r} is not supported")


def decompress(data: bytes, encoding: str | None, max_size: int) -> bytes:
    """Decode `data`; TooLargeError as soon as the output would exceed `max_size` bytes."""
    enc = (encoding or IDENTITY).strip().lower()
    if enc == IDENTITY:
        if len(data) > max_size:
            raise TooLargeError(f"body of {len(data)} bytes exceeds {max_size}")
        return data
    if enc == GZIP:
        return _gunzip(data, max_size)
    if enc == ZSTD:
        if zstd is None:
            raise UnsupportedEncodingError("zstd is not installed on this side")
        return _unzstd(data, max_size)
    raise UnsupportedEncodingError(f"content-coding {encoding!r} is not supported")


def _gunzip(data: bytes, max_size: int) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = data
    try:
        while True:
            out += d.decompress(pending, _STEP)
            if len(out) > max_size:
                raise TooLargeError(f"gzip body inflates past {max_size} bytes")
            pending = d.unconsumed_tail
            if d.eof or not pending:
                break
        if not d.eof:
            raise InvalidBatchError("gzip body is truncated")
        if d.unused_data:
            raise InvalidBatchError(
                f"gzip body has {len(d.unused_data)} bytes after its end (a second member?)"
            )
    except zlib.error as exc:
        raise InvalidBatchError(f"gzip body is corrupt: {exc}") from exc
    return bytes(out)


def _unzstd(data: bytes, max_size: int) -> bytes:
    if zstd is None:  # pragma: no cover - decompress() checked; keeps the type narrow
        raise UnsupportedEncodingError("zstd is not installed on this side")
    try:
        dctx = getattr(_zstd_contexts, "dctx", None)
        if dctx is None:
            dctx = _zstd_contexts.dctx = zstd.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        dobj = dctx.decompressobj(read_across_frames=False)
        out = bytearray()
        view = memoryview(data)
        # Small input steps bound each step's output: a zstd block of 4 bytes may stand for
        # 128 KiB, so 128 input bytes yield at most 4 MiB before the cap is checked again.
        for start in range(0, len(data), _ZSTD_STEP):
            out += dobj.decompress(view[start : start + _ZSTD_STEP])
            if len(out) > max_size:
                raise TooLargeError(f"zstd body inflates past {max_size} bytes")
            if dobj.eof:
                break
        if not dobj.eof:
            raise InvalidBatchError("zstd body is truncated")
        if dobj.unused_data or start + _ZSTD_STEP < len(data):
            raise InvalidBatchError("zstd body has bytes after its frame")
    except zstd.ZstdError as exc:
        raise InvalidBatchError(f"zstd body is corrupt: {exc}") from exc
    return bytes(out)

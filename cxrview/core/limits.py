"""Guards against hostile or damaged files: a time limit, codestream sizes, bounded inflation.

A fuzz run of 12,000 mutated files (issue #15) found small files that exhausted memory or
never returned: JPEG / JPEG-LS / JPEG 2000 codestreams whose *own* header claims 50000×50000
(the decoders allocate from it, whatever the DICOM header says), a deflated DICOM that
inflates to gigabytes, and a JP2 box of length zero that sends pydicom's JPEG 2000 parser
into an endless loop. Each is checked here from the bytes, before any decoder sees them,
and the whole load runs under a time limit as the last line of defence.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
import zlib
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIME_LIMIT_S = 8.0  # a 100-megapixel JPEG 2000 decodes in ~4 s on a 2-core laptop
TIME_LIMIT_ENV = "CXRVIEW_DECODE_TIMEOUT"
MIN_INFLATE_LIMIT = 16 << 20  # bytes; small limits (tests) still let a real header through
# A decoded frame may take at most this many bytes per allowed pixel: 100 megapixels of 16-bit
# grey or 8-bit RGB pass, 100 megapixels of 32-bit RGB (1.2 GB before the grey conversion) do not.
BYTES_PER_PIXEL_LIMIT = 4


class TimeLimitExceeded(Exception):
    """The guarded call ran past its limit (the caller turns it into a typed load error)."""


class _Abandoned(BaseException):
    """Raised asynchronously inside an over-running worker; BaseException so that the
    ``except Exception`` blocks of the libraries it runs through do not swallow it."""


def is_interrupt(exc: BaseException) -> bool:
    """True for the BaseExceptions that must propagate (Ctrl+C, exit, an abandoned decode).

    Others that are not ``Exception`` do reach us from native decoders: a Rust decoder's
    panic arrives as ``pyo3_runtime.PanicException`` (a BaseException), and it means
    the data is damaged, not that the program should stop."""
    return isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit, _Abandoned))


def time_limit_s() -> float:
    """The limit in seconds: ``$CXRVIEW_DECODE_TIMEOUT`` when set to a positive number."""
    try:
        value = float(os.environ.get(TIME_LIMIT_ENV, ""))
    except ValueError:
        return DEFAULT_TIME_LIMIT_S
    return value if value > 0 else DEFAULT_TIME_LIMIT_S


def call_with_time_limit(fn: Callable[[], T], seconds: float) -> T:
    """``fn()`` on a helper thread, waited for at most ``seconds``.

    On time-out the helper gets an asynchronous exception, which stops it at its next
    Python bytecode (an endless loop in pure Python, such as pydicom's JP2 box walk); a
    decoder stuck in C finishes in the background and its result is dropped. Either way
    the caller gets :class:`TimeLimitExceeded` at once and the process stays usable.
    """
    outcome: dict[str, object] = {}

    def body() -> None:
        try:
            outcome["value"] = fn()
        except _Abandoned:
            pass
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=body, name="cxrview-decode", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        ident = worker.ident
        if ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(_Abandoned))
        raise TimeLimitExceeded(f"took longer than {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


# -- codestream sizes -------------------------------------------------------------------------
class CodestreamError(ValueError):
    """The compressed data's own structure is broken (before any decoder runs)."""


# JPEG start-of-frame markers (every process, baseline to lossless, and JPEG-LS's SOF55);
# C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
_SOF_MARKERS = {*range(0xC0, 0xD0), 0xF7} - {0xC4, 0xC8, 0xCC}
_MAX_J2K_TILES = 1 << 20  # more tiles than this is a bomb of tile bookkeeping, not an image


def codestream_size(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) claimed by a JPEG, JPEG-LS, JPEG 2000 codestream or JP2
    file, read from its own header; None when ``data`` is none of these. Raises
    :class:`CodestreamError` for a structure no decoder should be handed."""
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:4] == b"\xff\x4f\xff\x51":
        return _j2k_size(data, 0)
    if data[4:8] == b"jP  ":
        return _jp2_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int, int]:
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            raise CodestreamError("JPEG marker expected")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise CodestreamError("JPEG segment shorter than its own length field")
        if marker in _SOF_MARKERS:
            if pos + 10 > end:
                break
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height, data[pos + 9]
        pos += 2 + length
    raise CodestreamError("no JPEG frame header before the image data")


def _j2k_size(data: bytes, start: int) -> tuple[int, int, int]:
    # SOC, then SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz
    if start + 42 > len(data) or data[start:start + 4] != b"\xff\x4f\xff\x51":
        raise CodestreamError("JPEG 2000 codestream without its size marker")
    xsiz, ysiz, xo, yo, xt, yt, xto, yto = struct.unpack_from(">8I", data, start + 8)
    (csiz,) = struct.unpack_from(">H", data, start + 40)
    if xsiz <= xo or ysiz <= yo or xt == 0 or yt == 0 or xto > xo or yto > yo or csiz == 0:
        raise CodestreamError("JPEG 2000 size marker is inconsistent")
    tiles = -(-(xsiz - xto) // xt) * -(-(ysiz - yto) // yt)
    if tiles > _MAX_J2K_TILES:
        raise CodestreamError(f"JPEG 2000 codestream claims {tiles:,} tiles")
    return xsiz - xo, ysiz - yo, csiz


def _jp2_size(data: bytes) -> tuple[int, int, int]:
    """Walk the JP2 boxes to the codestream; a length that does not advance is refused."""
    pos, end = 0, len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if length == 1:
            if pos + 16 > end:
                break
            (length,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif length == 0:
            length = end - pos  # "to the end of the file": only the last box may say so
        if length < header:
            raise CodestreamError(f"JPEG 2000 box {kind!r} has an impossible length {length}")
        if kind == b"jp2c":
            return _j2k_size(data, pos + header)
        if kind == b"jp2h":  # superbox: descend into it
            pos += header
            continue
        pos += length
    raise CodestreamError("JPEG 2000 file without a codestream box")


# -- bounded inflation --------------------------------------------------------------------------
def inflated_size_within(stream: bytes, limit: int) -> bool:
    """True when raw-deflate ``stream`` inflates to at most ``limit`` bytes.

    Inflates in chunks, counting and discarding, so checking a bomb costs no memory.
    A damaged stream counts what it yields before the damage (pydicom then reports it).
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total, pending = 0, stream
    chunk = 1 << 20
    try:
        while pending:
            total += len(inflater.decompress(pending, chunk))
            if total > limit:
                return False
            pending = inflater.unconsumed_tail
        while not inflater.eof:
            out = inflater.decompress(b"", chunk)
            if not out:
                break
            total += len(out)
            if total > limit:
                return False
    except zlib.error:
        return True
    return True

"""The one entry point that turns a path into an XrayImage, whatever the format."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from cxrview.core.errors import (
    DecodeTimeoutError,
    FileMissingError,
    ImageLoadError,
    ImageTooLargeError,
    NotAnImageError,
)
from cxrview.core.image import XrayImage
from cxrview.core.limits import TimeLimitExceeded, call_with_time_limit, is_interrupt, time_limit_s
from cxrview.core.raster import load_raster, sniff_raster

DEFAULT_MAX_PIXELS = 100_000_000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ".dic", ".ima"}


def has_dicom_preamble(head: bytes) -> bool:
    """The DICM marker after the 128-byte preamble (whatever the preamble holds: some
    writers put a TIFF header there, so this is tested before any other format)."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def looks_like_dicom(head: bytes) -> bool:
    """DICM magic after the preamble, or an ACR-NEMA file starting with group 0002/0008."""
    if has_dicom_preamble(head):
        return True
    # Files without preamble start with a low group number, little endian (08 00 xx xx).
    return len(head) >= 8 and head[1] == 0 and head[0] in (0x02, 0x08) and head[3] == 0


def _read_head(p: Path) -> bytes:
    """The first 132 bytes of a regular file; a folder, a FIFO or a device is refused before
    it is opened (opening a FIFO would wait for a writer forever)."""
    try:
        info = p.stat()
    except FileNotFoundError as exc:
        raise FileMissingError(p, "file not found") from exc
    except PermissionError as exc:
        raise FileMissingError(p, "permission denied") from exc
    except OSError as exc:  # ENAMETOOLONG, ELOOP, ENOTDIR, …
        raise FileMissingError(p, f"cannot be read ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(info.st_mode):
        raise NotAnImageError(p, "is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise NotAnImageError(p, "is not a regular file (a pipe, socket or device)")
    try:
        with open(p, "rb") as handle:
            head = handle.read(132)
    except PermissionError as exc:
        raise FileMissingError(p, "permission denied") from exc
    except OSError as exc:
        raise FileMissingError(p, f"cannot be read ({exc.strerror or exc})") from exc
    if not head:
        raise NotAnImageError(p, "the file is empty")
    return head


def load_image(path: str | os.PathLike[str], *, allow_large: bool = False,
               max_pixels: int = DEFAULT_MAX_PIXELS, time_limit: float | None = None) -> XrayImage:
    """Load PNG, JPEG, TIFF or DICOM.

    Raises an ``ImageLoadError`` subclass whose message names the file and the
    reason; unexpected library errors are wrapped the same way, never leaked.
    Decoding runs under ``time_limit`` seconds (default :func:`limits.time_limit_s`).
    """
    p = Path(path)
    head = _read_head(p)
    limit = None if allow_large else max_pixels
    try:
        return call_with_time_limit(lambda: _decode(p, head, limit),
                                    time_limit if time_limit is not None else time_limit_s())
    except ImageLoadError:
        raise
    except TimeLimitExceeded as exc:
        raise DecodeTimeoutError(p, f"decoding {exc}: the file is damaged or hostile") from exc
    except MemoryError as exc:
        raise ImageTooLargeError(p, "not enough memory to load this image") from exc
    except BaseException as exc:  # a decoder bug (or panic) must surface as a readable error, not a crash
        if is_interrupt(exc):
            raise
        raise ImageLoadError(p, f"could not be read ({type(exc).__name__}: {exc})") from exc


def _decode(p: Path, head: bytes, limit: int | None) -> XrayImage:
    # DICOM first: a DICOM preamble may itself be a TIFF header (dual-format files).
    if has_dicom_preamble(head):
        from cxrview.core.dicom import load_dicom

        return load_dicom(p, max_pixels=limit)
    fmt = sniff_raster(head)
    if fmt is not None:
        return load_raster(p, p.read_bytes(), fmt, max_pixels=limit)
    if looks_like_dicom(head):
        from cxrview.core.dicom import load_dicom

        return load_dicom(p, max_pixels=limit)
    raise NotAnImageError(p, "not a supported image (expected PNG, JPEG, TIFF or DICOM)")


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def is_candidate_image(path: Path) -> bool:
    """Known image suffix, or an extensionless file with DICOM magic (common on PACS exports)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    if path.suffix == "" and path.is_file():
        try:
            with open(path, "rb") as handle:
                return looks_like_dicom(handle.read(132))
        except OSError:
            return False
    return False


def find_images(folder: str | os.PathLike[str], *, recursive: bool = False) -> list[Path]:
    """Image files in a folder, in natural order (img2 before img10); hidden files skipped."""
    root = Path(folder)
    entries = root.rglob("*") if recursive else root.iterdir()
    found = [p for p in entries if not p.name.startswith(".") and p.is_file() and is_candidate_image(p)]
    return sorted(found, key=_natural_key)

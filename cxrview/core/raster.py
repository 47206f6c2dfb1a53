"""PNG (8/16-bit), JPEG and TIFF loading.

Pillow reads only the header first, so the pixel-count limit is enforced before
any decoding (decompression bombs); OpenCV then decodes, keeping 16-bit depth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrview.core.errors import (
    CorruptImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedFileError,
)
from cxrview.core.hashing import pixel_hash
from cxrview.core.image import MetadataItem, ModalityTransform, Window, XrayImage
from cxrview.core.presets import histogram_presets

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def sniff_raster(head: bytes) -> str | None:
    """'PNG', 'JPEG', 'TIFF' or None from the first bytes of a file."""
    if head.startswith(PNG_SIGNATURE):
        return "PNG"
    if head.startswith(JPEG_SIGNATURE):
        return "JPEG"
    if head.startswith(TIFF_SIGNATURES):
        return "TIFF"
    return None


def _header_size(path: Path, data: bytes, fmt: str) -> tuple[int, int, str, dict[str, str]]:
    import io

    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # we enforce our own, clearer limit below
    try:
        with Image.open(io.BytesIO(data)) as im:
            info = {str(k): str(v) for k, v in im.info.items()
                    if isinstance(v, (str, int, float, tuple)) and k not in ("icc_profile", "exif")}
            return im.width, im.height, im.mode, info
    except Exception as exc:
        raise CorruptImageError(path, f"damaged {fmt} header ({exc})") from exc


def _check_complete(path: Path, data: bytes, fmt: str) -> None:
    """Detect truncation cheaply: PNG must end with IEND, JPEG must contain EOI near the end."""
    if fmt == "PNG" and b"IEND" not in data[-64:]:
        raise TruncatedFileError(path, "the PNG file is truncated (no end marker)")
    if fmt == "JPEG" and b"\xff\xd9" not in data[-4096:]:
        raise TruncatedFileError(path, "the JPEG file is truncated (no end-of-image marker)")


def _to_grey(pixels: np.ndarray, path: Path) -> tuple[np.ndarray, list[str]]:
    import cv2

    if pixels.ndim == 2:
        return pixels, []
    channels = pixels.shape[2]
    if channels == 1:
        return pixels[..., 0], []
    if channels in (3, 4):
        code = cv2.COLOR_BGR2GRAY if channels == 3 else cv2.COLOR_BGRA2GRAY
        b, g, r = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        if np.array_equal(b, g) and np.array_equal(g, r):
            return np.ascontiguousarray(b), []  # grey stored as RGB: exact, no rounding
        return cv2.cvtColor(pixels, code), ["colour image converted to grey"]
    raise CorruptImageError(path, f"unsupported channel count {channels}")


def load_raster(path: Path, data: bytes, fmt: str, *, max_pixels: int | None) -> XrayImage:
    """Decode PNG/JPEG/TIFF bytes into an XrayImage (MONOCHROME2, no spacing)."""
    import cv2

    width, height, mode, info = _header_size(path, data, fmt)
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            path, f"{width}×{height} = {width * height / 1e6:.0f} megapixels exceeds the "
                  f"{max_pixels / 1e6:.0f}-megapixel safety limit")
    _check_complete(path, data, fmt)
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise CorruptImageError(path, f"the {fmt} data could not be decoded ({exc})") from exc
    if decoded is None:
        raise CorruptImageError(path, f"the {fmt} data could not be decoded")
    stored, notices = _to_grey(decoded, path)
    if stored.dtype == np.bool_:
        stored = stored.astype(np.uint8) * 255
    if stored.dtype.kind not in "iuf":
        raise NotAnImageError(path, f"unsupported pixel type {stored.dtype}")
    stored = np.ascontiguousarray(stored)
    bits = stored.dtype.itemsize * 8

    transform = ModalityTransform()
    image = XrayImage(
        path=str(path), stored=stored, photometric="MONOCHROME2", bits_stored=bits,
        modality_transform=transform, presets={"full range": Window(0.0, 1.0)},
        default_preset="full range", spacing=None, content_hash=pixel_hash(stored), format=fmt,
        metadata=[MetadataItem("", "Format", "", fmt),
                  MetadataItem("", "Size", "", f"{width} × {height}"),
                  MetadataItem("", "Mode", "", f"{mode} ({stored.dtype})"),
                  MetadataItem("", "File size", "", f"{len(data):,} bytes")]
                 + [MetadataItem("", k, "", v[:200]) for k, v in info.items()],
        notices=notices,
    )
    presets = histogram_presets(stored, transform, inverted=False,
                                stored_range=image.stored_range())
    if stored.dtype == np.uint8:
        # 8-bit files are already windowed for display: show them exactly as stored.
        presets = {"as stored": Window(128.0, 256.0), **presets}
        image.default_preset = "as stored"
    else:
        image.default_preset = "auto"
    image.presets = presets
    return image

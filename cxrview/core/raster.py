"""PNG (8/16-bit), JPEG and TIFF loading.

Pillow reads only the header first, so the pixel-count limit is enforced before
any decoding (decompression bombs); OpenCV then decodes, keeping 16-bit depth.
The header is read with Pillow's format plugins directly rather than ``Image.open``:
that skips Pillow's own bomb check (ours is clearer and comes first) without switching
it off for the whole process (``Image.MAX_IMAGE_PIXELS`` stays as Pillow set it).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from cxrview.core.errors import (
    CorruptImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedFileError,
)
from cxrview.core.hashing import pixel_hash
from cxrview.core.image import MetadataItem, ModalityTransform, Window, XrayImage
from cxrview.core.limits import BYTES_PER_PIXEL_LIMIT
from cxrview.core.presets import histogram_presets

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
FLOAT_LIMIT = 1e30  # float pixels beyond this are clipped: windows of wider spans overflow
_CHUNK_PIXELS = 1 << 20  # colour conversion a million pixels at a time: no full-size float copy


def sniff_raster(head: bytes) -> str | None:
    """'PNG', 'JPEG', 'TIFF' or None from the first bytes of a file."""
    if head.startswith(PNG_SIGNATURE):
        return "PNG"
    if head.startswith(JPEG_SIGNATURE):
        return "JPEG"
    if head.startswith(TIFF_SIGNATURES):
        return "TIFF"
    return None


def _bytes_per_sample(im: Any, data: bytes, fmt: str) -> int:
    if fmt == "PNG" and len(data) > 24:
        return 2 if data[24] == 16 else 1  # IHDR bit depth
    if fmt == "JPEG":
        return 2 if int(getattr(im, "bits", 8) or 8) > 8 else 1
    try:
        bits = im.tag_v2.get(258, (8,))  # TIFF BitsPerSample
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(1, -(-max(int(b) for b in bits) // 8))
    except Exception:
        return 4


def _header_size(path: Path, data: bytes, fmt: str) -> tuple[int, int, str, dict[str, str], int]:
    """(width, height, mode, info, decoded bytes) from the header alone."""
    from PIL import JpegImagePlugin, PngImagePlugin, TiffImagePlugin

    plugin: Any = {"PNG": PngImagePlugin.PngImageFile, "JPEG": JpegImagePlugin.JpegImageFile,
              "TIFF": TiffImagePlugin.TiffImageFile}[fmt]
    try:
        with plugin(io.BytesIO(data)) as im:
            info = {str(k): str(v) for k, v in im.info.items()
                    if isinstance(v, (str, int, float, tuple)) and k not in ("icc_profile", "exif")}
            decoded = im.width * im.height * len(im.getbands()) * _bytes_per_sample(im, data, fmt)
            return im.width, im.height, im.mode, info, decoded
    except Exception as exc:
        raise CorruptImageError(path, f"damaged {fmt} header ({exc})") from exc


def _check_complete(path: Path, data: bytes, fmt: str) -> None:
    """Detect truncation cheaply: PNG must end with IEND, JPEG must contain EOI near the end."""
    if fmt == "PNG" and b"IEND" not in data[-64:]:
        raise TruncatedFileError(path, "the PNG file is truncated (no end marker)")
    if fmt == "JPEG" and b"\xff\xd9" not in data[-4096:]:
        raise TruncatedFileError(path, "the JPEG file is truncated (no end-of-image marker)")


def grey_from_colour(pixels: np.ndarray, *, order: str = "RGB") -> np.ndarray:
    """ITU-R BT.601 luma of RGB(A) or BGR(A) pixels, in the input's dtype, a block of rows at a time."""
    weights = np.array([0.299, 0.587, 0.114] if order == "RGB" else [0.114, 0.587, 0.299], dtype=np.float64)
    h, w = pixels.shape[:2]
    out = np.empty((h, w), dtype=pixels.dtype)
    step = max(1, _CHUNK_PIXELS // max(w, 1))
    info = np.finfo(out.dtype) if out.dtype.kind == "f" else np.iinfo(out.dtype)
    for r in range(0, h, step):
        block = pixels[r:r + step, :, :3].astype(np.float64) @ weights
        out[r:r + step] = np.clip(block if out.dtype.kind == "f" else np.rint(block), info.min, info.max)
    return out


def bounded_float(pixels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Float pixels with NaN/±inf replaced by the finite extremes and values clipped to
    ±:data:`FLOAT_LIMIT` (windows and histograms need finite numbers); others as they are."""
    if pixels.dtype.kind != "f":
        return pixels, []
    notices: list[str] = []
    finite = np.isfinite(pixels)
    if not finite.all():
        if not finite.any():
            return np.zeros(pixels.shape, dtype=pixels.dtype), ["no pixel has a finite value: shown black"]
        lo, hi = float(pixels[finite].min()), float(pixels[finite].max())
        count = int(pixels.size - finite.sum())
        pixels = np.nan_to_num(pixels, nan=lo, posinf=hi, neginf=lo)
        notices.append(f"{count:,} pixels without a finite value (NaN or infinity) shown as the extremes")
    if float(np.abs(pixels).max()) > FLOAT_LIMIT:
        pixels = np.clip(pixels, -FLOAT_LIMIT, FLOAT_LIMIT)
        notices.append(f"pixel values beyond ±{FLOAT_LIMIT:g} clipped")
    return pixels, notices


def _to_grey(pixels: np.ndarray, path: Path) -> tuple[np.ndarray, list[str]]:
    if pixels.ndim == 2:
        return pixels, []
    channels = pixels.shape[2]
    if channels == 1:
        return pixels[..., 0], []
    if channels in (3, 4):
        b, g, r = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        if np.array_equal(b, g) and np.array_equal(g, r):
            return np.ascontiguousarray(b), []  # grey stored as RGB: exact, no rounding
        return grey_from_colour(pixels, order="BGR"), ["colour image converted to grey"]
    raise CorruptImageError(path, f"unsupported channel count {channels}")


def load_raster(path: Path, data: bytes, fmt: str, *, max_pixels: int | None) -> XrayImage:
    """Decode PNG/JPEG/TIFF bytes into an XrayImage (MONOCHROME2, no spacing)."""
    import cv2

    width, height, mode, info, decoded_bytes = _header_size(path, data, fmt)
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            path, f"{width}×{height} = {width * height / 1e6:.0f} megapixels exceeds the "
                  f"{max_pixels / 1e6:.0f}-megapixel safety limit")
    if max_pixels is not None and decoded_bytes > BYTES_PER_PIXEL_LIMIT * max_pixels:
        raise ImageTooLargeError(path, f"the image decodes to {decoded_bytes / 1e6:.0f} MB, over the "
                                       f"{BYTES_PER_PIXEL_LIMIT * max_pixels / 1e6:.0f} MB safety limit")
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
    stored, float_notices = bounded_float(np.ascontiguousarray(stored))
    notices += float_notices
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
                 + [MetadataItem("", k, "", " ".join(v.split())[:200]) for k, v in info.items()],
        notices=notices,
    )
    presets = histogram_presets(stored, transform, inverted=False,
                                stored_range=image.stored_range(), bits_stored=bits)
    if stored.dtype == np.uint8:
        # 8-bit files are already windowed for display: show them exactly as stored.
        presets = {"as stored": Window(128.0, 256.0), **presets}
        image.default_preset = "as stored"
    else:
        image.default_preset = "auto"
    image.presets = presets
    return image

"""Writing files atomically: a crash or a full disk never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then os.replace over the target."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG bytes of a grey (H, W) or colour (H, W, 3 RGB) uint8/uint16 array."""
    import cv2

    array = np.ascontiguousarray(pixels)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", array)
    if not ok:
        raise OSError("PNG encoding failed")
    return buffer.tobytes()


def write_png(path: Path, pixels: np.ndarray) -> None:
    atomic_write_bytes(path, encode_png(pixels))

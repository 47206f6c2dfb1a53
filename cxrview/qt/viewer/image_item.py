"""The radiograph as a graphics item: an 8-bit array drawn through a lazily built pyramid.

Split out of the canvas: the item knows nothing of windows, tools or layers (they are its
children in the scene), only how to draw pixels crisply at any zoom.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter, QPixmap
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

log = logging.getLogger(__name__)


def pixels_to_qimage(pixels: np.ndarray) -> QImage:
    """Wrap an 8-bit grey array as a QImage that owns a copy of the data."""
    arr = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w = arr.shape
    image = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8)
    return image.copy()  # detach from the numpy buffer


class ImageItem(QGraphicsItem):
    """Draws the radiograph, picking an area-averaged pyramid level when zoomed out.

    Its local coordinates are image pixels; overlay layers are its children.
    """

    def __init__(self) -> None:
        super().__init__()
        self._levels: dict[int, QPixmap] = {}
        self._pixels: np.ndarray | None = None
        self._rect = QRectF()

    def set_pixels(self, pixels: np.ndarray) -> None:
        self.prepareGeometryChange()
        self._pixels = pixels
        h, w = pixels.shape
        self._rect = QRectF(0, 0, w, h)
        self._levels = {0: QPixmap.fromImage(pixels_to_qimage(pixels))}
        self.update()

    def clear(self) -> None:
        self.prepareGeometryChange()
        self._pixels = None
        self._levels = {}
        self._rect = QRectF()

    def boundingRect(self) -> QRectF:  # Qt override
        return QRectF(self._rect)

    def _level(self, k: int) -> QPixmap:
        pix = self._levels.get(k)
        if pix is None and self._pixels is not None:
            h, w = self._pixels.shape
            size = (max(1, w >> k), max(1, h >> k))
            small = cv2.resize(self._pixels, size, interpolation=cv2.INTER_AREA)
            pix = QPixmap.fromImage(pixels_to_qimage(small))
            self._levels[k] = pix
        return pix if pix is not None else QPixmap()

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        if self._pixels is None:
            return
        try:
            scale = math.hypot(painter.worldTransform().m11(), painter.worldTransform().m12())
            scale *= painter.device().devicePixelRatioF() if painter.device() else 1.0
            # Largest power-of-two reduction that keeps the level at or above screen size.
            k = 0
            while scale > 0 and scale * (2 ** (k + 1)) <= 1.0 and k < 8:
                k += 1
            pix = self._level(k)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 2.0)
            painter.drawPixmap(self._rect, pix, QRectF(pix.rect()))
        except Exception:  # a paint failure must not kill the view
            log.exception("image paint failed")

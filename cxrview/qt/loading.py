"""Image loading for the viewer: decode on a worker thread, cache, prefetch.

:func:`load_task` is an ordinary task body for :class:`cxrview.qt.workers.TaskRunner`
(the one way cxrview runs work off the GUI thread). Decoding on a pool thread keeps the
GUI responsive because the decoders used by :mod:`cxrview.core` release the GIL for the
heavy part (imagecodecs for JPEG / JPEG-LS / JPEG 2000, numpy for the display pipeline).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from cxrview.core import XrayImage, load_image, render_display
from cxrview.qt.workers import TaskCancelled, TaskState


@dataclass
class LoadedImage:
    """A decoded image plus its default 8-bit rendering, ready for the canvas."""

    image: XrayImage
    pixels: np.ndarray
    decode_ms: float


def load_task(state: TaskState, path: str) -> LoadedImage:
    """Worker body for the "load"/"prefetch" slots: decode ``path`` for display.

    Checks for cancellation between the steps so a superseded load stops early.
    """
    if state.cancelled:
        raise TaskCancelled(path)
    t0 = time.perf_counter()
    image = load_image(path)
    if state.cancelled:
        raise TaskCancelled(path)
    pixels = render_display(image)
    if state.cancelled:
        raise TaskCancelled(path)
    return LoadedImage(image, pixels, (time.perf_counter() - t0) * 1000.0)


class ImageCache:
    """A small LRU of decoded images keyed by path (paging back and forth is instant)."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, LoadedImage] = OrderedDict()

    def get(self, path: str) -> LoadedImage | None:
        item = self._items.get(path)
        if item is not None:
            self._items.move_to_end(path)
        return item

    def put(self, path: str, item: LoadedImage) -> None:
        self._items[path] = item
        self._items.move_to_end(path)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __contains__(self, path: object) -> bool:
        return path in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()

"""The loading task body (runs on a worker thread) and the image cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrview.core import ImageLoadError, load_image, render_display
from cxrview.qt.loading import ImageCache, LoadedImage, load_task
from cxrview.qt.workers import TaskCancelled, TaskState


def test_load_task_decodes_for_display(dicom_dir: Path) -> None:
    path = str(dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm")
    loaded = load_task(TaskState(), path)
    assert np.array_equal(loaded.pixels, render_display(loaded.image))
    assert np.array_equal(loaded.pixels, render_display(load_image(path)))
    assert loaded.pixels.dtype == np.uint8
    assert loaded.decode_ms > 0


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_load_task_raises_typed_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x13" * 40)
    with pytest.raises(ImageLoadError) as info:
        load_task(TaskState(), str(bad))
    assert str(info.value).startswith(str(bad) + ": ")
    with pytest.raises(ImageLoadError):
        load_task(TaskState(), str(tmp_path / "missing.png"))


def test_cancelled_state_never_returns(nih_dir: Path) -> None:
    state = TaskState()
    state.cancel()
    with pytest.raises(TaskCancelled):
        load_task(state, str(sorted(nih_dir.glob("*.png"))[0]))


def test_cancel_between_decode_and_render(monkeypatch, nih_dir: Path) -> None:
    """A load cancelled while decoding stops before rendering the display pixels."""
    import cxrview.qt.loading as loading

    state = TaskState()
    real_load = loading.load_image

    def load_then_cancel(path: str):
        image = real_load(path)
        state.cancel()
        return image

    def render_must_not_run(_image):
        raise AssertionError("render_display ran after cancellation")

    monkeypatch.setattr(loading, "load_image", load_then_cancel)
    monkeypatch.setattr(loading, "render_display", render_must_not_run)
    with pytest.raises(TaskCancelled):
        load_task(state, str(sorted(nih_dir.glob("*.png"))[0]))


def test_cache_is_lru() -> None:
    cache = ImageCache(capacity=2)
    items = {k: LoadedImage(None, np.zeros((1, 1), np.uint8), 0.0) for k in "abc"}  # type: ignore[arg-type]
    cache.put("a", items["a"])
    cache.put("b", items["b"])
    assert cache.get("a") is items["a"]  # a is now most recent
    cache.put("c", items["c"])
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2

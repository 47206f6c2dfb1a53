"""Decoding in the helper processes: results and typed errors survive the trip back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrview.core import ImageLoadError, render_display
from cxrview.qt.loading import ImageCache, LoadedImage, decoder_pool, load_task
from cxrview.qt.workers import TaskCancelled, TaskState


@pytest.fixture(scope="module")
def ready_pool(qapp):
    pool = decoder_pool()
    if pool.disabled:
        pytest.skip("decoder processes disabled")
    pool.warm_up()
    import time

    deadline = time.monotonic() + 30
    while not pool.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.ready()
    return pool


def test_decode_in_process_matches_in_thread(ready_pool, dicom_dir: Path) -> None:
    path = str(dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm")
    remote = load_task(TaskState(), path, ready_pool)
    local = load_task(TaskState(), path, None)
    assert np.array_equal(remote.pixels, local.pixels)
    assert np.array_equal(remote.pixels, render_display(remote.image))
    assert remote.image.spacing == local.image.spacing
    assert remote.decode_ms > 0


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_typed_error_crosses_process_boundary(ready_pool, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x13" * 40)
    with pytest.raises(ImageLoadError) as info:
        load_task(TaskState(), str(bad), ready_pool)
    assert str(info.value).startswith(str(bad) + ": ")
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageLoadError):
        load_task(TaskState(), str(missing), ready_pool)


def test_cancelled_state_never_returns(ready_pool, nih_dir: Path) -> None:
    state = TaskState()
    state.cancel()
    with pytest.raises(TaskCancelled):
        load_task(state, str(sorted(nih_dir.glob("*.png"))[0]), ready_pool)


def test_cache_is_lru() -> None:
    cache = ImageCache(capacity=2)
    items = {k: LoadedImage(None, np.zeros((1, 1), np.uint8), 0.0) for k in "abc"}  # type: ignore[arg-type]
    cache.put("a", items["a"])
    cache.put("b", items["b"])
    assert cache.get("a") is items["a"]  # a is now most recent
    cache.put("c", items["c"])
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2

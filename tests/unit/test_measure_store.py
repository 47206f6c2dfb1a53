"""Reading marks: what they measure, the per-user store (survives a restart), undo."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from cxrview.core import load_image
from cxrview.core.annotation_store import AnnotationStore, AnnotationStoreError
from cxrview.core.history import AddMarks, MarkHistory, RemoveMarks, ReplaceMark
from cxrview.core.measure import Annotation, angle_degrees, is_degenerate, measure, roi_stats
from tests.unit.dicom_factory import make_dicom, phantom


@pytest.fixture
def calibrated(tmp_path: Path):
    pixels = np.full((100, 200), 1000, dtype=np.uint16)
    pixels[20:40, 50:90] = 3000
    return load_image(make_dicom(tmp_path / "c.dcm", pixels, PixelSpacing=[0.5, 0.25], RescaleSlope=2,
                                 RescaleIntercept=-100))


def test_distance_angle_and_ctr(calibrated) -> None:
    d = measure(Annotation("distance", ((0, 0), (40, 0))), calibrated)
    assert d.values["length"] == pytest.approx(10.0) and d.label == "10.0 mm"
    assert angle_degrees((10, 0), (0, 0), (0, 10)) == pytest.approx(90.0)
    a = measure(Annotation("angle", ((10, 0), (0, 0), (10, 10))), calibrated)
    assert a.label == "45.0°"
    ctr = measure(Annotation("ctr", ((60, 50), (110, 52), (20, 70), (180, 70))), calibrated)
    assert ctr.values["ratio"] == pytest.approx(50 / 160) and ctr.label == "CTR 0.31"
    assert ctr.values["heart"] == pytest.approx(50 * 0.25)


def test_roi_stats_in_modality_units_and_mm2(calibrated, tmp_path: Path) -> None:
    stats = roi_stats(calibrated, "rect", (50, 20), (90, 40))
    assert stats["pixels"] == 800 and stats["mean"] == pytest.approx(3000 * 2 - 100)
    assert stats["sd"] == pytest.approx(0.0) and stats["area_mm2"] == pytest.approx(800 * 0.5 * 0.25)
    ellipse = roi_stats(calibrated, "ellipse", (50, 20), (90, 40))
    assert ellipse["pixels"] == pytest.approx(math.pi * 20 * 10, rel=0.03)
    quarter = roi_stats(calibrated, "rect", (70, 30), (110, 50))  # a quarter in the bright block
    assert quarter["mean"] == pytest.approx((0.25 * 3000 + 0.75 * 1000) * 2 - 100) and quarter["sd"] > 0
    png = load_image(make_dicom(tmp_path / "u.dcm", phantom()))
    label = measure(Annotation("rect", ((0, 0), (10, 10))), png).label
    assert "px² (uncalibrated)" in label


def test_annotations_validate_and_degenerate_clicks() -> None:
    with pytest.raises(ValueError):
        Annotation("distance", ((0, 0),))
    with pytest.raises(ValueError):
        Annotation("blob", ((0, 0),))
    with pytest.raises(ValueError):
        Annotation("distance", ((0, 0), (math.nan, 1)))
    assert is_degenerate(Annotation("distance", ((5, 5), (5.2, 5.1))))
    assert not is_degenerate(Annotation("distance", ((5, 5), (9, 5))))
    assert is_degenerate(Annotation("text", ((1, 1),), text="  "))


def test_store_survives_a_restart_and_keeps_order(tmp_path: Path) -> None:
    path = tmp_path / "store" / "annotations.sqlite"
    store = AnnotationStore(path)
    marks = [Annotation("distance", ((0, 0), (10, 0))), Annotation("text", ((3, 3),), text="nodule?"),
             Annotation("angle", ((1, 0), (0, 0), (0, 1)))]
    for mark in marks:
        store.put("px1-a", [mark], image_path="/cd/IM1")
    store.put("px1-b", [Annotation("arrow", ((0, 0), (5, 5)), text="here")])
    store.close()
    again = AnnotationStore(path)
    assert again.annotations("px1-a") == marks
    assert [a.kind for a in again.annotations("px1-b")] == ["arrow"]
    assert again.count() == 4


def test_history_undo_redo_restores_exact_state(tmp_path: Path) -> None:
    store = AnnotationStore(tmp_path / "a.sqlite")
    history = MarkHistory(store)
    heard: list[str] = []
    history.add_listener(lambda command: heard.append(command.content_hash))
    first, second = Annotation("distance", ((0, 0), (10, 0))), Annotation("rect", ((0, 0), (4, 4)))
    history.push(AddMarks("px1-a", [first]))
    history.push(AddMarks("px1-a", [second]))
    history.push(RemoveMarks("px1-a", [first]))
    assert store.annotations("px1-a") == [second]
    history.undo()
    assert store.annotations("px1-a") == [first, second]  # back in its old place
    moved = first.moved(5, 5)
    history.push(ReplaceMark("px1-a", first, moved))
    assert store.annotations("px1-a") == [moved, second]
    assert not history.can_redo()
    history.undo()
    history.undo()
    assert store.annotations("px1-a") == [first]
    history.redo()
    assert store.annotations("px1-a") == [first, second]
    history.redo()
    assert store.annotations("px1-a") == [moved, second]
    assert heard and set(heard) == {"px1-a"}


def test_unwritable_store_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AnnotationStoreError) as info:
        AnnotationStore(blocker / "annotations.sqlite")
    assert "\n" not in str(info.value)
    store = AnnotationStore(tmp_path / "ok.sqlite")
    other = sqlite3.connect(tmp_path / "ok.sqlite", timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    store._conn.execute("PRAGMA busy_timeout=10")
    with pytest.raises(AnnotationStoreError):
        store.put("px1-x", [Annotation("distance", ((0, 0), (3, 0)))])
    other.rollback()
    assert store.annotations("px1-x") == []

"""The study browser: a generated tree of DICOMs and a DICOMDIR written with pydicom's FileSet
build the right patients → studies → series → images, on the window's task runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrview.qt.study import StudyController
from cxrview.qt.workers import TaskRunner
from tests.unit.study_factory import write_cd, write_tree

LOAD_TIMEOUT = 15000
EXPECTED = [
    ("Alpha, Ann (ID A1)", [
        ("2024-03-01 Chest 2024", [("CR #1 PA", 1), ("CR #2 LL", 1)]),
        ("2023-01-10 Chest 2023", [("CR #1 PA", 1)]),
        ("2022-05-05 Chest 2022", [("CR #1 AP", 1)]),
    ]),
    ("Beta, Bob (ID B2)", [("2024-01-15 Chest", [("CR #3 PA", 2)])]),
]


@pytest.fixture
def cd(tmp_path: Path) -> Path:
    write_tree(tmp_path / "src")
    return write_cd(tmp_path / "cd", tmp_path / "src")


def test_folder_tree_without_top_level_images_opens_from_its_scan(qtbot, window, tmp_path: Path) -> None:
    write_tree(tmp_path / "films")
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        assert window.open_paths([str(tmp_path / "films")]) == 0  # nothing at the top: the scan lists them
    assert window.studies.dock.structure() == EXPECTED
    assert window.file_dock.count() == 6
    assert "2 patients, 4 studies, 6 images" in window.studies.dock.summary.text()
    # Activating a series pages through it; an image shows it.
    dock = window.studies.dock
    series = dock.tree.topLevelItem(0).child(0).child(1)  # A1, 2024, the lateral
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT) as shown:
        dock.tree.itemActivated.emit(series, 0)
    assert window.file_dock.count() == 1 and shown.args[0].endswith("A1_20240301_2_1.dcm")


@pytest.mark.parametrize("open_file", [True, False], ids=["DICOMDIR file", "CD folder"])
def test_dicomdir_builds_the_tree(qtbot, window, cd: Path, open_file: bool) -> None:
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        window.open_paths([str(cd if open_file else cd.parent)])
    assert window.studies.dock.structure() == EXPECTED
    assert window.canvas.image() is not None and window.banner.isHidden()
    assert all(Path(p).name.startswith("IM") for p in window.file_dock.paths())


def test_a_folder_without_images_says_so_after_searching(qtbot, window, tmp_path: Path) -> None:
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "empty" / "deeper" / "notes.txt").write_text("x")
    with qtbot.waitSignal(window.studies.scanned, timeout=LOAD_TIMEOUT):
        window.open_paths([str(tmp_path / "empty")])
    assert "No images found" in window.banner.text()


def test_scan_is_latest_wins_and_cancellable(qtbot, tmp_path: Path) -> None:
    from PySide6.QtWidgets import QStatusBar

    from cxrview.qt.notify import ErrorBanner, Notifier

    write_tree(tmp_path / "a")
    write_tree(tmp_path / "b", nested=False)
    runner = TaskRunner()
    banner, status = ErrorBanner(), QStatusBar()
    qtbot.addWidget(banner)
    qtbot.addWidget(status)
    studies = StudyController(runner, Notifier(banner, status))
    qtbot.addWidget(studies.dock)
    delivered: list[str] = []
    studies.scanned.connect(lambda root, _paths: delivered.append(root))
    first = studies.scan(str(tmp_path / "a"))
    with qtbot.waitSignal(studies.scanned, timeout=LOAD_TIMEOUT):
        studies.scan(str(tmp_path / "b"))
    qtbot.waitUntil(first.is_done, timeout=LOAD_TIMEOUT)
    assert delivered == [str(tmp_path / "b")]  # the superseded scan never delivers
    assert studies.dock.image_count() == 6
    current = next(e for e in studies.entries if e.study_date == "20240301" and e.view_position == "PA")
    prior = studies.prior_of(current.path)
    assert prior is not None and prior.study_date == "20230110"
    assert [e.patient_key for e in studies.same_patient_of(current.path)] == ["id:A1"] * 4
    handle = studies.scan(str(tmp_path / "a"))
    studies.dock.cancel.click()
    qtbot.waitUntil(handle.is_done, timeout=LOAD_TIMEOUT)
    assert runner.shutdown()


def test_brackets_step_through_the_patients_films_by_patient_id(qtbot, window, tmp_path: Path) -> None:
    """[ and ] follow DICOM PatientID (oldest → newest), whatever the folders or names say."""
    write_tree(tmp_path / "films")
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        window.open_paths([str(tmp_path / "films")])
    oldest = next(e for e in window.studies.entries if e.study_date == "20220505")
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        window.show_path(oldest.path)
    dates = []
    for _ in range(3):
        with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT) as shown:
            window.review.actions["next_follow_up"].trigger()
        dates.append(window.studies.entry(shown.args[0]).study_date)
    assert dates[0] == "20230110" and dates[1:] == ["20240301", "20240301"]
    assert all(window.studies.entry(p).patient_key == "id:A1" for p in [window.shown_path()])

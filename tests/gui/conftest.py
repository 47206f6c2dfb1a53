"""GUI test fixtures: offscreen Qt, isolated QSettings, no leaked worker threads."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("CXRVIEW_AI", "0")  # AI findings run only where a test turns them on

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QSettings, QThreadPool

# nih_dir / dicom_dir come from tests/conftest.py (one definition of where ../shared/data is).


@pytest.fixture(autouse=True)
def isolated_settings(qapp, tmp_path: Path) -> Iterator[Path]:
    """Every test gets its own empty INI settings directory (never the user's)."""
    QCoreApplication.setOrganizationName("cxrview-test")
    QCoreApplication.setApplicationName("cxrview")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    settings_dir = tmp_path / "settings"
    settings_dir.mkdir()
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(settings_dir))
    yield settings_dir


@pytest.fixture(autouse=True)
def isolated_prediction_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Predictions cached by a test go to its own folder, never the user's cache."""
    folder = tmp_path / "prediction-cache"
    monkeypatch.setenv("CXRVIEW_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True)
def isolated_workspaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Review databases of opened folders go to the test's folder, never next to shared data."""
    folder = tmp_path / "workspaces"
    monkeypatch.setenv("CXRVIEW_WORKSPACE_DIR", str(folder))
    monkeypatch.setenv("CXRVIEW_REGISTRY_DIR", str(tmp_path / "registry"))  # never the user's models
    monkeypatch.setenv("CXRVIEW_ANNOTATIONS_DIR", str(tmp_path / "marks"))  # never the user's marks
    return folder


@pytest.fixture(autouse=True)
def no_leaked_workers(qapp) -> Iterator[None]:
    """Fail a test that leaves pool threads busy (windows must cancel their work)."""
    yield
    pool = QThreadPool.globalInstance()
    if not pool.waitForDone(5000):
        pytest.fail(f"test left {pool.activeThreadCount()} worker thread(s) running")


@pytest.fixture
def window(qtbot):
    """A shown, active main window with the dark theme; closed (work cancelled) after."""
    from cxrview.qt.main_window import MainWindow
    from cxrview.qt.theme import apply_theme

    apply_theme(QCoreApplication.instance(), "dark")  # type: ignore[arg-type]
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    qtbot.waitUntil(lambda: QCoreApplication.instance().activeWindow() is win, timeout=3000)
    yield win
    win.close()


@pytest.fixture
def app_heap():
    """The heap as the running app has it: earlier tests' garbage collected, the long-lived
    objects frozen (``freeze_long_lived_heap``, called by the app after start-up and model
    loading), so event-loop timings measure our code rather than a full collection walking
    400k objects left behind by the tests before. Unfrozen afterwards."""
    import gc

    from cxrview.qt.app import freeze_long_lived_heap

    gc.collect()
    freeze_long_lived_heap()
    yield
    gc.unfreeze()


@pytest.fixture
def nih_review(qtbot, window, nih_dir: Path, tmp_path: Path):
    """The window reviewing a workspace imported from the NIH CSVs, the first image shown."""
    from cxrview.core.nih_import import import_nih
    from cxrview.core.workspace import Workspace
    from tests.conftest import SHARED_DATA

    path = tmp_path / "review.sqlite"
    with Workspace(path, create=True, images_root=nih_dir) as ws:
        import_nih(ws, SHARED_DATA / "nih" / "Data_Entry_2017_v2020.csv.gz", nih_dir,
                   SHARED_DATA / "nih" / "BBox_List_2017.csv.gz")
    assert window.review.open_workspace(path)
    window.review.dock.auto_advance.setChecked(True)
    with qtbot.waitSignal(window.image_shown, timeout=20000):
        window.review.apply_query(window.review.worklist.query())
    return window, path

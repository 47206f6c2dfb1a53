"""Each GUI part works from the collaborators it is given, without a main window (ADR 0010)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtWidgets import QMainWindow, QStatusBar

from cxrview.qt.actions import ActionSet, ActionSpec, build_menu_bar
from cxrview.qt.ai.controller import ModelChoice
from cxrview.qt.batch import BatchScorer
from cxrview.qt.docks.file_list import FileListDock
from cxrview.qt.notify import ErrorBanner, Notifier
from cxrview.qt.review import ReviewController
from cxrview.qt.settings import AppSettings
from cxrview.qt.viewer.canvas import ImageCanvas
from cxrview.qt.workers import TaskRunner


@pytest.fixture
def parts(qtbot):
    status, banner, files, canvas = QStatusBar(), ErrorBanner(), FileListDock(), ImageCanvas()
    for widget in (status, banner, files, canvas):
        qtbot.addWidget(widget)
    return SimpleNamespace(status=status, files=files, canvas=canvas, runner=TaskRunner(),
                           notifier=Notifier(banner, status), settings=AppSettings())


def test_batch_scorer_from_its_collaborators(parts) -> None:
    scorer = BatchScorer(parts.runner, parts.files, parts.settings, parts.notifier,
                         models=lambda: ModelChoice("no-such-bundle", None, "cpu"), workspace=lambda: None)
    scorer.action.trigger()  # nothing listed: it says so and starts nothing
    assert "nothing to score" in parts.status.currentMessage()
    assert parts.runner.current("batch") is None
    assert [section for section, _ in scorer.actions.entries()] == ["model.batch", "model.batch"]


def test_review_controller_from_its_collaborators(parts, nih_dir: Path) -> None:
    shown = SimpleNamespace(shown=None, output_withheld=lambda: False)  # no AI output on screen
    review = ReviewController(parts.canvas, parts.files, parts.settings, parts.notifier, model_output=shown,
                              classifier="no-such-bundle")
    worklists: list[list[str]] = []
    review.worklist_ready.connect(worklists.append)
    image = str(sorted(nih_dir.glob("*.png"))[0])
    review.attach_files([image])  # the folder's default workspace
    assert review.workspace_path() is not None
    review.apply_query(review.worklist.query())
    assert worklists == [[image]]  # the window would put them into the file list
    review.accept_model_box()
    assert "Select a finding with a model box first." in parts.status.currentMessage()
    review.close()


def test_menu_bar_refuses_a_section_the_layout_lacks(qtbot) -> None:
    host = QMainWindow()
    qtbot.addWidget(host)
    actions = ActionSet(host, [ActionSpec("stray", "Stray", "nowhere.section", lambda: None)])
    with pytest.raises(ValueError, match=r"nowhere\.section"):
        build_menu_bar(host.menuBar(), host, actions.entries())

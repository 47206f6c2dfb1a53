"""Every file in pydicom's own test data that pydicom decodes also opens in the viewer."""

from __future__ import annotations

import pytest

from tests.pydicom_corpus import TEST_FILES, decodable_files

LOAD_TIMEOUT = 60_000


@pytest.mark.slow
def test_every_image_pydicom_decodes_is_shown_by_the_viewer(qtbot, window) -> None:
    files = [str(p) for p in decodable_files()]
    assert len(files) >= 80, f"only {len(files)} decodable files found under {TEST_FILES}"
    assert window.open_paths(files) == len(files)
    failures = []
    for row, path in enumerate(files):
        window.file_dock.set_current_row(row)
        qtbot.waitUntil(lambda p=path: window.shown_path() == p or bool(window.file_dock.error_for(p)),
                        timeout=LOAD_TIMEOUT)
        error = window.file_dock.error_for(path)
        if error:
            failures.append(f"{path}: {error}")
        elif window.canvas.image() is None:
            failures.append(f"{path}: nothing on the canvas")
    assert not failures, "\n".join(failures)

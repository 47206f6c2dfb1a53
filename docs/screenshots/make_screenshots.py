"""Stage the issue-15 screenshots (run under Xvfb by ``../shared/tools/screenshot.sh``).

    python docs/screenshots/make_screenshots.py browser|compare WORKDIR
    python docs/screenshots/make_screenshots.py report OUT.png WORKDIR

Builds a small DICOM CD from real NIH films (two patients, three studies of one of them, a
lateral) with pydicom's FileSet, then shows the study browser on its DICOMDIR, or the 1×2
"compare with prior" hanging with a linked window. ``report`` writes the findings report's
page as a PNG (offscreen). Settings, workspaces and marks go to WORKDIR, never the user's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
NIH = REPO.parent / "shared" / "data" / "nih" / "images_256"
FILMS = {("A1", "20240301", 1): "00029774_006.png", ("A1", "20240301", 2): "00029774_005.png",
         ("A1", "20230110", 1): "00029774_003.png", ("A1", "20220505", 1): "00029774_000.png",
         ("B2", "20240115", 3): "00029548_010.png"}


def build_cd(work: Path) -> Path:
    import numpy as np
    from PIL import Image
    from pydicom.uid import generate_uid

    from tests.unit.dicom_factory import make_dicom
    from tests.unit.study_factory import TREE, write_cd

    src = work / "src"
    if (work / "cd" / "DICOMDIR").is_file():
        return work / "cd" / "DICOMDIR"
    for patient, name, date, description, series in TREE:
        study_uid = generate_uid()
        for number, view, instances in series:
            series_uid = generate_uid()
            for instance in instances:
                png = FILMS.get((patient, date, number), "00029548_011.png")
                pixels = np.asarray(Image.open(NIH / png).convert("L"), dtype=np.uint8)
                folder = src / patient / date
                folder.mkdir(parents=True, exist_ok=True)
                make_dicom(folder / f"{number}_{instance}.dcm", pixels, PatientID=patient, PatientName=name,
                           StudyDate=date, StudyTime="101500", StudyDescription=description,
                           StudyInstanceUID=study_uid, StudyID="1", AccessionNumber="ACC1",
                           SeriesInstanceUID=series_uid, SeriesNumber=number, ViewPosition=view,
                           InstanceNumber=instance, PatientOrientation=["L", "F"], PixelSpacing=[0.7, 0.7],
                           LossyImageCompression="01", LossyImageCompressionRatio="10")
    return write_cd(work / "cd", src)


def isolate(work: Path) -> None:
    os.environ["XDG_DATA_HOME"] = str(work / "data")
    os.environ["XDG_CONFIG_HOME"] = str(work / "config")
    os.environ["CXRVIEW_AI"] = "0"


def window_on(mode: str, work: Path) -> int:
    from PySide6.QtCore import QTimer

    from cxrview.core import Window
    from cxrview.qt.app import ensure_app
    from cxrview.qt.main_window import MainWindow
    from cxrview.qt.theme import apply_theme

    dicomdir = build_cd(work)
    app = ensure_app()
    apply_theme(app, "dark")
    window = MainWindow()
    window.resize(1580, 960)
    window.move(0, 0)
    window.show()
    shot = os.environ.get("CXRVIEW_SHOT")

    def grab() -> None:  # the window's own picture (atomically), then quit
        if shot:
            window.grab().save(shot + ".tmp.png")
            os.replace(shot + ".tmp.png", shot)
            app.quit()

    def scanned(*_args: object) -> None:  # each step waits for the previous one's signal
        if mode == "browser":
            window.studies.dock.raise_()
            window.studies.dock.tree.setCurrentItem(window.studies.dock.tree.topLevelItem(0))
            QTimer.singleShot(1500, grab)
            return
        current = next(e for e in window.studies.entries
                       if e.study_date == "20240301" and e.view_position == "PA")
        window.image_shown.connect(lambda path: compare() if path == current.path else None)
        window.show_path(current.path)

    def compare() -> None:
        window.viewports.side_loaded.connect(lambda *_: QTimer.singleShot(300, linked_window))
        window.viewports.compare_with_prior()

    def linked_window() -> None:
        window.canvas.set_window(Window(120.0, 180.0))  # the prior follows (linked)
        QTimer.singleShot(1500, grab)

    window.studies.scanned.connect(lambda *_: QTimer.singleShot(500, scanned))
    window.open_paths([str(dicomdir)])
    return int(app.exec())


def report(out: Path, work: Path) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication, QStatusBar

    from cxrview.core import load_image
    from cxrview.qt.export_view import ExportController, render_report_page
    from cxrview.qt.notify import ErrorBanner, Notifier
    from cxrview.qt.viewer.canvas import ImageCanvas

    dicomdir = build_cd(work)
    app = QApplication.instance() or QApplication([])
    canvas = ImageCanvas()
    canvas.resize(900, 900)
    image = load_image(next(p for p in sorted(dicomdir.parent.rglob("IM*"))))
    canvas.set_image(image)
    canvas.add_measurement((60.0, 200.0), (196.0, 200.0))
    canvas.add_mark(__import__("cxrview.core.measure", fromlist=["Annotation"]).Annotation(
        "ctr", ((95.0, 170.0), (165.0, 170.0), (40.0, 190.0), (220.0, 190.0))))
    shown = {"withheld": False, "forced": False, "findings": {
        "Cardiomegaly": {"validated": True, "positive": True, "probability": 0.72, "sensitivity": 0.81,
                         "sensitivity_ci": [0.7, 0.89], "specificity": 0.9, "specificity_ci": [0.88, 0.92]},
        "Effusion": {"validated": True, "positive": False, "probability": 0.12, "sensitivity": 0.77,
                     "sensitivity_ci": [0.7, 0.83], "specificity": 0.9, "specificity_ci": [0.89, 0.91]},
        "Hernia": {"validated": False, "positive": False, "probability": 0.02}}}
    exports = ExportController(canvas, lambda: [canvas], Notifier(ErrorBanner(), QStatusBar()),
                               shown=lambda: shown)
    html, pictures = exports.report_html(impression="Enlarged cardiac silhouette (CTR by hand 0.39). "
                                                    "No effusion.")
    exports.export_report(work / "report.pdf", impression="Enlarged cardiac silhouette.")
    page = render_report_page(html, pictures, width=900)
    page.save(str(out))
    del app


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "report":
        work = Path(sys.argv[3])
        isolate(work)
        report(Path(sys.argv[2]), work)
    else:
        work = Path(sys.argv[2])
        isolate(work)
        sys.exit(window_on(mode, work))

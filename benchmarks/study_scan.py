"""Scanning a tree of DICOM headers into the study browser: time, memory, event-loop stalls.

    .venv/bin/python benchmarks/study_scan.py [--files 5000] [--patients 250] [--keep DIR]

Writes a tree of small DICOMs (patients / studies / series, 16×16 pixels so the disk stays
small), then opens it in the real main window's study controller and measures: the scan's
wall time, the process's peak RSS, and the longest gap between two ticks of a 5 ms timer on
the GUI thread while the scan runs and the tree is built (the issue's bar: never > 50 ms).
On a loaded machine a wall-clock gap also counts time the process was not scheduled at all,
so the GUI thread's own CPU time between ticks (``longest_gui_cpu_ms``) is reported beside it:
that is the blocking our code causes. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_tree(root: Path, files: int, patients: int) -> None:
    import numpy as np
    from pydicom.uid import generate_uid

    from tests.unit.dicom_factory import make_dicom

    pixels = np.zeros((16, 16), dtype=np.uint16)
    per_patient = max(files // patients, 1)
    n = 0
    for p in range(patients):
        study_uid = ""
        series_uid = ""
        for i in range(per_patient):
            if n >= files:
                return
            if i % 4 == 0:
                study_uid = generate_uid()
            if i % 2 == 0:
                series_uid = generate_uid()
            folder = root / f"P{p:04d}" / study_uid[-8:]
            folder.mkdir(parents=True, exist_ok=True)
            make_dicom(folder / f"{i:03d}.dcm", pixels, PatientID=f"P{p:04d}", PatientName=f"Test^{p}",
                       StudyInstanceUID=study_uid, StudyDate=f"20{10 + i // 4:02d}0101", StudyTime="120000",
                       SeriesInstanceUID=series_uid, SeriesNumber=i // 2 % 2 + 1, InstanceNumber=i,
                       ViewPosition="PA" if i % 2 == 0 else "LL")
            n += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--patients", type=int, default=250)
    parser.add_argument("--keep", type=Path, default=None, help="write (or reuse) the tree here")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="cxrview-scan-"))
    if not any(root.rglob("*.dcm")):
        t0 = time.perf_counter()
        write_tree(root, args.files, args.patients)
        print(f"wrote {args.files} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QStatusBar

    from cxrview.qt.app import ensure_app, freeze_long_lived_heap
    from cxrview.qt.notify import ErrorBanner, Notifier
    from cxrview.qt.study import StudyController
    from cxrview.qt.workers import TaskRunner

    app = ensure_app()
    runner = TaskRunner()
    studies = StudyController(runner, Notifier(ErrorBanner(), QStatusBar()))
    studies.dock.resize(400, 800)
    studies.dock.show()
    freeze_long_lived_heap()  # as the app does once its window is up (cxrview.qt.app)
    gaps: list[float] = []
    cpu_gaps: list[float] = []
    last = [time.perf_counter(), time.thread_time()]

    def tick() -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        gaps.append((now - last[0]) * 1000)
        cpu_gaps.append((cpu - last[1]) * 1000)  # GUI-thread CPU between ticks: our own blocking work
        last[0], last[1] = now, cpu

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    loop = QEventLoop()
    result: dict[str, object] = {}
    # Quit a little after the end, so the gap the last step causes (building and expanding the
    # tree happens in the slot that emits `scanned`) is measured by the next tick too.
    studies.scanned.connect(lambda _root, paths: (result.update(images=len(paths)),
                                                  QTimer.singleShot(50, loop.quit)))
    start = time.perf_counter()
    last[0], last[1] = start, time.thread_time()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    timer.start()
    studies.scan(str(root))
    loop.exec()
    elapsed = time.perf_counter() - start
    timer.stop()
    runner.shutdown()
    result.update(files=args.files, seconds=round(elapsed, 2), files_per_s=round(args.files / elapsed),
                  peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  cpu_seconds=round(resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu0, 2),
                  longest_gui_stall_ms=round(max(gaps, default=0.0), 1),
                  stalls_over_50ms=sum(g > 50 for g in gaps),
                  longest_gui_cpu_ms=round(max(cpu_gaps, default=0.0), 1),
                  gui_cpu_over_50ms=sum(g > 50 for g in cpu_gaps),
                  patients=len(studies.dock.structure()))
    print(json.dumps(result))
    del app


if __name__ == "__main__":
    main()

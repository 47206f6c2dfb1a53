"""Time from "open requested" to the first paint of a radiograph in the real main window.

    .venv/bin/python benchmarks/first_paint.py [PATH] [--repeat N]

Runs offscreen (set QT_QPA_PLATFORM=xcb to watch it). Reports the first open in a
fresh process (imports and decoder plugins warm up here) and re-opens with the
image cache cleared (what paging to a not-yet-prefetched image costs), as
measured by MainWindow.first_paint: request → decode on the worker → QPixmap on
the GUI thread → painted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/dicom/chest_cr_mono1_15bit_jpeg2000_lossy.dcm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()

    from PySide6.QtCore import QEventLoop

    from cxrview.qt.app import ensure_app
    from cxrview.qt.main_window import MainWindow

    ensure_app()
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    path = str(args.path)
    times: list[float] = []

    def open_and_wait() -> None:
        loop = QEventLoop()

        def done(painted: str, ms: float) -> None:
            if painted == path:
                times.append(ms)
                loop.quit()

        window.first_paint.connect(done)
        window.open_paths([path])
        loop.exec()
        window.first_paint.disconnect(done)

    open_and_wait()
    cold_process_ms = (time.perf_counter() - started) * 1000
    for _ in range(args.repeat):
        window.cache.clear()
        open_and_wait()
    window.close()
    print(f"{args.path.name}")
    print(f"  first open in a fresh process: {times[0]:.0f} ms request→paint "
          f"({cold_process_ms:.0f} ms since process start, Qt + window creation included)")
    print(f"  re-open, cache cleared: median {statistics.median(times[1:]):.0f} ms "
          f"(min {min(times[1:]):.0f}, max {max(times[1:]):.0f}, n={len(times) - 1})")


if __name__ == "__main__":
    main()

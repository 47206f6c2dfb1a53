#!/usr/bin/env python3
"""Set up and run cxrview with nothing but Python 3.11 installed.

    python3 dev.py run [PATH ...]   create .venv if needed, install, launch the app
    python3 dev.py test [PYTEST ARGS]   create .venv if needed, install, run the test suite
    python3 dev.py check   create .venv if needed, install, run ruff, mypy, the import contracts
                           and the licence check
    python3 dev.py licences   check the runtime dependencies' licences and regenerate
                              docs/THIRD_PARTY_LICENSES.md (ADR 0012)

Installation is skipped when pyproject.toml has not changed since the last one
(a stamp file in .venv), so repeated runs start immediately.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".cxrview-installed"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
# What Qt's xcb platform plugin needs on Debian beyond a headless image.
XCB_PACKAGES = ["libxcb-cursor0", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1",
                "libxcb-randr0", "libxcb-render-util0", "libxcb-shape0", "libxcb-xinerama0",
                "libxcb-xkb1", "libxkbcommon-x11-0", "libegl1", "libgl1", "libfontconfig1",
                "libdbus-1-3"]


def _say(message: str) -> None:
    print(f"[dev] {message}", file=sys.stderr, flush=True)


def _requirements_fingerprint() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv() -> None:
    """Create .venv and install the project (editable) with the ML and dev extras."""
    if not PYTHON.exists():
        _say(f"creating virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    fingerprint = _requirements_fingerprint()
    if STAMP.exists() and STAMP.read_text().strip() == fingerprint:
        return
    _say("installing cxrview and its dependencies (first run takes a few minutes)")
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                   check=False)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[ml,dev]"],
                   check=True)
    STAMP.write_text(fingerprint)


def ensure_display_libraries() -> None:
    """On Linux with a real display, install Qt's xcb libraries if they are missing (root only)."""
    if not sys.platform.startswith("linux") or not os.environ.get("DISPLAY"):
        return
    if os.environ.get("QT_QPA_PLATFORM", "xcb") != "xcb":
        return
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        libs = subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout
    except OSError:
        return
    if "libxcb-cursor.so.0" in libs:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _say("installing the X11 libraries Qt needs (apt-get)")
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", *XCB_PACKAGES], check=False,
                       capture_output=True)
    else:
        _say("Qt needs libxcb-cursor0 and friends: sudo apt-get install " + " ".join(XCB_PACKAGES))


# The static checks .ci/run runs before the tests (the same as the pre-commit hooks).
CHECKS = (
    ("ruff", ["ruff", "check", "cxrview", "training", "tests", "benchmarks", "dev.py"]),
    ("mypy", ["mypy"]),  # what to check and how strictly: [tool.mypy] in pyproject.toml
    ("import contracts", ["lint-imports"]),  # [tool.importlinter] in pyproject.toml
    # Runtime dependencies' licences against the allow-list in cxrview/licences.py (ADR 0012); ~1 s.
    ("licences", ["python", "-m", "cxrview.licences", "--quiet"]),
)
THIRD_PARTY_REPORT = ROOT / "docs" / "THIRD_PARTY_LICENSES.md"


def run_checks() -> int:
    """Run every check (all of them, so one report shows every problem); 1 if any failed."""
    failed = []
    for name, (tool, *args) in CHECKS:
        _say(f"{name}: {' '.join([tool, *args])}")
        if subprocess.call([str(BIN / tool), *args], cwd=ROOT) != 0:
            failed.append(name)
    if failed:
        _say("failed: " + ", ".join(failed))
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "check", "licences"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_venv()
    if command == "check":
        return run_checks()
    if command == "licences":
        return subprocess.call([str(PYTHON), "-m", "cxrview.licences", "--write", str(THIRD_PARTY_REPORT),
                                *rest], cwd=ROOT)
    if command == "run":
        ensure_display_libraries()
        return subprocess.call([str(PYTHON), "-m", "cxrview", *rest])
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    return subprocess.call([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

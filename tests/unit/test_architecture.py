"""The core packages stay importable without Qt and without torch (fast CLI, headless use)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

QT_FREE_PACKAGES = ["cxrview.core", "cxrview.inference", "training"]
QT_MODULE_PREFIXES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy")


def _modules_under(package: str) -> list[str]:
    root = REPO_ROOT / Path(*package.split("."))
    if not root.is_dir():
        return []
    return [".".join(p.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
            for p in sorted(root.rglob("*.py"))]


def _loaded_after_import(modules: list[str], extra: str = "") -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    if name.endswith('__main__'): continue\n"
        "    importlib.import_module(name)\n"
        f"{extra}\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_core_packages_never_import_qt() -> None:
    modules = [m for pkg in QT_FREE_PACKAGES for m in _modules_under(pkg)]
    assert "cxrview.core.loader" in modules  # the walk really found the core
    loaded = _loaded_after_import(modules)
    leaked = sorted(m for m in loaded if m.startswith(QT_MODULE_PREFIXES))
    assert not leaked, f"Qt imported by Qt-free packages: {leaked[:5]}"


def test_cli_info_imports_neither_qt_nor_torch(dicom_dir: Path) -> None:
    path = dicom_dir / "chest_cr_mono1_15bit_jpeg2000_lossy.dcm"
    extra = ("import contextlib, io\nfrom cxrview.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             f"    assert main(['info', {str(path)!r}, '--json']) == 0")
    loaded = _loaded_after_import(["cxrview.cli"], extra)
    assert not any(m.startswith(QT_MODULE_PREFIXES) for m in loaded)
    assert "torch" not in loaded


def test_qt_imports_only_inside_cxrview_qt() -> None:
    offenders = []
    for path in (REPO_ROOT / "cxrview").rglob("*.py"):
        if "qt" in path.relative_to(REPO_ROOT / "cxrview").parts[:1]:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and any(
                    q in stripped.split()[1] for q in QT_MODULE_PREFIXES):
                if "cxrview.qt" not in stripped:
                    offenders.append(f"{path}: {stripped}")
    assert not offenders, offenders


def test_import_contracts_hold() -> None:
    """The layering contracts of pyproject.toml ([tool.importlinter]): core, inference and training
    import neither Qt nor the CLI; the GUI not the CLI; the CLI Qt only to launch the app."""
    # In a child process: import-linter configures logging, which would silence the app's loggers
    # for the tests that run after this one.
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(REPO_ROOT / 'pyproject.toml')!r}, no_cache=True))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_among_gui_modules() -> None:
    """Controllers receive collaborators instead of importing the main window; an import of one
    GUI module by another (type-only imports included) must never close a loop."""
    import grimp

    graph = grimp.build_graph("cxrview", cache_dir=None)
    qt = {m for m in graph.modules if m == "cxrview.qt" or m.startswith("cxrview.qt.")}
    assert "cxrview.qt.main_window" in qt and "cxrview.qt.review" in qt
    edges = {m: {t for t in graph.find_modules_directly_imported_by(m) if t in qt} for m in qt}
    assert any("cxrview.qt.review" in targets for targets in edges.values())  # the graph has edges
    assert _cycles(edges) == []


def test_cycle_finder_finds_cycles() -> None:
    """The check above is not vacuous: a loop through a type-only import is found."""
    edges = {"qt.main_window": {"qt.review"}, "qt.review": {"qt.main_window", "qt.docks"}, "qt.docks": set()}
    assert _cycles(edges) == [["qt.main_window", "qt.review"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []

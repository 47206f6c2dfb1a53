"""Run Python as though pylibjpeg-libjpeg (GPLv3) had never been installed.

The shared virtual environment still has it (other work uses it), so the tests hide it instead
of uninstalling it: its module cannot be imported *and* its distribution metadata is invisible,
so pylibjpeg's entry points (how pydicom finds decoders) do not list it either. Blocking only the
import would be a different, unrealistic world: pylibjpeg would then fail loading a plugin it was
told exists.

    python tests/unit/hidden_gpl.py [--also-hide imagecodecs] FILE...
        one JSON line per file: the loader's stored pixels (sha256, dtype, shape) or its error
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import sys
from collections.abc import Iterator
from importlib.machinery import ModuleSpec, PathFinder
from typing import Any

HIDDEN_MODULES = {"libjpeg"}
HIDDEN_DISTRIBUTIONS = {"pylibjpeg-libjpeg", "pylibjpeg_libjpeg"}


class _Hider(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname.partition(".")[0] in HIDDEN_MODULES:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def hide() -> None:
    """Hide the GPL decoder from imports and from importlib.metadata, for this process."""
    if any(isinstance(finder, _Hider) for finder in sys.meta_path):
        return
    for name in list(sys.modules):
        if name.partition(".")[0] in HIDDEN_MODULES:
            del sys.modules[name]
    sys.meta_path.insert(0, _Hider())
    original = PathFinder.find_distributions

    def find_distributions(*args: Any, **kwargs: Any) -> Iterator[importlib.metadata.Distribution]:
        for dist in original(*args, **kwargs):
            if (dist.metadata["Name"] or "").lower() not in HIDDEN_DISTRIBUTIONS:
                yield dist

    PathFinder.find_distributions = staticmethod(find_distributions)  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    if argv[:2] == ["--also-hide", "imagecodecs"]:  # the fallback decoders alone
        HIDDEN_MODULES.add("imagecodecs")
        HIDDEN_DISTRIBUTIONS.add("imagecodecs")
        argv = argv[2:]
    hide()
    import hashlib
    import json
    from pathlib import Path

    import numpy as np

    from cxrview.core.loader import load_image

    decoders = importlib.metadata.entry_points(group="pylibjpeg.jpeg_decoders")
    assert "libjpeg" not in {ep.name for ep in decoders}
    for raw in argv:
        try:
            stored = np.ascontiguousarray(load_image(Path(raw)).stored)
            row: dict[str, Any] = {"path": raw, "sha256": hashlib.sha256(stored.tobytes()).hexdigest(),
                                   "dtype": str(stored.dtype), "shape": list(stored.shape)}
        except Exception as exc:
            row = {"path": raw, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

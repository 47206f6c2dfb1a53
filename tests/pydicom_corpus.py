"""pydicom's own test files that ``pydicom.dcmread(...).pixel_array`` decodes to an image.

The issue-#15 promise is "every image pydicom can decode opens": the unit test checks
``cxrview info``, the GUI test the viewer, both over this same list.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import pydicom

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@lru_cache(maxsize=1)
def decodable_files() -> tuple[Path, ...]:
    """Every file under the wheel's test_files that pydicom decodes to a 2-D or colour image."""
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(p for p in TEST_FILES.rglob("*") if p.is_file()):
            try:
                arr = pydicom.dcmread(path, force=True).pixel_array
            except Exception:
                continue
            if arr.ndim >= 2 and arr.size > 0:
                found.append(path)
    return tuple(found)

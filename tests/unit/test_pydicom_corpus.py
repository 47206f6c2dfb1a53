"""Every file in pydicom's test data that pydicom decodes also opens in ``cxrview info``."""

from __future__ import annotations

import json

import pytest

from cxrview.cli import main
from tests.pydicom_corpus import TEST_FILES, decodable_files


@pytest.mark.slow
def test_every_image_pydicom_decodes_opens_in_info(capsys: pytest.CaptureFixture[str]) -> None:
    files = decodable_files()
    assert len(files) >= 80, f"only {len(files)} decodable files found under {TEST_FILES}"
    failures = []
    for path in files:
        code = main(["info", str(path), "--json"])
        captured = capsys.readouterr()
        if code != 0:
            failures.append(f"{path.relative_to(TEST_FILES)}: {captured.err.strip()}")
            continue
        try:
            info = json.loads(captured.out, parse_constant=_refuse)
        except ValueError as exc:
            failures.append(f"{path.name}: invalid JSON ({exc})")
            continue
        if info["width"] <= 0 or info["height"] <= 0:
            failures.append(f"{path.name}: empty image")
    assert not failures, "\n".join(failures)


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")

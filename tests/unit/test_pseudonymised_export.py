"""Issue 14, defect 11: an export made to share reveals no patient ID, residue, reserved flag,
reviewer login or local path."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cxrview.core.dataset_export import DATA_ENTRY_NAME, export_coco, export_manifest, export_nih_csv
from cxrview.core.nih_import import import_nih
from cxrview.core.workspace import Workspace
from tests.conftest import REPO_ROOT
from tests.unit.nih_subset import write_patient_subset

NIH_NAME = re.compile(r"\d{8}_\d{3}")
LOGIN = "dr.login-xyz"


@pytest.fixture()
def ws(nih_dir: Path, tmp_path: Path):
    subset = tmp_path / "subset.csv"
    present = write_patient_subset(nih_dir, subset)
    with Workspace(tmp_path / "w.sqlite", create=True, images_root=nih_dir) as workspace:
        import_nih(workspace, subset, nih_dir)
        first = workspace.image_by_file(present[0])
        assert first is not None
        workspace.set_label(first.id, "Mass", "present", author=LOGIN, reason="missed")
        workspace.set_review(first.id, "corrected", author=LOGIN)
        workspace.add_box(first.id, "Mass", (10, 20, 30, 40), author=LOGIN)
        yield workspace


def _leaks(text: str, ws: Workspace) -> list[str]:
    found = []
    if NIH_NAME.search(text):
        found.append(f"NIH file name {NIH_NAME.search(text).group(0)}")  # type: ignore[union-attr]
    for secret in (LOGIN, str(ws.path.parent), str(ws.images_root), '"reserved"'):
        if secret in text:
            found.append(secret)
    return found


def test_pseudonymised_exports_reveal_no_ids_residues_logins_or_paths(ws: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "shared"
    nih = export_nih_csv(ws, out / "nih", pseudonymise=True)
    coco = export_coco(ws, out / "coco.json", pseudonymise=True)
    manifest = export_manifest(ws, out / "manifest.json", pseudonymise=True)
    for summary in (nih, coco, manifest):
        for written in summary["paths"]:
            assert _leaks(Path(written).read_text(), ws) == [], written
    # patients still grouped, but numbered without their reserved class (ID mod 5)
    with open(out / "nih" / DATA_ENTRY_NAME, newline="") as handle:
        rows = list(csv.DictReader(handle))
    real = {r.patient_id for r in ws.images([int(i) for (i,) in ws.execute("SELECT id FROM images")])}
    numbers = sorted(int(r["Patient ID"]) for r in rows)
    assert numbers[0] == 1 and len(set(numbers)) == len(real - {None})
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["workspace"] is None and doc["patient_ids"] == "pseudonymised"
    decided = [img for img in doc["images"] if img["labels"]["Mass"]["human"]]
    assert len(decided) == 1 and decided[0]["labels"]["Mass"]["human"]["author"].startswith("annotator-")
    assert decided[0]["file"].startswith("img-") and decided[0]["path"] == decided[0]["file"]
    # the default (local training) export keeps what training needs, as documented
    local = json.loads(Path(export_manifest(ws, tmp_path / "local.json")["paths"][0]).read_text())
    assert all("reserved" in img and Path(img["path"]).is_absolute() for img in local["images"])


def test_pseudonymised_nih_csv_breaks_the_residue_class(ws: Workspace, tmp_path: Path) -> None:
    export_nih_csv(ws, tmp_path / "nih", pseudonymise=True)
    with open(tmp_path / "nih" / DATA_ENTRY_NAME, newline="") as handle:
        rows = list(csv.DictReader(handle))
    pairs = set()
    files = {r.file: r for r in ws.images([int(i) for (i,) in ws.execute("SELECT id FROM images")])}
    from cxrview.core.dataset_export import _Pseudonyms

    names = _Pseudonyms(ws, list(files.values()))
    back = {names.file(f): r for f, r in files.items()}
    for row in rows:
        pairs.add((back[row["Image Index"]].patient_id, int(row["Patient ID"])))
    assert len({old for old, _ in pairs}) == len(pairs)  # one number per patient…
    assert not all(old % 5 == new % 5 for old, new in pairs)  # …that does not keep the reserved class


def test_cli_export_pseudonymise(ws: Workspace, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-m", "cxrview", "export", str(ws.path), "--format", "manifest",
                           "-o", str(tmp_path / "m.json"), "--pseudonymise"],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _leaks((tmp_path / "m.json").read_text(), ws) == []

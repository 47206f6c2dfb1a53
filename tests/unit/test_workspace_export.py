"""Workspace exports (NIH CSV round trip, COCO, training manifest) on the real NIH metadata."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from cxrview.core.dataset_export import (
    BBOX_LIST_NAME,
    DATA_ENTRY_NAME,
    export_coco,
    export_manifest,
    export_nih_csv,
    export_workspace,
    pseudonym,
)
from cxrview.core.findings import FINDING_BIT, NIH_FINDINGS
from cxrview.core.nih_import import import_nih
from cxrview.core.workspace import Workspace, WorkspaceError
from tests.conftest import SHARED_DATA
from tests.unit.nih_subset import write_patient_subset
from training.sources import manifest_samples

NIH = SHARED_DATA / "nih"
DATA_ENTRY = NIH / "Data_Entry_2017_v2020.csv.gz"
BBOX_LIST = NIH / "BBox_List_2017.csv.gz"
SALT = "test-salt-0123456789"


def _boxed_images(count: int) -> list[str]:
    """The first images of BBox_List with exactly ``count`` boxes (one has an 'Infiltrate' box)."""
    per: dict[str, list[str]] = {}
    with gzip.open(BBOX_LIST, "rt", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    for row in rows:
        per.setdefault(row[0], []).append(row[1])
    multi = next(name for name, f in per.items() if len(f) >= count)
    infiltrate = next(name for name, f in per.items() if f == ["Infiltrate"])
    single = next(name for name, f in per.items() if len(f) == 1 and name != infiltrate)
    return [multi, infiltrate, single]


def _edit(ws: Workspace, present: list[str]) -> dict[str, object]:
    """Human decisions of every kind; returns what the tests check against."""
    a, b, c = (ws.image_by_file(name) for name in present[:3])
    assert a is not None and b is not None and c is not None
    ws.set_label(a.id, "Cardiomegaly", "absent", author="dr.a", reason="not_visible")
    ws.set_label(a.id, "Effusion", "present", author="dr.a", reason="missed")
    ws.set_label(a.id, "Nodule", "uncertain", author="dr.a")
    ws.set_label(b.id, "Mass", "present", author="dr.a")
    ws.set_label(b.id, "Mass", "absent", author="dr.b", reason="other")  # the latest decision counts
    ws.set_label(c.id, "Hernia", "uncertain", author="dr.b")
    ws.set_review(a.id, "corrected", author="dr.a")
    ws.set_review(b.id, "confirmed", author="dr.b")
    # a human box on an image without dataset boxes
    ws.add_box(c.id, "Pneumothorax", (100.0, 120.5, 200.25, 150.0), author="dr.b")
    return {"a": a.id, "b": b.id, "c": c.id}


def _edit_boxes(ws: Workspace) -> dict[str, int]:
    multi, infiltrate, single = (ws.image_by_file(n) for n in _boxed_images(2))
    assert multi is not None and infiltrate is not None and single is not None
    copies = ws.take_over_boxes(multi.id, author="dr.a")
    assert len(copies) >= 2
    ws.update_box(copies[0], rect=(10.0, 20.0, 30.5, 40.125), finding="Nodule")
    ws.set_box_deleted(copies[1], True)
    ws.add_box(multi.id, "Infiltration", (500.0, 400.0, 60.0, 70.0), author="dr.a")
    for box_id in ws.take_over_boxes(infiltrate.id, author="dr.a"):  # every box removed: no answer
        ws.set_box_deleted(box_id, True)
    return {"multi": multi.id, "infiltrate": infiltrate.id, "single": single.id}


@pytest.fixture(scope="module")
def edited(nih_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, dict[str, int]]:
    """All 112,120 NIH rows (52 images on disk) plus human label and box edits."""
    ws = Workspace(tmp_path_factory.mktemp("ws") / "w.sqlite", create=True)
    import_nih(ws, DATA_ENTRY, nih_dir, BBOX_LIST)
    ws.set_meta("pseudonym_salt", SALT)
    ids = _edit(ws, sorted(p.name for p in nih_dir.glob("*.png")))
    ids.update(_edit_boxes(ws))
    yield ws, ids
    ws.close()


def _state(ws: Workspace) -> dict[str, tuple]:
    rows = ws.execute("SELECT file, current_mask, patient_id, follow_up, age, sex, view, width, height, "
                      "present FROM images").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def _answers(ws: Workspace) -> dict[str, list[tuple]]:
    out = {}
    for image_id, file in ws.execute("SELECT DISTINCT i.id, i.file FROM boxes b JOIN images i "
                                     "ON i.id = b.image_id").fetchall():
        boxes = sorted((b.finding, b.x, b.y, b.w, b.h) for b in ws.answer_boxes(image_id))
        if boxes:
            out[file] = boxes
    return out


@pytest.mark.slow
def test_nih_csv_round_trips_current_labels_and_boxes(edited, nih_dir: Path, tmp_path: Path) -> None:
    ws, ids = edited
    summary = export_nih_csv(ws, tmp_path / "out")
    assert summary["images"] == 112_120 and summary["uncertain_written_absent"] == 2
    data_entry, bbox = tmp_path / "out" / DATA_ENTRY_NAME, tmp_path / "out" / BBOX_LIST_NAME
    assert summary["paths"] == [str(data_entry), str(bbox)]
    with gzip.open(DATA_ENTRY, "rt") as handle:
        assert data_entry.read_text().splitlines()[0] == handle.readline().strip()  # NIH's own header
    assert bbox.read_text().splitlines()[0] == "Image Index,Finding Label,Bbox [x,y,w,h]"
    assert "Infiltrate," in bbox.read_text() and ",Infiltration," not in bbox.read_text()

    fresh = Workspace(tmp_path / "fresh.sqlite", create=True)
    back = import_nih(fresh, data_entry, nih_dir, bbox)
    assert back.rows == 112_120 and back.present == 52 and back.unknown_box_images == 0
    assert back.boxes == summary["boxes"]
    # Current labels, metadata and presence: identical for every image. Uncertain findings are
    # not present in current_mask, and NIH has no "uncertain": they come back as absent.
    assert _state(fresh) == _state(ws)
    a = fresh.image(ids["a"])
    assert a.current_value("Nodule") == "absent" and ws.image(ids["a"]).current_value("Nodule") == "uncertain"
    assert a.current_value("Effusion") == "present" and a.current_value("Cardiomegaly") == "absent"
    assert fresh.execute("SELECT SUM(uncertain_mask != 0) FROM images").fetchone()[0] == 0
    # The boxes that count, exactly (floats written as repr): edited, deleted and added ones.
    answers = _answers(ws)
    assert _answers(fresh) == answers
    multi = ws.image(ids["multi"]).file
    assert ("Nodule", 10.0, 20.0, 30.5, 40.125) in answers[multi]
    assert ("Infiltration", 500.0, 400.0, 60.0, 70.0) in answers[multi]
    assert ws.image(ids["infiltrate"]).file not in answers
    assert ws.image(ids["c"]).file in answers
    fresh.close()


def test_nih_csv_without_patient_ids_keeps_grouping_and_reserved_class(edited, tmp_path: Path) -> None:
    ws, _ids = edited
    export_nih_csv(ws, tmp_path, include_patient_ids=False)
    with open(tmp_path / DATA_ENTRY_NAME, newline="") as handle:
        rows = {r[0]: int(r[3]) for r in list(csv.reader(handle))[1:]}
    real = {file: pid for file, pid in ws.execute("SELECT file, patient_id FROM images")}
    mapping: dict[int, int] = {}
    for file, new in rows.items():
        assert mapping.setdefault(real[file], new) == new  # one patient → one replacement ID
    assert len(set(mapping.values())) == len(mapping)  # and different patients stay different
    assert all(old % 5 == new % 5 for old, new in mapping.items())  # reserved patients stay reserved
    assert sum(old == new for old, new in mapping.items()) < len(mapping) // 100


def test_coco_structure_and_box_counts(edited, tmp_path: Path) -> None:
    ws, ids = edited
    summary = export_coco(ws, tmp_path / "coco.json")
    doc = json.loads((tmp_path / "coco.json").read_text())
    assert [c["id"] for c in doc["categories"]] == list(range(1, 15))
    assert [c["name"] for c in doc["categories"]] == list(NIH_FINDINGS)
    assert len(doc["images"]) == summary["images"] == 52
    image_ids = {img["id"] for img in doc["images"]}
    assert len(image_ids) == 52
    for img in doc["images"]:
        assert img["file_name"].endswith(".png") and (img["width"], img["height"]) == (1024, 1024)
        assert img["original_width"] > 0 and img["original_height"] > 0
    anns = doc["annotations"]
    assert len({a["id"] for a in anns}) == len(anns) == summary["annotations"]
    assert len(anns) == sum(len(ws.answer_boxes(i)) for i in image_ids)
    for a in anns:
        assert a["image_id"] in image_ids and 1 <= a["category_id"] <= 14 and a["iscrowd"] == 0
        w, h = a["bbox"][2:]
        assert w > 0 and h > 0 and a["area"] == pytest.approx(w * h)
        assert a["source"] in ("human", "dataset")
    assert [a["source"] for a in anns if a["image_id"] == ids["c"]] == ["human"]

    everything = export_coco(ws, tmp_path / "all.json", present_only=False)
    total = sum(len(v) for v in _answers(ws).values())
    assert everything["images"] == 112_120 and everything["annotations"] == total
    sources = {a["source"] for a in json.loads((tmp_path / "all.json").read_text())["annotations"]}
    assert sources == {"human", "dataset"}


# -- manifest: a small workspace (the 52 images' patients, all their follow-ups) -------------------------
@pytest.fixture()
def small(nih_dir: Path, tmp_path: Path) -> tuple[Workspace, dict[str, int]]:
    subset = tmp_path / "subset.csv"
    present = write_patient_subset(nih_dir, subset)
    ws = Workspace(tmp_path / "small.sqlite", create=True)
    summary = import_nih(ws, subset, nih_dir)
    assert summary.present == 52 and summary.missing > 0
    ids = _edit(ws, present)
    yield ws, ids
    ws.close()


def test_manifest_split_pseudonyms_and_provenance(small, tmp_path: Path) -> None:
    ws, ids = small
    assert ws.meta("pseudonym_salt") is None
    export_manifest(ws, tmp_path / "first.json")
    created = ws.meta("pseudonym_salt")
    assert created and re.fullmatch(r"[0-9a-f]{32}", created)  # made on first use, kept in the workspace
    first = json.loads((tmp_path / "first.json").read_text())
    for image in first["images"]:
        record = ws.image_by_file(image["file"])
        assert record is not None and image["patient"] == pseudonym(record.patient_id, created)
    ws.set_meta("pseudonym_salt", SALT)  # fixed from here on: the checks below are deterministic
    out = tmp_path / "manifest.json"
    summary = export_manifest(ws, out, val_fraction=0.3, seed=7)
    doc = json.loads(out.read_text())
    assert doc["format"] == "cxrview-manifest" and doc["version"] == 1
    assert doc["findings"] == list(NIH_FINDINGS) and doc["workspace"] == str(ws.path)
    images = {img["file"]: img for img in doc["images"]}
    assert len(images) == summary["images"] == ws.image_count()
    # patient-level split: no patient on both sides, both sides used, stable across exports
    sides: dict[str, set[str]] = {}
    for img in doc["images"]:
        sides.setdefault(img["patient"], set()).add(img["split"])
    assert all(len(s) == 1 for s in sides.values())
    assert {next(iter(s)) for s in sides.values()} == {"train", "val"}
    export_manifest(ws, tmp_path / "again.json", val_fraction=0.3, seed=7)
    again = json.loads((tmp_path / "again.json").read_text())
    assert [(i["patient"], i["split"]) for i in again["images"]] == [(i["patient"], i["split"])
                                                                      for i in doc["images"]]
    other_seed = json.loads(Path(export_manifest(ws, tmp_path / "s.json", val_fraction=0.3,
                                                 seed=8)["paths"][0]).read_text())
    assert [i["split"] for i in other_seed["images"]] != [i["split"] for i in doc["images"]]
    # pseudonyms: salted, stable (the salt is kept in the workspace), no raw IDs
    salt = ws.meta("pseudonym_salt")
    assert salt == SALT
    real = {file: pid for file, pid in ws.execute("SELECT file, patient_id FROM images")}
    for file, img in images.items():
        assert re.fullmatch(r"p-[0-9a-f]{12}", img["patient"])
        assert str(real[file]) not in img["patient"][2:] or len(str(real[file])) < 4
        assert img["patient"] == pseudonym(real[file], salt)
    with_ids = json.loads(Path(export_manifest(ws, tmp_path / "ids.json", val_fraction=0.3, seed=7,
                                               include_patient_ids=True)["paths"][0]).read_text())
    assert [i["patient"] for i in with_ids["images"]] == [real[i["file"]] for i in with_ids["images"]]
    assert [i["split"] for i in with_ids["images"]] == [i["split"] for i in doc["images"]]
    # the human decision with its provenance, beside the dataset label
    a = images[ws.image(ids["a"]).file]
    card = a["labels"]["Cardiomegaly"]
    assert card["value"] == "absent" and card["dataset"] == "present"
    assert card["human"]["value"] == "absent" and card["human"]["author"] == "dr.a"
    assert card["human"]["reason"] == "not_visible" and card["human"]["created"].startswith("20")
    assert a["labels"]["Nodule"]["value"] == "uncertain" and a["labels"]["Atelectasis"]["human"] is None
    assert a["review_state"] == "corrected" and a["present"] is True and Path(a["path"]).is_absolute()
    b = images[ws.image(ids["b"]).file]
    assert b["labels"]["Mass"]["human"]["author"] == "dr.b" and b["labels"]["Mass"]["value"] == "absent"
    assert images[ws.image(ids["c"]).file]["boxes"] == [
        {"finding": "Pneumothorax", "x": 100.0, "y": 120.5, "w": 200.25, "h": 150.0, "source": "human"}]
    assert any(not img["present"] for img in doc["images"])
    assert {img["reserved"] for img in doc["images"]} == {True, False}
    assert all(img["reserved"] == (real[f] % 5 == 0) for f, img in images.items())
    reviewed = export_manifest(ws, tmp_path / "rev.json", reviewed_only=True)
    assert reviewed["images"] == 2


def test_manifest_samples_label_and_known_vectors(small, tmp_path: Path) -> None:
    ws, ids = small
    a, b, c = (ws.image(ids[k]) for k in "abc")
    out = tmp_path / "m.json"
    export_manifest(ws, out, val_fraction=0.3, seed=7)
    doc = json.loads(out.read_text())
    labels = ["Effusion", "Cardiomegaly", "Nodule", "Hernia", "Mass", "Lung Lesion"]
    samples = manifest_samples(out, labels)
    by_file = {Path(s.path).name: s for s in samples}
    keep = [i for i in doc["images"] if i["present"] and not i["reserved"]]
    assert sorted(by_file) == sorted(i["file"] for i in keep)  # missing and reserved images skipped
    for image in keep:
        s = by_file[image["file"]]
        assert s.source == "manifest" and s.patient == f"manifest:{image['patient']}"
        assert s.split == image["split"] and s.view == image["view"]
    sa = by_file[a.file]
    # Effusion present (human), Cardiomegaly absent (human), Nodule uncertain → unknown,
    # Hernia absent (dataset), Mass absent (dataset), a label the manifest lacks → unknown
    np.testing.assert_array_equal(sa.labels, [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(sa.known, [1, 1, 0, 1, 1, 0])
    assert sa.labels.dtype == np.float32 and sa.known.dtype == np.float32
    with_uncertain = {Path(s.path).name: s for s in manifest_samples(out, labels, include_uncertain=True)}
    np.testing.assert_array_equal(with_uncertain[a.file].labels, [1, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(with_uncertain[a.file].known, [1, 1, 1, 1, 1, 0])
    hernia = labels.index("Hernia")
    assert with_uncertain[c.file].labels[hernia] == 1 and by_file[c.file].known[hernia] == 0
    everyone = manifest_samples(out, labels, exclude_reserved=False)
    assert {Path(s.path).name for s in everyone} >= {a.file, b.file, c.file}
    reviewed = manifest_samples(out, labels, reviewed_only=True, exclude_reserved=False)
    # reviewed_only limits the training split; validation images all stay (threshold choice)
    assert {Path(s.path).name for s in reviewed if s.split == "train"} <= {a.file, b.file}
    assert {Path(s.path).name for s in reviewed if s.split == "val"} == \
        {Path(s.path).name for s in everyone if s.split == "val"}
    assert {a.file, b.file} <= {Path(s.path).name for s in reviewed}
    hits = {Path(s.path).name: s for s in everyone}
    mass = labels.index("Mass")
    assert hits[b.file].labels[mass] == 0 and hits[b.file].known[mass] == 1


def test_engine_loads_a_manifest_source(small, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from training.config import TrainConfig
    from training.engine import collect_samples

    ws, _ids = small
    out = tmp_path / "m.json"
    export_manifest(ws, out)
    source = {"type": "manifest", "path": str(out), "include_uncertain": True, "reviewed_only": False}
    config = TrainConfig(labels=list(NIH_FINDINGS), sources=[source], out=str(tmp_path / "run"))
    samples = collect_samples(config)
    assert samples and all(s.source == "manifest" and s.split in ("train", "val") for s in samples)
    assert collect_samples(config, reserved_only=True) == []


def test_export_workspace_dispatch_and_errors(small, tmp_path: Path) -> None:
    ws, _ids = small
    summary = export_workspace(ws, "manifest", tmp_path / "m.json", seed=3)
    assert summary["format"] == "manifest" and Path(summary["paths"][0]).is_file()
    assert export_workspace(ws, "coco", tmp_path / "c.json")["images"] == 52
    assert len(export_workspace(ws, "nih-csv", tmp_path / "csv")["paths"]) == 2
    with pytest.raises(WorkspaceError, match="unknown export format"):
        export_workspace(ws, "yolo", tmp_path / "y")
    with pytest.raises(WorkspaceError, match="no option"):
        export_workspace(ws, "coco", tmp_path / "c.json", seed=1)
    with pytest.raises(WorkspaceError, match="does not exist"):
        export_workspace(ws, "coco", tmp_path / "nowhere" / "c.json")
    with pytest.raises(WorkspaceError, match="is a folder"):
        export_workspace(ws, "manifest", tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorkspaceError, match=r"cannot create|not a folder"):
        export_workspace(ws, "nih-csv", tmp_path / "file")
    with pytest.raises(WorkspaceError, match="val_fraction"):
        export_workspace(ws, "manifest", tmp_path / "m2.json", val_fraction=1.5)
    assert not (tmp_path / "m2.json").exists()


def test_uncertain_is_never_written_present(small, tmp_path: Path) -> None:
    ws, ids = small
    c = ws.image(ids["c"])
    assert c.uncertain_mask == FINDING_BIT["Hernia"] and "Hernia" not in c.current_findings()
    export_nih_csv(ws, tmp_path)
    with open(tmp_path / DATA_ENTRY_NAME, newline="") as handle:
        row = next(r for r in csv.reader(handle) if r[0] == c.file)
    assert "Hernia" not in row[1]

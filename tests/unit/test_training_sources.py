"""Multi-source data rules: extra sources stay out of validation/test; encoder reuse."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from training.sources import NIH_FINDINGS, folder_samples

DATA_ENTRY = SHARED_DATA / "nih" / "Data_Entry_2017_v2020.csv.gz"
MAPPING = {"PNEUMONIA": {"Pneumonia": 1}, "NORMAL": {"*": 0}}


def _class_folders(nih_dir: Path, root: Path, per_class: int) -> Path:
    pngs = sorted(nih_dir.glob("*.png"))
    for name, files in (("NORMAL", pngs[:per_class]), ("PNEUMONIA", pngs[per_class:2 * per_class])):
        (root / name).mkdir(parents=True)
        for f in files:
            shutil.copy(f, root / name / f.name)
    return root


def test_max_per_class_keeps_a_seeded_subset_with_masked_labels(nih_dir: Path, tmp_path: Path) -> None:
    root = _class_folders(nih_dir, tmp_path / "set", 6)
    a = folder_samples(root, NIH_FINDINGS, MAPPING, max_per_class=4, seed=1)
    b = folder_samples(root, NIH_FINDINGS, MAPPING, max_per_class=4, seed=1)
    assert [s.path for s in a] == [s.path for s in b]
    assert sum(s.group == "NORMAL" for s in a) == 4 and sum(s.group == "PNEUMONIA" for s in a) == 4
    pneumonia = next(s for s in a if s.group == "PNEUMONIA")
    index = NIH_FINDINGS.index("Pneumonia")
    assert pneumonia.known.sum() == 1 and pneumonia.known[index] == 1 and pneumonia.labels[index] == 1
    normal = next(s for s in a if s.group == "NORMAL")
    assert normal.known.all() and not normal.labels.any()


def test_train_only_source_never_enters_validation_or_test(nih_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from training.config import TrainConfig
    from training.engine import DistInfo, prepare_run
    from training.events import EventLog

    root = _class_folders(nih_dir, tmp_path / "set", 5)
    nih = {"type": "nih", "images": [str(nih_dir)], "data_entry": str(DATA_ENTRY)}
    extra = {"type": "folders", "root": str(root), "mapping": MAPPING, "train_only": True}
    log = EventLog(quiet=True, stdout=io.StringIO(), stderr=io.StringIO())

    def run(sources: list[dict], out: str):
        config = TrainConfig(task="multilabel-classification", architecture="small-cnn", sources=sources,
                             out=str(tmp_path / out), val_fraction=0.2, test_fraction=0.2, seed=4)
        config.run_dir.mkdir()
        return prepare_run(config, log, DistInfo())

    alone, split_alone = run([nih], "a")
    mixed, split_mixed = run([nih, extra], "b")
    assert split_alone == split_mixed  # the extra source moves no NIH patient between splits
    assert [s.path for s in mixed["val"]] == [s.path for s in alone["val"]]
    assert [s.path for s in mixed["test"]] == [s.path for s in alone["test"]]
    assert len(mixed["train"]) == len(alone["train"]) + 10
    assert all(s.source == "nih" for s in mixed["val"] + mixed["test"])


def test_classifier_can_start_from_a_unet_encoder(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from cxrview.inference.architectures import build
    from training.engine import load_initial_weights
    from training.events import EventLog

    unet = build("unet", 3, 1, {})
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(tmp_path / "unet.safetensors"))
    classifier = build("resnet18", 14, 1, {})
    quiet = EventLog(quiet=True, stdout=io.StringIO(), stderr=io.StringIO())
    load_initial_weights(classifier, str(tmp_path / "unet.safetensors"), quiet)
    assert torch.equal(classifier.state_dict()["layer4.1.conv2.weight"],
                       unet.state_dict()["encoder.layer4.1.conv2.weight"])
    assert np.isfinite(classifier.state_dict()["fc.weight"].numpy()).all()

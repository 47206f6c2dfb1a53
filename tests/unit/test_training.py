"""`python -m training` end to end on tiny data: protocol, bundle, evaluate, resume, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from tests.conftest import REPO_ROOT, SHARED_DATA

DATA_ENTRY = SHARED_DATA / "nih" / "Data_Entry_2017_v2020.csv.gz"
EVENTS = {"start", "phase", "epoch", "step", "metric", "checkpoint", "done", "error"}


def _run(args: list[str], *, timeout: int = 180, module: str = "training") -> tuple[int, list[dict], str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=timeout, env=env)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.returncode, events, result.stderr


def _nih_args(nih_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["--arch", "small-cnn", "--size", "32", "--batch-size", "8", "--nih-images", str(nih_dir),
            "--data-entry", str(DATA_ENTRY), "--out", str(out), "--val-fraction", "0.25",
            "--test-fraction", "0.25", "--log-every", "1", "--seed", "3", *extra]


@pytest.fixture(scope="module")
def tiny_run(nih_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("train") / "run"
    code, events, err = _run(["train", *_nih_args(nih_dir, out, "--epochs", "2")])
    assert code == 0, err
    return out, events


@pytest.mark.slow
def test_train_emits_json_lines_protocol(tiny_run: tuple[Path, list[dict]]) -> None:
    _, events = tiny_run
    kinds = [e["event"] for e in events]
    assert set(kinds) <= EVENTS
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("epoch") == 2 and "checkpoint" in kinds and "step" in kinds
    epoch = next(e for e in events if e["event"] == "epoch")
    assert {"train_loss", "val_loss", "images_per_s", "val_mean_auroc"} <= set(epoch)
    assert all(isinstance(e["time"], float) for e in events)


@pytest.mark.slow
def test_bundle_loads_in_the_app_and_evaluate_reproduces_card(tiny_run: tuple[Path, list[dict]],
                                                              tmp_path: Path) -> None:
    from cxrview.inference.bundle import load_bundle

    run, _ = tiny_run
    loaded = load_bundle(run / "bundle", device="cpu")
    card = loaded.card
    assert card.labels[0] == "Atelectasis" and len(card.labels) == 14
    assert card.metrics["test"]["n_images"] > 0
    split = json.loads((run / "split.json").read_text())
    reserved = [p for part in split.values() for p in part if int(p.split(":")[1]) % 5 == 0]
    assert not reserved  # reserved NIH evaluation patients never enter any split
    assert not set(split["train"]) & (set(split["val"]) | set(split["test"]))
    code, _events, err = _run(["evaluate", "--bundle", str(run / "bundle"), "--split", "test",
                              "--out", str(tmp_path / "eval")])
    assert code == 0, err
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["mean_auroc"] == pytest.approx(card.metrics["test"]["mean_auroc"], abs=1e-9)
    assert report["per_label"] == card.metrics["test"]["per_label"]
    assert cv2.imread(str(tmp_path / "eval" / "roc.png")) is not None


@pytest.mark.slow
def test_resume_continues_from_checkpoint(tiny_run: tuple[Path, list[dict]], nih_dir: Path,
                                         tmp_path: Path) -> None:
    out = tmp_path / "resumable"
    code, _, err = _run(["train", *_nih_args(nih_dir, out, "--epochs", "1")])
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    code, events, err = _run(["train", "--config", str(out / "config.json"), "--epochs", "2",
                              "--resume"])
    assert code == 0, err
    epochs = [e["epoch"] for e in events if e["event"] == "epoch"]
    assert epochs == [1]  # epoch 0 came from the checkpoint
    assert any(e["event"] == "phase" and e.get("name") == "resume" for e in events)
    assert config["seed"] == 3


def test_bad_input_gives_error_event(tmp_path: Path) -> None:
    code, events, _ = _run(["train", "--arch", "small-cnn", "--size", "32", "--nih-images",
                            str(tmp_path), "--data-entry", str(DATA_ENTRY), "--out",
                            str(tmp_path / "run")])
    assert code == 1
    assert events[-1]["event"] == "error" and "no training images" in events[-1]["message"]


def _phantoms(root: Path, n: int = 12, size: int = 64) -> tuple[Path, Path]:
    """Synthetic chest-like phantoms: two dark lungs and a bright heart, with their masks."""
    images, masks = root / "images", root / "masks"
    for name in ("heart", "left_lung", "right_lung"):
        (masks / name).mkdir(parents=True)
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.full((size, size), 170, np.uint8)
        dx = int(rng.integers(-3, 4))
        shapes = {"right_lung": ((size // 4 + dx, size // 2), (size // 7, size // 3)),
                  "left_lung": ((3 * size // 4 + dx, size // 2), (size // 7, size // 3)),
                  "heart": ((size // 2 + 3 + dx, 2 * size // 3), (size // 6, size // 8))}
        for name, (center, axes) in shapes.items():
            mask = np.zeros((size, size), np.uint8)
            cv2.ellipse(mask, center, axes, 0, 0, 360, 255, -1)
            cv2.imwrite(str(masks / name / f"case{i:02d}.png"), mask)
            img[mask > 0] = 60 if "lung" in name else 220
        noise = rng.normal(0, 8, img.shape)
        cv2.imwrite(str(images / f"case{i:02d}.png"), np.clip(img + noise, 0, 255).astype(np.uint8))
    return images, masks


@pytest.mark.slow
def test_segmentation_training_reports_dice_and_ctr(tmp_path: Path) -> None:
    images, masks = _phantoms(tmp_path)
    code, events, err = _run(["train", "--task", "segmentation", "--arch", "small-cnn", "--size", "32",
                              "--images", str(images), "--masks", str(masks), "--out",
                              str(tmp_path / "seg"), "--epochs", "1"])
    # small-cnn is a classifier: a segmentation task with it must fail cleanly, not crash oddly
    assert code == 1 and events[-1]["event"] == "error"
    code, events, err = _run(["train", "--task", "segmentation", "--arch", "unet", "--size", "32",
                              "--images", str(images), "--masks", str(masks), "--out",
                              str(tmp_path / "seg"), "--epochs", "2", "--batch-size", "4",
                              "--val-fraction", "0.2", "--test-fraction", "0.2"])
    assert code == 0, err
    card = json.loads((tmp_path / "seg" / "bundle" / "card.json").read_text())
    assert set(card["metrics"]["test"]["dice"]) == {"heart", "left_lung", "right_lung"}
    assert set(card["metrics"]["test"]["dice_raw"]) == {"heart", "left_lung", "right_lung"}
    assert "ctr_abs_error" in card["metrics"]["test"]
    # a position-reserved mask set (Wingspan's every third): never trained on, reported once
    config = tmp_path / "reserved.json"
    config.write_text(json.dumps({
        "task": "segmentation", "architecture": "unet", "input_size": 32, "epochs": 1, "batch_size": 4,
        "val_fraction": 0.2, "test_fraction": 0.2, "evaluate_reserved": True,
        "sources": [{"type": "masks", "name": "phantoms", "images": str(images), "masks": str(masks),
                     "reserved_every": 3}]}))
    code, _events, err = _run(["train", "--config", str(config), "--out", str(tmp_path / "seg-r")])
    assert code == 0, err
    card = json.loads((tmp_path / "seg-r" / "bundle" / "card.json").read_text())
    assert card["metrics"]["reserved"]["n_images"] == 4  # positions 0, 3, 6, 9 of 12
    assert sum(card["training"]["images"].values()) == 8
    held = {f"phantoms:case{i:02d}" for i in (0, 3, 6, 9)}
    assert not held & {p for part in card["training"]["split_patients"].values() for p in part}


@pytest.mark.slow
def test_lr_find_suggests_a_rate(nih_dir: Path, tmp_path: Path) -> None:
    code, events, err = _run(["lr-find", *_nih_args(nih_dir, tmp_path / "lr"), "--steps", "12"])
    assert code == 0, err
    done = events[-1]
    assert done["event"] == "done" and 1e-6 <= done["suggested_lr"] <= 1.0


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(nih_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    args = ["--standalone", "--nproc_per_node=2", "-m", "training", "train",
            *_nih_args(nih_dir, out, "--epochs", "1", "--device", "cpu")]
    code, events, err = _run(args, module="torch.distributed.run", timeout=240)
    assert code == 0, err[-3000:]
    start = next(e for e in events if e["event"] == "start")
    assert start["world_size"] == 2
    assert [e["event"] for e in events].count("epoch") == 1  # only rank 0 reports
    assert (out / "bundle" / "card.json").is_file()


def test_evaluate_single_label_folders_gives_confusion_matrix(tiny_run: tuple[Path, list[dict]],
                                                               nih_dir: Path, tmp_path: Path) -> None:
    import shutil

    run, _ = tiny_run
    pngs = sorted(nih_dir.glob("*.png"))
    for name, files in (("NORMAL", pngs[:6]), ("EFFUSION", pngs[-6:])):
        (tmp_path / "set" / name).mkdir(parents=True)
        for f in files:
            shutil.copy(f, tmp_path / "set" / name / f.name)
    code, _, err = _run(["evaluate", "--bundle", str(run / "bundle"), "--split", "all", "--out",
                         str(tmp_path / "ev"), "--folders", str(tmp_path / "set"), "--folder-map",
                         '{"NORMAL": {"*": 0}, "EFFUSION": {"Effusion": 1}}'])
    assert code == 0, err
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    single = report["single_label"]
    assert single["classes"] == ["EFFUSION", "NORMAL"]
    assert sum(map(sum, single["confusion_matrix"])) == 12
    assert len(report["top_losses"]) == 10 and report["per_label"]["Effusion"]["n_pos"] == 6


@pytest.mark.slow
def test_recalibrate_writes_a_bundle_with_validation_evidence(tiny_run: tuple[Path, list[dict]],
                                                               tmp_path: Path) -> None:
    run, _ = tiny_run
    out = tmp_path / "recal"
    code, events, err = _run(["recalibrate", "--bundle", str(run / "bundle"), "--out", str(out),
                              "--min-positives", "2", "--specificity-floor", "0.8",
                              "--floor", "Effusion=0.95", "--device", "cpu", "--version", "0.1.1"])
    assert code == 0, err
    assert events[-1]["event"] == "done" and events[-1]["bundle"] == str(out)
    old = json.loads((run / "bundle" / "card.json").read_text())
    new = json.loads((out / "card.json").read_text())
    assert new["weights_sha256"] == old["weights_sha256"]  # same weights, new evidence
    assert new["version"] == "0.1.1" and new["parent_version"] == "0.1.0" and new["format"] == 2
    record = new["training"]["recalibrated"]
    assert record["rule"]["min_positives"] == 2 and record["rule"]["floors"] == {"Effusion": 0.95}
    assert record["previous"]["thresholds"] == old["thresholds"]
    assert new["training"]["config"]["min_positives"] == 2  # the rule travels with the card
    assert new["metrics"]["test"]["mean_auroc"] == pytest.approx(old["metrics"]["test"]["mean_auroc"])
    evidence = new["evidence"]
    validated = {k for k, v in evidence["per_label"].items() if v["validated"]}
    assert set(new["thresholds"]) == validated
    for label, entry in evidence["per_label"].items():
        if entry["validated"]:
            assert entry["n_pos"] >= 2 and entry["specificity"] >= entry["specificity_floor"] - 1e-9
            assert entry["auroc_ci"][0] > 0.5 and entry["threshold"] == new["thresholds"][label]
            assert entry["specificity_ci"][0] <= entry["specificity"] <= entry["specificity_ci"][1]
        else:
            assert entry["reason"] and label not in new["thresholds"]
    assert evidence["per_label"]["Effusion"]["specificity_floor"] >= 0.95
    assert new["calibration"]["method"] == "platt"
    assert set(new["calibration"]["per_label"]) <= set(new["labels"])
    assert new["ood"]["threshold"] > 0 and len(new["ood"]["mean"]) == len(new["ood"]["std"])
    assert "test" in evidence and "positives_per_normal" in new["metrics"]["test"]
    for label, t in new["thresholds"].items():
        assert new["metrics"]["test"]["per_label"][label]["threshold"] == pytest.approx(t)

    # evaluate reproduces the card's evidence on the split it was chosen on, and on test
    for split in ("val", "test"):
        code, _, err = _run(["evaluate", "--bundle", str(out), "--split", split, "--out",
                             str(tmp_path / f"ev-{split}"), "--device", "cpu"])
        assert code == 0, err
        report = json.loads((tmp_path / f"ev-{split}" / "report.json").read_text())
        assert report["card_agreement"]["reproduces"], report["card_agreement"]
        assert report["card_agreement"]["values_compared"] > 0
        assert 0 <= report["calibration"]["ece"] <= 1
        assert (tmp_path / f"ev-{split}" / "reliability.png").is_file()


@pytest.mark.slow
def test_ensemble_of_members_on_one_split_loads_predicts_and_fine_tunes(
        tiny_run: tuple[Path, list[dict]], nih_dir: Path, tmp_path: Path) -> None:
    from cxrview.inference.architectures import Ensemble
    from cxrview.inference.bundle import load_bundle
    from cxrview.inference.gradcam import CamSession, cam_target

    run, _ = tiny_run
    # A second member: other initialisation and size, the first member's patient split.
    second = tmp_path / "second"
    code, _, err = _run(["train", *_nih_args(nih_dir, second, "--epochs", "1", "--size", "64",
                                             "--seed", "4", "--split-seed", "3")])
    assert code == 0, err
    assert json.loads((second / "split.json").read_text()) == json.loads((run / "split.json").read_text())
    out = tmp_path / "ens"
    code, events, err = _run(["ensemble", "--members", str(run / "bundle"), str(second / "bundle"),
                              "--out", str(out), "--version", "9.0.0", "--device", "cpu"])
    assert code == 0, err
    assert events[-1] == {**events[-1], "event": "done", "bundle": str(out)}
    loaded = load_bundle(out, device="cpu")
    assert isinstance(loaded.model, Ensemble) and loaded.card.input_size == 64
    assert loaded.model.input_sizes == [32, 64]
    card = loaded.card
    assert [m["version"] for m in card.training["members"]] == ["0.1.0", "0.1.0"]
    assert set(card.thresholds) <= set(card.labels) and card.metrics["test"]["n_images"] > 0

    # The bundle's metrics are reproducible, like any other bundle's.
    code, _, err = _run(["evaluate", "--bundle", str(out), "--split", "test", "--out", str(tmp_path / "ev")])
    assert code == 0, err
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["mean_auroc"] == pytest.approx(card.metrics["test"]["mean_auroc"], abs=1e-9)

    # Logits are the members' mean; Grad-CAM has one target per member and one averaged map.
    import torch

    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a = loaded.model.members[0](loaded.model.member_input(x, 0))
        b = loaded.model.members[1](x)
        assert torch.allclose(loaded.model(x), (a + b) / 2, atol=1e-6)
    targets = cam_target(loaded.model, (1, 64, 64))
    assert isinstance(targets, list) and len(targets) == 2
    with CamSession(loaded.model, x, target=targets) as session:
        cam = session.cam(0)
    assert cam.shape == (64, 64) and 0.0 <= cam.min() and cam.max() <= 1.0

    # Fine-tuning starts from the ensemble like from any bundle (the app's menu does this).
    tuned = tmp_path / "tuned"
    code, _, err = _run(["finetune", "--base", str(out), *_nih_args(nih_dir, tuned, "--epochs", "1")[4:]])
    assert code == 0, err
    tuned_card = json.loads((tuned / "bundle" / "card.json").read_text())
    assert tuned_card["architecture"] == "ensemble"
    # fine-tuning produces the same kind of evidence as publishing and recalibrating
    assert tuned_card["calibration"]["method"] == "platt" and tuned_card["evidence"]["split"] == "val"
    assert tuned_card["ood"]["threshold"] > 0 and set(tuned_card["evidence"]["per_label"]) == set(card.labels)
    assert set(tuned_card["thresholds"]) == {k for k, v in tuned_card["evidence"]["per_label"].items()
                                            if v["validated"]}


@pytest.mark.slow
def test_ensemble_refuses_members_from_different_splits(tiny_run: tuple[Path, list[dict]], nih_dir: Path,
                                                       tmp_path: Path) -> None:
    run, _ = tiny_run
    other = tmp_path / "other"
    code, _, err = _run(["train", *_nih_args(nih_dir, other, "--epochs", "1", "--seed", "8")])
    assert code == 0, err
    code, events, _ = _run(["ensemble", "--members", str(run / "bundle"), str(other / "bundle"),
                           "--out", str(tmp_path / "ens"), "--version", "9.0.0", "--device", "cpu"])
    assert code == 1
    assert "different patient split" in events[-1]["message"]
    assert not (tmp_path / "ens").exists()


@pytest.mark.slow
def test_compare_on_the_reserved_patients(tiny_run: tuple[Path, list[dict]], tmp_path: Path) -> None:
    """`compare --reserved-from CONFIG` scores only reserved NIH patients (ID divisible by 5)."""
    from training.compare import reserved_samples

    run, _ = tiny_run
    labels = json.loads((run / "bundle" / "card.json").read_text())["labels"]
    samples = reserved_samples(run / "config.json", labels)
    assert samples and all(int(s.patient.split(":")[-1]) % 5 == 0 for s in samples)
    out = tmp_path / "cmp.json"
    bundle = str(run / "bundle")
    code, events, err = _run(["compare", "--candidate", bundle, "--baseline", bundle, "--reserved-from",
                              str(run / "config.json"), "--out", str(out), "--device", "cpu"])
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["n_images"] == len(samples) and "reserved NIH patients" in report["locked_set"]
    assert events[-1]["event"] == "done"
    assert set(report["commonest5"]) == {"findings", "candidate", "baseline", "diff_ci"}


def test_paired_bootstrap_resamples_whole_patients() -> None:
    from training.compare import _mean_diff_ci

    rng = np.random.default_rng(1)
    y = (rng.random((60, 1)) < 0.4).astype(np.float32)
    known = np.ones_like(y)
    good = y + rng.normal(0, 0.3, y.shape)  # informative scores
    noise = rng.random(y.shape)
    lo, hi = _mean_diff_ci(y, known, good, noise, ["A"], ["A"], ["A"], 500)
    assert 0 < lo < hi
    assert _mean_diff_ci(y, known, good, good, ["A"], ["A"], ["A"], 500) == [0.0, 0.0]
    # Twelve patients with five identical films each: twelve units of evidence, not sixty, so
    # resampling patients must give a wider interval than resampling films.
    label = np.array([1, 0] * 6, np.float32)
    y12 = np.repeat(label, 5)[:, None]
    good12 = np.repeat(label + rng.normal(0, 0.6, 12), 5)[:, None]
    noise12 = np.repeat(rng.random(12), 5)[:, None]
    known12 = np.ones_like(y12)
    groups = np.repeat(np.arange(12), 5)
    lo_i, hi_i = _mean_diff_ci(y12, known12, good12, noise12, ["A"], ["A"], ["A"], 500)
    lo_p, hi_p = _mean_diff_ci(y12, known12, good12, noise12, ["A"], ["A"], ["A"], 500, groups)
    assert hi_p - lo_p > 1.2 * (hi_i - lo_i)

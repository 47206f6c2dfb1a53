"""The model registry (cxrview.inference.registry) and ``cxrview models`` (cxrview.cli.models).

Bundles here are fakes: a valid card.json and a small weights file whose
sha256 the card records. The registry never loads weights, so no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxrview.cli import main
from cxrview.inference.card import ModelCard
from cxrview.inference.registry import ENTRY_FILE, ModelRegistry, ModelVersion, RegistryError

SHIPPED = "shipped:classifier"


def make_bundle(folder: Path, *, name: str = "test-cls", version: str = "1.0.0", task: str = "classifier",
                payload: bytes = b"weights-1", sha: str | None = None,
                mean_auroc: float | None = 0.7) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(payload)
    card = ModelCard(name=name, version=version,
                     task="multilabel-classification" if task == "classifier" else "segmentation",
                     architecture="resnet18" if task == "classifier" else "unet",
                     labels=["Effusion", "Mass"] if task == "classifier" else ["heart", "left_lung"],
                     input_size=32, thresholds={"Effusion": 0.4} if task == "classifier" else {},
                     metrics={"test": {"mean_auroc": mean_auroc, "n_images": 12}} if mean_auroc else {},
                     weights_sha256=sha if sha is not None else hashlib.sha256(payload).hexdigest())
    (folder / "card.json").write_text(card.to_json(), encoding="utf-8")
    return folder


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake shipped models and an empty registry folder, both via the environment."""
    models = tmp_path / "shipped"
    make_bundle(models / "classifier", name="shipped-cls", payload=b"shipped")
    make_bundle(models / "segmenter", name="shipped-seg", task="segmenter", payload=b"seg", mean_auroc=None)
    monkeypatch.setenv("CXRVIEW_MODELS", str(models))
    monkeypatch.setenv("CXRVIEW_REGISTRY_DIR", str(tmp_path / "registry"))
    return tmp_path


def compared(baseline: str, **extra: object) -> dict[str, object]:
    return {"baseline": baseline, "locked_set": "40 images of 20 locked patients", "verdict": "better",
            "candidate": {"mean_auroc": 0.75}, "baseline_model": {"mean_auroc": 0.70},
            "mean_auroc_diff_ci": [0.01, 0.09], **extra}


# -- registry ---------------------------------------------------------------------------------
def test_defaults_to_the_shipped_models(env: Path) -> None:
    registry = ModelRegistry()
    assert registry.root == env / "registry"
    versions = registry.versions()
    assert [v.id for v in versions] == [SHIPPED]
    shipped = versions[0]
    assert shipped.read_only and shipped.active and shipped.name == "shipped-cls"
    assert registry.active().id == SHIPPED
    assert registry.active_path("classifier") == env / "shipped" / "classifier"
    assert registry.active("segmenter").id == "shipped:segmenter"
    assert [v.id for v in registry.versions(None)] == [SHIPPED, "shipped:segmenter"]
    assert registry.history() == []
    assert not (env / "registry" / "registry.json").exists()  # reading writes nothing


def test_missing_shipped_bundle_is_simply_absent(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    shutil.rmtree(env / "shipped" / "segmenter")
    registry = ModelRegistry()
    assert registry.versions("segmenter") == []
    with pytest.raises(RegistryError, match="no usable segmenter"):
        registry.active("segmenter")
    assert registry.active().id == SHIPPED
    with pytest.raises(RegistryError, match="unknown task"):
        registry.versions("detector")


def test_register_copies_and_never_activates(env: Path) -> None:
    registry = ModelRegistry()
    src = make_bundle(env / "run" / "bundle", name="ft", version="1.1.0", payload=b"candidate")
    sha = hashlib.sha256(b"candidate").hexdigest()
    version = registry.register(src, parent=SHIPPED, manifest_sha256="ab" * 32, log_path="/x/log.jsonl")
    assert isinstance(version, ModelVersion)
    assert version.id == f"ft@1.1.0-{sha[:8]}"
    assert not version.active and not version.read_only
    assert version.parent == SHIPPED and version.manifest_sha256 == "ab" * 32
    assert version.path.parent == env / "registry" / "versions"
    assert (version.path / "model.safetensors").read_bytes() == b"candidate"
    assert ModelCard.read(version.path).name == "ft"
    assert json.loads((version.path / ENTRY_FILE).read_text())["id"] == version.id
    assert registry.active().id == SHIPPED
    assert [v.id for v in registry.versions()] == [SHIPPED, version.id]
    assert version.to_dict()["path"] == str(version.path)
    json.dumps(version.to_dict())
    # the same bundle again gets a distinct id; the source can go away
    again = registry.register(src)
    assert again.id == f"{version.id}-2"
    import shutil

    shutil.rmtree(src)
    assert registry.get(version.id).path.is_dir()
    assert [v.id for v in ModelRegistry().versions()] == [SHIPPED, version.id, again.id]


def test_register_validates_the_bundle(env: Path) -> None:
    registry = ModelRegistry()
    with pytest.raises(RegistryError, match="model card not found"):
        registry.register(env / "nowhere")
    seg = make_bundle(env / "seg", task="segmenter", payload=b"s2", mean_auroc=None)
    with pytest.raises(RegistryError, match="cannot be registered as a classifier"):
        registry.register(seg)
    assert registry.register(seg, task="segmenter").task == "segmenter"
    bad = make_bundle(env / "bad", payload=b"tampered", sha="0" * 64)
    with pytest.raises(RegistryError, match="does not match"):
        registry.register(bad)
    (env / "broken").mkdir()
    (env / "broken" / "card.json").write_text("{not json")
    with pytest.raises(RegistryError, match="unreadable model card"):
        registry.register(env / "broken")
    # nothing half-copied stays behind
    left = [p.name for p in (env / "registry" / "versions").iterdir()]
    assert len(left) == 1 and not left[0].startswith(".")


def test_activate_needs_a_comparison_against_the_active_model(env: Path) -> None:
    registry = ModelRegistry()
    v = registry.register(make_bundle(env / "a", name="a", payload=b"a"))
    with pytest.raises(RegistryError, match="compare it first"):
        registry.activate(v.id)
    registry.set_comparison(v.id, compared("someone-else@1"))
    with pytest.raises(RegistryError, match="compare it again first"):
        registry.activate(v.id)
    assert registry.activation_problem(v.id) is not None
    registry.set_comparison(v.id, compared(SHIPPED))
    assert registry.activation_problem(v.id) is None
    active = registry.activate(v.id)
    assert active.id == v.id and active.active
    assert registry.active().id == v.id and registry.active_path() == v.path
    assert registry.get(SHIPPED).active is False
    (entry,) = registry.history()
    assert entry["id"] == v.id and entry["previous"] == SHIPPED and entry["action"] == "activate"
    assert entry["time"]
    assert registry.activate(v.id).id == v.id and len(registry.history()) == 1  # already active: no-op
    assert registry.active("segmenter").id == "shipped:segmenter"  # tasks are independent


def test_comparison_registered_with_the_version_and_force(env: Path) -> None:
    registry = ModelRegistry()
    a = registry.register(make_bundle(env / "a", name="a", payload=b"a"), comparison=compared(SHIPPED))
    b = registry.register(make_bundle(env / "b", name="b", payload=b"b"), comparison=compared(SHIPPED))
    registry.activate(a.id)
    with pytest.raises(RegistryError, match=f"not with the active classifier {a.id}"):
        registry.activate(b.id)  # compared with the shipped model, but a is active now
    registry.activate(b.id, require_comparison=False)
    assert registry.active().id == b.id
    assert registry.history()[-1].get("forced") is True
    with pytest.raises(RegistryError, match="no model version"):
        registry.activate("nope@1")


def test_shipped_can_always_be_activated(env: Path) -> None:
    registry = ModelRegistry()
    a = registry.register(make_bundle(env / "a", name="a", payload=b"a"), comparison=compared(SHIPPED))
    registry.activate(a.id)
    assert registry.activate(SHIPPED).id == SHIPPED
    assert registry.active().id == SHIPPED


def test_rollback_walks_back_through_the_activations(env: Path) -> None:
    registry = ModelRegistry()
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()
    a = registry.register(make_bundle(env / "a", name="a", payload=b"a"), comparison=compared(SHIPPED))
    registry.activate(a.id)
    b = registry.register(make_bundle(env / "b", name="b", payload=b"b"), comparison=compared(a.id))
    registry.activate(b.id)
    back = registry.rollback()
    assert back.id == a.id and registry.active().id == a.id
    assert registry.history()[-1] | {"time": None} == {"task": "classifier", "id": a.id, "previous": b.id,
                                                        "time": None, "action": "rollback"}
    assert registry.rollback().id == SHIPPED
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()
    # an explicit rollback needs no comparison, to any version
    c = registry.register(make_bundle(env / "c", name="c", payload=b"c"))
    assert registry.rollback(c.id).id == c.id
    assert registry.rollback().id == SHIPPED
    with pytest.raises(RegistryError, match="no model version"):
        registry.rollback("missing@0")


def test_earlier_shipped_versions_stay_available_for_rollback(env: Path) -> None:
    """An upgrade of the shipped defaults keeps the old ones as read-only versions."""
    make_bundle(env / "shipped" / "previous" / "classifier-4.1.0", name="shipped-cls", version="4.1.0",
                payload=b"old")
    make_bundle(env / "shipped" / "previous" / "segmenter-1.0.0", name="shipped-seg", version="1.0.0",
                task="segmenter", payload=b"old-seg", mean_auroc=None)
    registry = ModelRegistry()
    assert [v.id for v in registry.versions()] == [SHIPPED, "shipped:classifier@4.1.0"]
    old = registry.get("shipped:classifier@4.1.0")
    assert old.read_only and not old.active and old.version == "4.1.0"
    assert registry.active().id == SHIPPED  # the new default is active
    assert registry.rollback(old.id).id == old.id and registry.active_path() == old.path
    assert registry.active("segmenter").id == "shipped:segmenter"  # tasks stay independent
    assert registry.activate(SHIPPED).id == SHIPPED
    with pytest.raises(RegistryError, match="shipped"):
        registry.remove(old.id)


def test_rollback_to_shipped(env: Path) -> None:
    registry = ModelRegistry()
    a = registry.register(make_bundle(env / "a", name="a", payload=b"a"), comparison=compared(SHIPPED))
    registry.activate(a.id)
    assert registry.rollback(SHIPPED).id == SHIPPED
    assert registry.active().read_only
    assert [h["action"] for h in registry.history()] == ["activate", "rollback"]


def test_active_falls_back_to_shipped_when_the_bundle_vanishes(env: Path) -> None:
    import shutil

    registry = ModelRegistry()
    a = registry.register(make_bundle(env / "a", name="a", payload=b"a"), comparison=compared(SHIPPED))
    registry.activate(a.id)
    (a.path / "card.json").write_text("garbage")
    assert registry.active().id == SHIPPED
    shutil.rmtree(a.path)
    assert registry.active().id == SHIPPED
    assert [v.id for v in registry.versions() if v.active] == [SHIPPED]
    with pytest.raises(RegistryError, match="missing or unreadable"):
        registry.activate(a.id)


def test_corrupt_registry_file_is_set_aside_and_recovered(env: Path) -> None:
    registry = ModelRegistry()
    a = registry.register(make_bundle(env / "a", name="a", payload=b"a"), comparison=compared(SHIPPED))
    registry.activate(a.id)
    state = env / "registry" / "registry.json"
    state.write_bytes(b"{\"versions\": [tru")  # a torn write by something else
    fresh = ModelRegistry()
    assert fresh.active().id == SHIPPED  # the active choice is lost, never a crash
    assert [v.id for v in fresh.versions()] == [SHIPPED, a.id]  # rebuilt from the version folders
    assert fresh.get(a.id).comparison == compared(SHIPPED)
    aside = list((env / "registry").glob("registry.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"{\"versions\": [tru"
    fresh.activate(a.id)
    assert json.loads(state.read_text())["active"]["classifier"] == a.id
    # not JSON at all, or JSON of the wrong shape
    for junk in (b"\xff\xfe\x00", b"[1, 2]"):
        state.write_bytes(junk)
        assert ModelRegistry().active().id == SHIPPED
    assert len(list((env / "registry").glob("registry.json.corrupt-*"))) == 3


def test_crashed_copy_is_ignored_and_cleaned(env: Path) -> None:
    versions = env / "registry" / "versions"
    staging = versions / ".tmp-xyz"
    make_bundle(staging, name="half", payload=b"half")
    registry = ModelRegistry()
    assert [v.id for v in registry.versions()] == [SHIPPED]
    v = registry.register(make_bundle(env / "a", name="a", payload=b"a"))
    assert not staging.exists()
    assert sorted(p.name for p in versions.iterdir()) == [v.path.name]


def test_crash_between_copy_and_record_leaves_nothing_visible(env: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ModelRegistry()
    src = make_bundle(env / "a", name="a", payload=b"a")
    save = ModelRegistry._save

    def crash(self: ModelRegistry, state: dict[str, list[object]]) -> None:
        if state["versions"]:  # the final record, after the copy is in place
            raise RegistryError("disk full")
        save(self, state)

    monkeypatch.setattr(ModelRegistry, "_save", crash)
    with pytest.raises(RegistryError, match="disk full"):
        registry.register(src)
    monkeypatch.undo()
    monkeypatch.setenv("CXRVIEW_REGISTRY_DIR", str(env / "registry"))
    monkeypatch.setenv("CXRVIEW_MODELS", str(env / "shipped"))
    assert [v.id for v in registry.versions()] == [SHIPPED]
    again = registry.register(src)  # the orphaned copy under the same name is replaced
    assert [v.id for v in registry.versions()] == [SHIPPED, again.id]
    assert not again.id.endswith("-2")


def test_remove(env: Path) -> None:
    registry = ModelRegistry()
    a = registry.register(make_bundle(env / "a", name="a", payload=b"a"), comparison=compared(SHIPPED))
    b = registry.register(make_bundle(env / "b", name="b", payload=b"b"))
    registry.activate(a.id)
    with pytest.raises(RegistryError, match="active"):
        registry.remove(a.id)
    with pytest.raises(RegistryError, match="shipped"):
        registry.remove(SHIPPED)
    registry.remove(b.id)
    assert not b.path.exists()
    assert [v.id for v in registry.versions()] == [SHIPPED, a.id]


def test_the_real_shipped_classifier_is_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrview.inference.shipped import shipped_bundle

    monkeypatch.delenv("CXRVIEW_MODELS", raising=False)
    if not (shipped_bundle("classifier") / "card.json").is_file():
        pytest.skip("no shipped classifier in this checkout")
    registry = ModelRegistry(tmp_path / "reg")
    active = registry.active()
    assert active.id == SHIPPED and active.path == shipped_bundle("classifier")
    assert active.version == ModelCard.read(active.path).version


def test_importing_needs_neither_torch_nor_qt() -> None:
    code = ("import sys, cxrview.inference.registry, cxrview.cli.models; "
            "bad = [m for m in ('torch', 'PySide6') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# -- command line -----------------------------------------------------------------------------
def cli(*argv: str) -> int:
    return main(["models", *argv])


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_cli_list_and_show(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = ModelRegistry()
    a = registry.register(make_bundle(env / "a", name="a", payload=b"a", mean_auroc=0.7123),
                          parent=SHIPPED, comparison=compared(SHIPPED))
    assert cli("list", "--json") == 0
    rows = lines(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [SHIPPED, a.id, "shipped:segmenter"]
    assert [r["active"] for r in rows] == [True, False, True]
    assert rows[1]["parent"] == SHIPPED and rows[1]["comparison"]["baseline"] == SHIPPED
    assert cli("list", "--task", "classifier", "--json") == 0
    assert len(lines(capsys.readouterr().out)) == 2

    assert cli("list") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "TASK", "VERSION", "CREATED", "PARENT"]
    shipped_row = next(line for line in out if SHIPPED in line)
    a_row = next(line for line in out if a.id in line)
    assert shipped_row.startswith("*") and not a_row.startswith("*")
    assert SHIPPED in a_row.split()[-1]

    assert cli("show", a.id, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == a.id and shown["card"]["test_mean_auroc"] == pytest.approx(0.7123)
    assert "better" in shown["comparison_summary"]
    assert cli("show", a.id) == 0
    text = capsys.readouterr().out
    assert "0.712" in text and "better against shipped:classifier" in text and "40 images" in text

    assert cli("show", "nope") == 2
    err = capsys.readouterr().err
    assert err.startswith("cxrview: error: ") and "nope" in err and err.count("\n") == 1


def test_cli_activate_and_rollback(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = ModelRegistry()
    a = registry.register(make_bundle(env / "a", name="a", payload=b"a"))
    assert cli("activate", a.id, "--json") == 2
    err = capsys.readouterr().err
    assert err.startswith("cxrview: error: ") and "compare" in err and "--force" in err
    assert registry.active().id == SHIPPED

    assert cli("activate", a.id, "--force", "--json") == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err
    shown = json.loads(captured.out)
    assert shown["id"] == a.id and shown["active"] is True and shown["previous"] == SHIPPED

    assert cli("rollback", "--json") == 0
    back = json.loads(capsys.readouterr().out)
    assert back["id"] == SHIPPED and back["previous"] == a.id and back["active"] is True
    assert cli("rollback") == 2
    assert "nothing to roll back to" in capsys.readouterr().err

    b = registry.register(make_bundle(env / "b", name="b", payload=b"b"), comparison=compared(SHIPPED))
    assert cli("activate", b.id) == 0
    assert f"activated {b.id}" in capsys.readouterr().out
    assert cli("rollback", a.id, "--json") == 0
    assert json.loads(capsys.readouterr().out)["id"] == a.id
    assert cli("rollback", SHIPPED) == 0
    assert "rolled back to shipped:classifier" in capsys.readouterr().out
    assert ModelRegistry().active().id == SHIPPED
    assert cli("rollback", "--task", "segmenter") == 2
    capsys.readouterr()


def test_cli_registry_option(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = ModelRegistry(tmp_path / "other")
    a = other.register(make_bundle(env / "a", name="a", payload=b"a"))
    assert cli("list", "--json", "--registry", str(tmp_path / "other")) == 0
    assert a.id in [r["id"] for r in lines(capsys.readouterr().out)]
    assert cli("list", "--json") == 0
    assert a.id not in [r["id"] for r in lines(capsys.readouterr().out)]


def test_ensemble_time_estimate_and_summary_count_every_member() -> None:
    from types import SimpleNamespace

    from cxrview.finetune_orchestration import FinetuneOptions, estimate

    single = SimpleNamespace(input_size=224, architecture="resnet18", architecture_args={})
    pair = SimpleNamespace(input_size=224, architecture="ensemble", architecture_args={"members": [
        {"architecture": "resnet18", "input_size": 224}, {"architecture": "resnet18", "input_size": 224}]})
    options = FinetuneOptions(epochs=2, batch_size=8)
    one, two = estimate(single, 500, options), estimate(pair, 500, options)
    assert (two["seconds"] - 20) == pytest.approx(2 * (one["seconds"] - 20), rel=0.01)
    assert two["memory_bytes"] > one["memory_bytes"]
    from cxrview.cli.models import card_summary

    card = ModelCard(name="e", version="1", task="multilabel-classification", architecture="ensemble",
                     labels=["A"], input_size=224, architecture_args=pair.architecture_args)
    summary = card_summary(SimpleNamespace(read_card=lambda: card))
    assert summary is not None and summary["architecture"] == "ensemble of 2 (resnet18@224, resnet18@224)"


def test_training_started_by_the_app_runs_at_background_priority() -> None:
    """The app's training child lowers its own priority so the viewer keeps a core."""
    from cxrview.finetune_orchestration import child_environment

    env = child_environment()
    code = ("import os; from training.__main__ import _yield_to_the_desktop; "
            "before = os.nice(0); _yield_to_the_desktop(); print(os.nice(0) - before)")
    niced = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert niced.stdout.strip() == "10"
    env.pop("CXRVIEW_BACKGROUND")
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == "0"

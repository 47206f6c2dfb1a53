"""Model › Fine-tune on Corrections… end to end, and a training process killed midway."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrview.core.nih_import import import_nih
from cxrview.core.worklist import WorklistQuery, query_images
from cxrview.core.workspace import Workspace
from cxrview.inference.shipped import shipped_bundle
from tests.conftest import SHARED_DATA
from tests.gui.test_ai import _Probe

pytestmark = pytest.mark.skipif(not (shipped_bundle("classifier") / "card.json").is_file(),
                                reason="shipped classifier bundle missing")
DATA_ENTRY = SHARED_DATA / "nih" / "Data_Entry_2017_v2020.csv.gz"
RUN_TIMEOUT_MS = 300000


@pytest.fixture
def corrected(window, nih_dir: Path, tmp_path: Path):
    """A NIH workspace where an annotator corrected and confirmed 12 images."""
    path = tmp_path / "ws.sqlite"
    with Workspace(path, create=True, images_root=nih_dir) as ws:
        import_nih(ws, DATA_ENTRY, nih_dir)
        for record in query_images(ws, WorklistQuery())[:12]:
            if record.current_value("Effusion") == "present":
                ws.set_label(record.id, "Effusion", "absent", author="annotator", reason="not_visible")
            ws.set_review(record.id, "corrected", author="annotator")
    assert window.review.open_workspace(path)
    return window


def _options(**kw):
    from cxrview.finetune_orchestration import FinetuneOptions

    return FinetuneOptions(epochs=1, replay=8, device="cpu", **kw)


@pytest.mark.slow
@pytest.mark.perf  # its event-loop bound is about the whole run: measured once, not rerun
def test_finetune_from_the_gui_then_activate_and_roll_back(qtbot, corrected, app_heap):
    window = corrected
    controller = window.finetune
    dialog = controller.show_dialog()
    assert "shipped:classifier" in dialog.base.text()
    assert "min" in dialog.estimate.text() and "memory" in dialog.estimate.text()
    events, stages = [], []
    probe = _Probe()
    with qtbot.waitSignal(controller.run_finished, timeout=RUN_TIMEOUT_MS) as done:
        assert controller.start(_options())
        controller.run.progress.connect(events.append)
        controller.run.stage.connect(stages.append)
        probe.start()
        assert not controller.start(_options())  # one run at a time
    worst = probe.stop()
    version = done.args[0]
    assert version is not None, controller.last_error
    assert stages == ["training", "comparing", "registering"]
    kinds = {e.get("event") for e in events}
    assert {"start", "epoch", "done", "metric"} <= kinds
    assert len(dialog.curve.steps) >= 1
    comparison = version.comparison
    assert comparison["baseline"] == "shipped:classifier" and comparison["n_images"] > 0
    assert comparison["verdict"] in ("better", "worse", "no clear difference")
    print(f"\nfine-tune run: worst event-loop gap {worst:.0f} ms; locked set {comparison['locked_set']}; "
          f"mean AUROC candidate {comparison['candidate']['mean_auroc']} vs "
          f"{comparison['baseline_model']['mean_auroc']}")
    # 100 ms, not the 50 ms of in-process work: here the stalls come from outside the app
    # (two child processes importing torch from a cold disk cache on 2 cores; 40-75 ms seen
    # on clean clones even with the child niced). Waiting on the training process would
    # block for seconds, so this still catches the SLEAP-style freeze it guards against.
    assert worst < 100.0, f"event loop blocked {worst:.0f} ms during fine-tuning"

    models = controller.show_models()
    models.select_id(version.id)
    assert models.activate_button.isEnabled()
    assert "locked set" in models.details.toPlainText()
    asked: list[str] = []
    models.confirm = lambda title, question: asked.append(question) is None  # answers Yes
    models.activate_button.click()
    assert asked and version.id in asked[0]
    assert window.ai.classifier == str(controller.registry().get(version.id).path)
    assert controller.registry().active().id == version.id
    models.select_id("shipped:classifier")
    models.rollback_button.click()
    assert controller.registry().active().id == "shipped:classifier"
    assert window.ai.classifier == str(controller.registry().active_path())
    models.close()


@pytest.mark.slow
def test_killed_training_keeps_log_and_active_model(qtbot, corrected, nih_dir):
    from cxrview.finetune_orchestration import kill_tree

    window = corrected
    controller = window.finetune
    before = controller.registry().active().id
    versions_before = [v.id for v in controller.registry().versions()]  # shipped ones, earlier ones too
    with qtbot.waitSignal(controller.run_finished, timeout=RUN_TIMEOUT_MS) as done:
        controller.start(_options(reviewed_only=False))
        run = controller.run
        qtbot.waitUntil(lambda: run.process is not None and run._step == "training"
                        and any(e.get("event") == "start" for e in run.events), timeout=RUN_TIMEOUT_MS)
        kill_tree(int(run.process.processId()))
    assert done.args[0] is None
    assert "killed" in controller.last_error or "failed" in controller.last_error
    log = run.plan.log_path
    assert log.is_file()
    assert controller.registry().active().id == before
    assert [v.id for v in controller.registry().versions()] == versions_before  # nothing registered
    # the app keeps working
    with qtbot.waitSignal(window.image_shown, timeout=20000):
        window.open_paths([str(sorted(nih_dir.glob("*.png"))[0])])

"""Review workspace: NIH import, tri-state labels with provenance, undo/redo, worklist, mislabels."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cxrview.core.commands import AddBox, DeleteBox, EditBox, SetLabel, SetReview, UndoStack
from cxrview.core.findings import ABSENT, NIH_FINDINGS, PRESENT, UNCERTAIN
from cxrview.core.nih_import import import_nih
from cxrview.core.worklist import WorklistQuery, count, parse_filters, query_ids, query_images
from cxrview.core.workspace import Workspace, WorkspaceError
from tests.conftest import REPO_ROOT, SHARED_DATA

DATA_ENTRY = SHARED_DATA / "nih" / "Data_Entry_2017_v2020.csv.gz"
BBOX = SHARED_DATA / "nih" / "BBox_List_2017.csv.gz"


@pytest.fixture(scope="module")
def imported_nih(nih_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The full NIH index (112,120 rows) imported once: (database, import summary)."""
    path = tmp_path_factory.mktemp("ws") / "template.sqlite"
    with Workspace(path, create=True, images_root=nih_dir) as ws:
        summary = import_nih(ws, DATA_ENTRY, nih_dir, BBOX)
    print(f"\nimported {summary.rows} Data_Entry rows + {summary.boxes} boxes in {summary.seconds:.2f} s")
    assert summary.rows == 112120 and summary.present == len(list(nih_dir.glob("*.png")))
    return path, summary


@pytest.fixture(scope="module")
def nih_workspace_template(imported_nih: tuple[Path, Any]) -> Path:
    """The imported NIH index; tests copy the database."""
    return imported_nih[0]


@pytest.mark.perf
def test_full_nih_import_takes_at_most_5_s(imported_nih: tuple[Path, Any]) -> None:
    summary = imported_nih[1]
    assert summary.seconds <= 5.0


@pytest.fixture
def ws(nih_workspace_template: Path, tmp_path: Path):
    import shutil

    target = tmp_path / "ws.sqlite"
    with Workspace(nih_workspace_template) as src:
        src.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(nih_workspace_template, target)
    with Workspace(target) as opened:
        yield opened


def test_import_keeps_metadata_and_marks_missing_images(ws: Workspace) -> None:
    record = ws.image_by_file("00029548_015.png")
    assert record is not None and record.present and record.patient_id == 29548 and record.view == "PA"
    assert record.current_findings() == ["Atelectasis", "Effusion", "Infiltration", "Pleural_Thickening"]
    assert record.dataset_value("Mass") == ABSENT and record.current_value("Effusion") == PRESENT
    missing = ws.image_by_file("00000003_000.png")
    assert missing is not None and not missing.present
    assert ws.image_count() == 112120 and ws.review_progress()[1] == ws.image_count(present_only=True)
    with_boxes = ws.execute("SELECT COUNT(DISTINCT image_id) FROM boxes").fetchone()[0]
    assert with_boxes > 800


def test_label_decisions_keep_provenance_and_undo_exactly(ws: Workspace) -> None:
    image = ws.image_by_file("00029548_015.png")
    assert image is not None
    stack = UndoStack(ws)
    stack.push(SetLabel(image.id, "Effusion", ABSENT, "ann", "not_visible"))
    stack.push(SetLabel(image.id, "Mass", UNCERTAIN, "ann"))
    states = {f.finding: f for f in ws.findings(image.id)}
    assert states["Effusion"].dataset == PRESENT  # the original is kept…
    assert states["Effusion"].human is not None and states["Effusion"].human.reason == "not_visible"
    assert states["Effusion"].current == ABSENT  # …and the human decision counts
    assert states["Mass"].current == UNCERTAIN
    stack.undo()
    assert ws.image(image.id).current_value("Mass") == ABSENT
    stack.undo()
    after = ws.image(image.id)
    assert after.current_value("Effusion") == PRESENT and after.human_mask == 0
    assert ws.label_history(image.id) == []
    stack.redo()
    assert ws.image(image.id).current_value("Effusion") == ABSENT
    with pytest.raises(WorkspaceError):
        ws.set_label(image.id, "Effusion", "maybe", author="ann")


def test_review_state_undo_redo(ws: Workspace) -> None:
    image = ws.image_by_file("00000001_000.png")
    assert image is not None
    stack = UndoStack(ws)
    stack.push(SetReview(image.id, "flagged", "ann", note="check old film"))
    assert ws.image(image.id).review_state == "flagged" and ws.image(image.id).note == "check old film"
    stack.push(SetReview(image.id, "confirmed", "ann"))
    assert ws.image(image.id).note == "check old film"  # note kept when not given
    assert ws.review_progress()[0] == 1
    stack.undo()
    stack.undo()
    assert ws.image(image.id).review_state == "unreviewed" and ws.image(image.id).note == ""
    stack.redo()
    assert ws.image(image.id).review_state == "flagged"


def test_box_commands_take_over_dataset_boxes_and_undo(ws: Workspace) -> None:
    image_id = ws.execute("SELECT image_id FROM boxes GROUP BY image_id HAVING COUNT(*) >= 2 LIMIT 1"
                          ).fetchone()[0]
    dataset = ws.boxes(image_id)
    assert all(b.source == "dataset" for b in dataset)
    stack = UndoStack(ws)
    # moving a dataset box edits a human copy; the original stays as it was
    gesture = object()
    first = dataset[0]
    stack.push(EditBox(image_id, "ann", box_id=first.id, rect=(10, 10, 50, 50), gesture=gesture))
    stack.push(EditBox(image_id, "ann", box_id=first.id, rect=(12, 14, 50, 50), gesture=gesture))
    assert len(stack._done) == 1  # one drag = one step
    answer = ws.answer_boxes(image_id)
    assert len(answer) == len(dataset) and all(b.source == "human" for b in answer)
    moved = next(b for b in answer if b.origin_id == first.id)
    assert moved.rect() == (12, 14, 50, 50)
    assert ws.box(first.id).rect() == first.rect()
    stack.push(EditBox(image_id, "ann", box_id=moved.id, finding="Nodule"))
    stack.push(DeleteBox(image_id, "ann", box_id=dataset[1].id))
    stack.push(AddBox(image_id, "ann", finding="Mass", rect=(100, 100, 40, 30)))
    answer = ws.answer_boxes(image_id)
    assert len(answer) == len(dataset)  # one deleted, one added
    assert {b.finding for b in answer} >= {"Nodule", "Mass"}
    for _ in range(4):
        stack.undo()
    assert ws.answer_boxes(image_id) == ws.boxes(image_id, source="dataset")  # back to the dataset's
    assert ws.boxes(image_id, source="human", include_deleted=True) == []
    for _ in range(4):
        stack.redo()
    assert len(ws.answer_boxes(image_id)) == len(dataset)
    assert not stack.is_dirty()
    stack.begin_edit()
    assert stack.is_dirty()
    stack.end_edit()


def test_worklist_filters(ws: Workspace) -> None:
    q = parse_filters(["finding=Effusion", "state=unreviewed"])
    ids = query_ids(ws, q)
    assert ids and all(ws.image(i).current_value("Effusion") == PRESENT for i in ids)
    everywhere = parse_filters(["finding=Effusion", "all"])
    assert count(ws, everywhere) == 13317  # NIH's Effusion count in Data_Entry_2017
    with pytest.raises(ValueError, match="unknown filter"):
        parse_filters(["colour=blue"])


@pytest.mark.perf
def test_worklist_queries_take_at_most_100_ms(ws: Workspace) -> None:
    timings = []
    for query in (WorklistQuery(presence="all", sort="file", limit=200),
                  WorklistQuery(presence="all", sort="mislabel", limit=200),
                  parse_filters(["finding=Pneumothorax", "all", "disagreement"]),
                  WorklistQuery(presence="all", patient=29548, sort="patient"),
                  WorklistQuery(presence="all", view="AP", sort="triage", limit=200)):
        start = time.perf_counter()
        query_images(ws, query)
        count(ws, query)
        timings.append((time.perf_counter() - start) * 1000)
    print(f"\nworklist queries on 112,120 images: {', '.join(f'{t:.0f}' for t in timings)} ms")
    assert max(timings) <= 100.0


def test_mislabel_ordering_finds_the_planted_errors(ws: Workspace) -> None:
    """Constructed case: a model agrees with every label except on two images whose labels we
    flipped; those two must top the mislabel order, with the flipped finding as the reason."""
    from cxrview.core.mislabel import rescore

    present = query_images(ws, WorklistQuery(sort="file"))
    rng = np.random.default_rng(0)
    probs: dict[int, list[float]] = {}
    for record in present:
        truth = np.array([record.current_value(n) == PRESENT for n in NIH_FINDINGS], float)
        probs[record.id] = list(np.where(truth == 1, rng.uniform(0.75, 0.95, 14), rng.uniform(0.02, 0.2, 14)))
    planted = {present[5].id: "Pneumothorax", present[17].id: "Cardiomegaly"}
    for image_id, finding in planted.items():
        k = NIH_FINDINGS.index(finding)
        was_present = ws.image(image_id).current_value(finding) == PRESENT
        probs[image_id][k] = 0.01 if not was_present else 0.99  # confident...
        ws.set_label(image_id, finding, ABSENT if was_present else PRESENT, author="bad-annotator")  # …wrong
    ws.store_predictions("test-model", probs, {i: True for i in probs})
    assert rescore(ws, "test-model", {n: 0.5 for n in NIH_FINDINGS}) == len(present)
    top = query_images(ws, WorklistQuery(sort="mislabel", limit=2))
    assert {r.id for r in top} == set(planted)
    for record in top:
        assert record.suspect_finding == planted[record.id]
        assert record.suspicion().startswith(("labelled", "not labelled"))
        assert record.model_disagreements == 1
    assert count(ws, WorklistQuery(disagreement=True)) >= 2
    # in-sample predictions give no mislabel score
    ws.store_predictions("in-sample", probs, {i: False for i in probs})
    rescore(ws, "in-sample", {n: 0.5 for n in NIH_FINDINGS})
    assert ws.image(present[5].id).mislabel_score is None


def test_triage_ranks_only_validated_findings(ws: Workspace) -> None:
    """A model's triage score is its highest probability among findings with an operating point:
    a not-validated finding's 0.99 ranks nothing, and a model without any ranks no film."""
    from cxrview.core.mislabel import rescore

    present = query_images(ws, WorklistQuery(sort="file"))[:3]
    probs = {r.id: [0.99 if n == "Hernia" else 0.1 + 0.1 * i for n in NIH_FINDINGS]
             for i, r in enumerate(present)}
    ws.store_predictions("partly-validated", probs, {i: True for i in probs})
    rescore(ws, "partly-validated", {"Effusion": 0.5, "Mass": 0.5})  # Hernia: not validated
    assert [ws.image(r.id).triage_score for r in present] == pytest.approx([0.1, 0.2, 0.3])
    rescore(ws, "partly-validated", {})
    assert all(ws.image(r.id).triage_score is None for r in present)


def test_same_patient_follow_ups(ws: Workspace) -> None:
    image = ws.image_by_file("00029548_015.png")
    assert image is not None
    series = ws.same_patient(image.id)
    assert [r.follow_up for r in series] == sorted(r.follow_up for r in series)
    assert image.id in [r.id for r in series] and len(series) > 10


def test_not_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="no workspace"):
        Workspace(tmp_path / "nothing.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(WorkspaceError, match="not a usable"):
        Workspace(junk)


_EDITOR = textwrap.dedent("""
    import sys
    from cxrview.core.workspace import Workspace
    ws = Workspace(sys.argv[1])
    ids = [r[0] for r in ws.execute("SELECT id FROM images WHERE present = 1 ORDER BY id")]
    n = 0
    while True:
        image_id = ids[n % len(ids)]
        ws.set_label(image_id, "Mass", "uncertain" if n % 2 else "present", author="crash", reason=None)
        ws.set_review(image_id, "flagged", author="crash", note=f"edit {n}")
        n += 1
        print(n, flush=True)
""")


def test_killed_process_loses_at_most_the_edit_in_flight(ws: Workspace, tmp_path: Path) -> None:
    script = tmp_path / "editor.py"
    script.write_text(_EDITOR)
    path = str(ws.path)
    ws.close()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    for delay in (0.4, 0.9, 1.3):
        with Workspace(path) as before:
            start_rows = before.execute("SELECT COUNT(*) FROM labels WHERE author = 'crash'").fetchone()[0]
        proc = subprocess.Popen([sys.executable, str(script), path], stdout=subprocess.PIPE, text=True,
                                env=env)
        assert proc.stdout is not None
        last = 0
        deadline = time.monotonic() + 30
        while last < 5 and time.monotonic() < deadline:  # let it get going
            last = int(proc.stdout.readline() or 0)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        reported = [int(line) for line in proc.stdout.read().split()] if proc.stdout else []
        proc.wait()
        done = max([last, *reported])  # edits whose both transactions had committed
        with Workspace(path) as reopened:
            assert reopened.integrity_ok()
            rows = reopened.execute("SELECT COUNT(*) FROM labels WHERE author = 'crash'").fetchone()[0]
            notes = reopened.execute("SELECT COUNT(*) FROM images WHERE note LIKE 'edit %'").fetchone()[0]
            masks_ok = all(
                reopened.image(i).human_mask != 0
                for (i,) in reopened.execute("SELECT DISTINCT image_id FROM labels WHERE author = 'crash'"))
        added = rows - start_rows
        assert done <= added <= done + 1, (added, done)  # nothing committed is lost; one in flight at most
        assert masks_ok and notes > 0


def test_default_workspace_is_never_written_into_a_read_only_folder(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrview.core.workspace import DB_NAME, default_workspace_path

    monkeypatch.delenv("CXRVIEW_WORKSPACE_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    writable = tmp_path / "mine"
    writable.mkdir()
    assert default_workspace_path(writable) == writable.resolve() / DB_NAME
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o555)
    try:
        path = default_workspace_path(shared)
    finally:
        shared.chmod(0o755)
    assert shared not in path.parents and path.name.startswith("shared-")


def _scoring_card(labels: list[str], *, trained_on: list[int]) -> Any:
    from cxrview.inference.card import ModelCard
    from tests.unit.card_factory import evidence_for

    validated = ["Effusion", "Mass"]
    return ModelCard(name="scoring-test", version="1", task="multilabel-classification",
                     architecture="resnet18", labels=labels, input_size=32,
                     thresholds={n: 0.5 for n in validated if n in labels},
                     evidence=evidence_for(labels, validated),
                     training={"split_patients": {"train": [f"nih:{p}" for p in trained_on], "val": [],
                                                  "test": []}})


def _prediction(probabilities: dict[str, float], *, withheld: bool = False) -> Any:
    from cxrview.inference.predict import Prediction

    reasons = ["lateral view"] if withheld else []
    return Prediction(path="x.png", image_size=(256, 256), model={},
                      findings={n: {"probability": p} for n, p in probabilities.items()},
                      validity={"ok": not withheld, "warnings": [], "reasons": reasons, "withheld": withheld,
                                "scores": {}})


def test_record_predictions_stores_flags_skips_withheld_and_rescores(ws: Workspace) -> None:
    """The one recording path (CLI score, Score All Files, the review panel): probabilities and
    out-of-sample flags stored, withheld films skipped, the recorded images scored as a full
    rescore scores them."""
    from cxrview.inference.cache import model_identity
    from cxrview.inference.scoring import ScoringError, record_predictions, rescore_workspace

    first, seen, withheld = query_images(ws, WorklistQuery(sort="file"))[:3]
    assert seen.patient_id is not None
    card = _scoring_card(list(NIH_FINDINGS), trained_on=[seen.patient_id])
    probs = {n: 0.1 + 0.05 * k for k, n in enumerate(NIH_FINDINGS)}
    recorded = record_predictions(ws, card, {first.id: _prediction(probs), seen.id: _prediction(probs),
                                             withheld.id: _prediction(probs, withheld=True)})
    model = model_identity(card)
    assert (recorded.model, recorded.stored, recorded.withheld, recorded.in_sample, recorded.scored) == (
        model, 2, 1, 1, 2)
    stored = ws.predictions_for(model)
    assert set(stored) == {first.id, seen.id}
    assert stored[first.id] == (pytest.approx([probs[n] for n in NIH_FINDINGS]), True)
    assert stored[seen.id][1] is False  # its patient was in the model's training split
    # triage: the highest validated finding only (Effusion, Mass), none for the withheld film
    assert ws.image(first.id).triage_score == pytest.approx(max(probs["Effusion"], probs["Mass"]))
    assert ws.image(withheld.id).triage_score is None and ws.image(withheld.id).scored_model is None
    assert ws.image(seen.id).mislabel_score is None  # in-sample: no judgement of its labels
    before = [ws.image(i) for i in (first.id, seen.id)]
    assert rescore_workspace(ws, card) == 2
    assert [ws.image(i) for i in (first.id, seen.id)] == before
    with pytest.raises(ScoringError, match="not the 14 NIH findings"):
        record_predictions(ws, _scoring_card(["Effusion", "Mass"], trained_on=[]),
                           {first.id: _prediction(probs)})

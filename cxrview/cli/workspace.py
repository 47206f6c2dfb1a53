"""``cxrview import-nih | score | worklist | export``: the review workspace from the command line.

Same store and queries as the GUI (``cxrview.core.workspace`` / ``worklist``),
for scripting. Results go to stdout, progress and problems to stderr; exit
code 2 on any error, with a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrview.cli.errors import EXIT_OK, print_error

if TYPE_CHECKING:
    from cxrview.core.workspace import Workspace
    from cxrview.inference.predict import Prediction, Predictor


def add_import_arguments(imp: argparse.ArgumentParser) -> None:
    imp.add_argument("--images", required=True, action="append", help="image folder (repeatable)")
    imp.add_argument("--data-entry", required=True, help="Data_Entry_2017 CSV (.csv or .csv.gz)")
    imp.add_argument("--bbox", help="BBox_List_2017 CSV")
    imp.add_argument("--workspace", required=True, metavar="W", help="workspace database file or folder")
    imp.add_argument("--replace-dataset-labels", action="store_true",
                     help="let these CSVs replace dataset labels, patient IDs and boxes already in the "
                          "workspace (refused otherwise, e.g. when re-importing an export)")


def add_score_arguments(score: argparse.ArgumentParser) -> None:
    score.add_argument("workspace", metavar="W")
    score.add_argument("--model", metavar="DIR",
                        help="classifier bundle (default: the active model, see `cxrview models`)")
    score.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    score.add_argument("--limit", type=int, help="score at most N images (in file order)")
    score.add_argument("--predictions", metavar="FILE",
                       help="store out-of-fold predictions from `python -m training oof`")
    score.add_argument("--rescore-only", action="store_true",
                       help="recompute scores from stored predictions (after label edits) without predicting")


def add_worklist_arguments(wl: argparse.ArgumentParser) -> None:
    wl.add_argument("workspace", metavar="W")
    wl.add_argument("--filter", action="append", default=[], metavar="F",
                    help="finding=NAME[:present|absent|uncertain], state=S, patient=N, view=PA|AP, "
                         "disagreement, missing, all, text=S (repeatable, all must hold)")
    wl.add_argument("--sort", default="file", choices=["file", "triage", "mislabel", "patient"])
    wl.add_argument("--limit", type=int, default=50)
    wl.add_argument("--json", action="store_true", help="one JSON object per image per line")


def add_export_arguments(ex: argparse.ArgumentParser) -> None:
    ex.add_argument("workspace", metavar="W")
    ex.add_argument("--format", required=True, choices=["nih-csv", "coco", "manifest"])
    ex.add_argument("-o", "--output", required=True, help="folder (nih-csv) or JSON file")
    ex.add_argument("--reviewed-only", action="store_true", help="manifest: reviewed images only")
    ex.add_argument("--include-patient-ids", action="store_true",
                    help="write real patient IDs (default: pseudonyms in manifests)")
    ex.add_argument("--pseudonymise", action="store_true",
                    help="an export to share: pseudonymous file names, patient numbers and reviewers; "
                         "no reserved flag, ID residue or local paths (the default keeps what local "
                         "training needs: NIH file names, reserved class, logins, paths)")


def run_import(args: argparse.Namespace) -> int:
    from cxrview.core.nih_import import import_nih
    from cxrview.core.workspace import Workspace

    folders = [Path(p) for p in args.images]
    with Workspace(args.workspace, create=True, images_root=folders[0]) as ws:
        summary = import_nih(ws, args.data_entry, folders, args.bbox,
                             replace_dataset_labels=args.replace_dataset_labels)
        print(f"{ws.path}: {summary.rows} images ({summary.present} here, {summary.missing} not on this "
              f"machine), {summary.boxes} boxes, in {summary.seconds:.1f} s", file=sys.stderr)
        if summary.unknown_box_images:
            print(f"  {summary.unknown_box_images} BBox rows were skipped (unknown image or finding)",
                  file=sys.stderr)
    print(json.dumps({"workspace": str(ws.path), "rows": summary.rows, "present": summary.present,
                      "missing": summary.missing, "boxes": summary.boxes,
                      "seconds": round(summary.seconds, 3)}))
    return EXIT_OK


def _import_predictions(args: argparse.Namespace) -> int:
    """Out-of-fold predictions (JSON lines) → stored as out-of-sample, then scores recomputed."""
    import statistics

    from cxrview.core.findings import NIH_FINDINGS
    from cxrview.core.mislabel import rescore
    from cxrview.core.workspace import Workspace

    path = Path(args.predictions)
    model = f"oof:{path.resolve().parent.name}/{path.stem}"
    with Workspace(args.workspace) as ws:
        probs: dict[int, list[float]] = {}
        thresholds: dict[str, list[float]] = {}
        unknown = 0
        with open(path, encoding="utf-8") as handle:
            for n, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    values = [float(row["probabilities"][name]) for name in NIH_FINDINGS]
                except (ValueError, KeyError, TypeError) as exc:
                    return print_error(f"{path}:{n}: not an out-of-fold prediction line ({exc})")
                record = ws.image_by_file(str(row.get("image", "")))
                if record is None:
                    unknown += 1
                    continue
                probs[record.id] = values
                for name, t in (row.get("thresholds") or {}).items():
                    thresholds.setdefault(name, []).append(float(t))
        ws.store_predictions(model, probs, {i: True for i in probs})
        n = rescore(ws, model, {k: statistics.median(v) for k, v in thresholds.items()})
    print(f"stored {len(probs)} out-of-sample predictions as {model}; {unknown} lines named images this "
          "workspace does not have", file=sys.stderr)
    print(json.dumps({"workspace": str(ws.path), "model": model, "scored": n}))
    return EXIT_OK


def run_score(args: argparse.Namespace) -> int:
    """Predict the workspace's images (cache first) and record them (``scoring.record_predictions``),
    as Model › Score All Files does in the viewer."""
    if args.predictions:
        return _import_predictions(args)
    from cxrview.cli.predict import default_classifier
    from cxrview.core.workspace import Workspace
    from cxrview.inference.cache import model_identity
    from cxrview.inference.card import ModelCard
    from cxrview.inference.predict import Predictor
    from cxrview.inference.scoring import rescore_workspace, workspace_problem
    from cxrview.inference.shipped import SEGMENTER, shipped_bundle

    classifier = Path(args.model) if args.model else default_classifier()
    if not (classifier / "card.json").is_file():
        return print_error(f"{classifier}: no classifier bundle here (no card.json)")
    with Workspace(args.workspace) as ws:
        predictor = None
        if args.rescore_only:
            card = ModelCard.read(classifier)
        else:
            segmenter = shipped_bundle(SEGMENTER)  # the input check (and a cropping classifier) need it
            predictor = Predictor(classifier, segmenter if segmenter.is_dir() else None, device=args.device)
            card = predictor.card
        problem = workspace_problem(card)
        if problem is not None:
            return print_error(problem)
        if predictor is not None:
            _predict_and_record(ws, predictor, args.limit)
        # Every image this model scored, earlier runs' too: their labels may have been edited since.
        n = rescore_workspace(ws, card)
        print(json.dumps({"workspace": str(ws.path), "model": model_identity(card), "scored": n}))
    return EXIT_OK


RECORD_EVERY = 64  # predictions recorded at a time: a stopped run keeps its work, memory stays bounded


def _predict_and_record(ws: Workspace, predictor: Predictor, limit: int | None) -> None:
    """The first ``limit`` images in file order, predicted (from the results cache when these models
    saw them) and recorded every :data:`RECORD_EVERY` images; progress and problems on stderr."""
    from cxrview.core import ImageLoadError, load_image
    from cxrview.core.worklist import WorklistQuery, query_images
    from cxrview.inference.cache import ResultCache, model_identity
    from cxrview.inference.scoring import predict_cached, record_predictions

    records = query_images(ws, WorklistQuery(sort="file", limit=limit))
    cache = ResultCache()
    pending: dict[int, Prediction] = {}
    stored = withheld = in_sample = failed = 0
    start = time.perf_counter()

    def record() -> None:
        nonlocal stored, withheld, in_sample
        if not pending:
            return
        done = record_predictions(ws, predictor.card, pending)
        stored, withheld, in_sample = (stored + done.stored, withheld + done.withheld,
                                       in_sample + done.in_sample)
        pending.clear()

    for n, item in enumerate(records, 1):
        try:
            image = load_image(ws.absolute_path(item))
            # Scores need probabilities and the input check, not maps: the viewer makes those on opening.
            prediction = predict_cached(predictor, image, cache=cache, cam_for=None).prediction
        except (ImageLoadError, RuntimeError, ValueError) as exc:
            failed += 1
            print(f"cxrview: {item.file}: {exc}", file=sys.stderr)
            continue
        if prediction.withheld:  # not a frontal adult chest film: nothing to rank or judge
            print(f"\ncxrview: {item.file}: AI output withheld: " + "; ".join(prediction.validity["reasons"]),
                  file=sys.stderr)
        pending[item.id] = prediction
        if len(pending) >= RECORD_EVERY:
            record()
        if n % 10 == 0 or n == len(records):
            rate = n / (time.perf_counter() - start)
            print(f"\rscored {n}/{len(records)} ({rate:.1f} img/s)", end="", file=sys.stderr)
    record()
    print(file=sys.stderr)
    print(f"stored {stored} predictions from {model_identity(predictor.card)}; {in_sample} images were in "
          f"the model's training/validation data (no mislabel score for them); {withheld} withheld by the "
          f"input check; {failed} failed", file=sys.stderr)


def run_worklist(args: argparse.Namespace) -> int:
    from cxrview.core.worklist import count, parse_filters, query_images, worklist_row
    from cxrview.core.workspace import Workspace

    with Workspace(args.workspace) as ws:
        query = parse_filters(args.filter)
        query.sort, query.limit = args.sort, args.limit
        start = time.perf_counter()
        records = query_images(ws, query)
        total = count(ws, query)
        elapsed = (time.perf_counter() - start) * 1000
        locked = ws.locked_patients()
        for record in records:
            row = worklist_row(record, args.sort, locked=locked)
            if args.json:
                print(json.dumps(row))
            else:
                score = "   -  " if row["score"] is None else f"{row['score']:.3f}"
                why = row["suspected"][0]["why"] if row["suspected"] and args.sort == "mislabel" else \
                    ", ".join(row["labels"]) or "No Finding"
                badge = f"  (not trained on: {row['not_trained']})" if row["not_trained"] else ""
                print(f"{score}  {row['image']}  [{row['review_state']}]  {why}{badge}")
        reviewed, present = ws.review_progress()
        print(f"{len(records)} of {total} matching images ({elapsed:.0f} ms); {reviewed} of {present} "
              "reviewed", file=sys.stderr)
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    from cxrview.core.dataset_export import export_workspace
    from cxrview.core.workspace import Workspace

    options: dict[str, Any] = {"include_patient_ids": args.include_patient_ids}
    if args.pseudonymise and args.include_patient_ids:
        return print_error("--pseudonymise and --include-patient-ids exclude each other")
    if args.format == "manifest":
        options["reviewed_only"] = args.reviewed_only
    elif args.reviewed_only:
        return print_error("--reviewed-only applies to --format manifest")
    with Workspace(args.workspace) as ws:
        if args.format == "coco":
            options.pop("include_patient_ids")
        if args.pseudonymise:
            options["pseudonymise"] = True
        summary = export_workspace(ws, args.format, Path(args.output), **options)
    print(json.dumps(summary, default=str))
    return EXIT_OK

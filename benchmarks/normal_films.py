"""Over-calling on adult chest films with no finding that the classifier never trained on.

A viewer that flags "Mass" on most normal films is as wrong as one that misses
a mass. This runs the shipped (or given) models on sets of normal films from
sources the classifier never saw in training, exactly as ``cxrview predict``
does (input check, calibrated probabilities, validated operating points), and
reports per set:

* positive findings per film as the reader sees them (a withheld film shows none),
  and the share of films with none — the issue's goal is ≤ 0.3 and ≥ 80 %;
* the same without the gate (``--force``), so the gate's share of the result is visible;
* how many films the input check withheld, and why;
* which findings are called, how often.

Beside it, what was traded: the sensitivity (with its interval) of each validated
finding on the reserved NIH patients, as recorded in the card at publication.

Sets (each optional):
* ``--jsrt DIR``: JSRT's non-nodule films (JPCNN*), 93 digitised PA films from Japan;
* ``--nih-images DIR …`` with ``--data-entry CSV``: NIH "No Finding" films of reserved
  patients (ID divisible by 5; never trained or tuned on), images of at least 256 px;
* ``--rsna-manifest JSON``: the held-out part of the RSNA "Normal" films (``heldout_eval``;
  NIH films re-encoded by another pipeline, de-duplicated against every local NIH image).

    .venv/bin/python benchmarks/normal_films.py --jsrt ~/cxrdata/jsrt/JSRT/jsrt_images/images \\
        --nih-images ~/cxrdata/nih1000 --nih-images ../shared/data/nih/images_256 \\
        --data-entry ../shared/data/nih/Data_Entry_2017_v2020.csv.gz [--rsna-manifest M] [--json OUT]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MIN_SIDE = 200  # the 64-px NIH copies are not films a reader would open (RSNA copies are 224 px)


def nih_normals(dirs: list[str], data_entry: str) -> list[Path]:
    from training.sources import is_reserved_patient, read_data_entry

    entries = read_data_entry(data_entry)
    found: dict[str, Path] = {}
    for folder in dirs:
        for path in sorted(Path(folder).expanduser().rglob("*.png")):
            entry = entries.get(path.name)
            if entry is not None and not entry.findings and is_reserved_patient(entry.patient_id):
                found.setdefault(path.name, path)
    return list(found.values())


def legacy_calls(card_path: str | None, predictor, data: dict) -> int | None:
    """Calls as cxrview made them before validated operating points (for the "before" column):
    raw probability ≥ the old card's threshold, every finding that had one, no gate."""
    if card_path is None:
        return None
    from cxrview.inference.evidence import logit, platt_parameters, sigmoid

    old = json.loads(Path(card_path).read_text())["thresholds"]
    scale, bias = platt_parameters(predictor.card.calibration, predictor.card.labels)
    calls = 0
    for j, name in enumerate(predictor.card.labels):
        p = data["findings"][name]["probability"]
        raw = float(sigmoid((logit(p) - bias[j]) / scale[j]))  # undo the calibration
        calls += name in old and raw >= old[name]
    return calls


def run_set(predictor, paths: list[Path], legacy: str | None = None) -> dict:
    from cxrview.core import ImageLoadError, load_image
    from cxrview.inference.gate import positive_findings, presented

    shown, forced, before, reasons = [], [], [], collections.Counter()
    called = collections.Counter()
    failed = withheld = 0
    for path in paths:
        try:
            image = load_image(path)
        except ImageLoadError:
            failed += 1
            continue
        if min(image.width, image.height) < MIN_SIDE:
            continue
        data = predictor.predict(image, cam_for=None).to_dict()
        visible = positive_findings(presented(data))
        everything = positive_findings(presented(data, force=True))
        shown.append(len(visible))
        forced.append(len(everything))
        old = legacy_calls(legacy, predictor, data)
        if old is not None:
            before.append(old)
        called.update(everything)
        if data["withheld"]:
            withheld += 1
            reasons.update(r.split(" (")[0].split(":")[0] for r in data["validity"]["reasons"])
    n = len(shown)

    def rate(values: list[int]) -> tuple[float | None, float | None]:
        return (sum(values) / n, sum(v == 0 for v in values) / n) if n else (None, None)

    per_film, share_none = rate(shown)
    per_film_ungated, share_none_ungated = rate(forced)
    return {"n": n, "failed": failed, "positives_per_film": per_film, "share_with_none": share_none,
            "positives_per_film_ungated": per_film_ungated, "share_with_none_ungated": share_none_ungated,
            "positives_per_film_before": sum(before) / n if before else None,
            "share_with_none_before": sum(b == 0 for b in before) / n if before else None,
            "withheld": withheld, "withheld_reasons": dict(reasons),
            "calls_ungated": dict(called.most_common())}


def main() -> int:
    from cxrview.inference.predict import Predictor
    from cxrview.inference.shipped import shipped_bundle

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jsrt")
    parser.add_argument("--nih-images", action="append", default=[])
    parser.add_argument("--data-entry",
                        default=str(REPO.parent / "shared/data/nih/Data_Entry_2017_v2020.csv.gz"))
    parser.add_argument("--rsna-manifest")
    parser.add_argument("--rsna-limit", type=int, default=400, help="first N held-out RSNA films")
    parser.add_argument("--model", default=str(shipped_bundle("classifier")))
    parser.add_argument("--segmenter", default=str(shipped_bundle("segmenter")))
    parser.add_argument("--legacy-card",
                        help="a card.json from before validated operating points (e.g. `git show "
                             "0050d90:resources/models/classifier/card.json`): also count its calls")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args()

    sets: dict[str, list[Path]] = {}
    if args.jsrt:
        sets["JSRT non-nodule (JPCNN)"] = sorted(Path(args.jsrt).expanduser().glob("JPCNN*"))
    if args.nih_images:
        sets["NIH No Finding, reserved patients"] = nih_normals(args.nih_images, args.data_entry)
    if args.rsna_manifest:
        manifest = json.loads(Path(args.rsna_manifest).expanduser().read_text())
        sets["RSNA Normal, held-out part"] = [Path(p) for p in manifest["heldout_eval"][: args.rsna_limit]]
    if not sets:
        parser.error("give at least one set (--jsrt, --nih-images, --rsna-manifest)")
    predictor = Predictor(args.model, args.segmenter, device="cpu")
    card = predictor.card
    print(f"classifier {card.name} {card.version}; validated findings: "
          + ", ".join(n for n in card.labels if card.is_validated(n)))
    report = {"model": predictor.model_info(), "sets": {}}
    for name, paths in sets.items():
        start = time.perf_counter()
        result = run_set(predictor, paths, args.legacy_card)
        result["seconds"] = round(time.perf_counter() - start, 1)
        report["sets"][name] = result
        print(f"\n{name}: {result['n']} films ({result['seconds']:.0f} s)")
        if not result["n"]:
            continue
        print(f"  as shown:     {result['positives_per_film']:.2f} positive findings per film, "
              f"{result['share_with_none']:.0%} with none")
        print(f"  without gate: {result['positives_per_film_ungated']:.2f} per film, "
              f"{result['share_with_none_ungated']:.0%} with none")
        if result["positives_per_film_before"] is not None:
            print(f"  before (old thresholds, raw outputs, no gate): "
                  f"{result['positives_per_film_before']:.2f} per film, "
                  f"{result['share_with_none_before']:.0%} with none")
        print(f"  withheld by the input check: {result['withheld']} ({result['withheld_reasons'] or 'none'})")
        print(f"  findings called (without gate): {result['calls_ungated'] or 'none'}")
    reserved = card.evidence.get("reserved_nih") or {}
    if reserved:
        print("\nWhat it costs — validated findings on the reserved NIH patients (card, at publication):")
        for name, entry in reserved["per_label"].items():
            if card.is_validated(name) and entry.get("sensitivity") is not None:
                lo, hi = entry["sensitivity_ci"]
                print(f"  {name:20s} sensitivity {entry['sensitivity']:.2f} [{lo:.2f}–{hi:.2f}] of "
                      f"{entry['n_pos']} positives, specificity {entry['specificity']:.2f}")
        report["reserved_nih"] = reserved
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

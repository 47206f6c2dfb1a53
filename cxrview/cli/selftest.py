"""``cxrview --version`` and ``cxrview --self-test [--json] [--device D]``.

The self-test proves an installation or a desktop bundle works, without any data: it writes a
tiny DICOM file in every transfer syntax the loader supports (:mod:`cxrview.core.syntax_samples`)
into a temporary folder, decodes each through the loader and compares the pixels with what was
encoded, then runs one prediction with the active models on a generated chest phantom. One
``OK``/``FAIL`` line per part (or one JSON object with ``--json``); exit code 1 when any part
failed. A part never raises: its error becomes its FAIL line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cxrview.cli.errors import EXIT_OK

EXIT_SELF_TEST_FAILED = 1


@dataclass(frozen=True)
class Part:
    part: str
    ok: bool
    detail: str
    ms: float


def add_version_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="version and models as JSON")


def run_version(args: argparse.Namespace) -> int:
    from cxrview.about import gather, version_text

    info = gather(third_party=False)
    if args.json:
        print(json.dumps({"version": info.version, "licence": info.licence,
                          "models": [{"task": m.task, "name": m.name, "version": m.version, "path": m.path,
                                      "problem": m.problem} for m in info.models]}))
    else:
        print(version_text(info))
    return EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``self-test`` options."""
    parser.add_argument("--json", action="store_true", help="one JSON object: every part, ok, details")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"),
                        help="where the prediction runs (default: cpu)")
    parser.add_argument("--no-predict", action="store_true", help="decoders only (no models needed)")


def _timed(name: str, check: Callable[[], str]) -> Part:
    start = time.perf_counter()
    try:
        detail, ok = check(), True
    except Exception as exc:  # the part failed; the self-test goes on
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return Part(name, ok, detail, round((time.perf_counter() - start) * 1000, 1))


def decode_parts(folder: Path) -> list[Part]:
    """One part per supported transfer syntax: write a sample, decode it, compare the pixels."""
    from cxrview.core import load_image
    from cxrview.core.syntax_samples import SYNTAXES, SampleSyntax, decode_error, write_sample

    def check(syntax: SampleSyntax) -> str:
        path, expected = write_sample(folder, syntax)
        image = load_image(path)
        error = decode_error(image.stored, expected)
        if error is None:
            raise ValueError(f"decoded {image.stored.shape}, expected {expected.shape}")
        if error > syntax.max_error:
            raise ValueError(f"pixels off by up to {error} (at most {syntax.max_error} allowed)")
        exact = "bit-exact" if error == 0 else f"within {error} of {(1 << syntax.bits) - 1}"
        return f"{syntax.uid}: {expected.shape[1]}×{expected.shape[0]}, {syntax.bits}-bit, {exact}"

    return [_timed(f"decode {syntax.name}", lambda syntax=syntax: check(syntax))  # type: ignore[misc]
            for syntax in SYNTAXES]


def predict_part(folder: Path, device: str) -> Part:
    """One prediction with the active classifier and the shipped segmenter on a generated phantom."""

    def check() -> str:
        import cv2

        from cxrview.about import active_bundles
        from cxrview.core import load_image
        from cxrview.core.syntax_samples import chest_phantom
        from cxrview.inference.predict import Predictor

        path = folder / "phantom.png"
        if not cv2.imwrite(str(path), chest_phantom()):
            raise OSError(f"could not write {path}")
        bundles = active_bundles()
        predictor = Predictor(bundles["classifier"], bundles["segmenter"], device=device)
        prediction = predictor.predict(load_image(path), cam_for=None)
        labels = list(predictor.card.labels)
        missing = [name for name in labels if name not in prediction.findings]
        if missing:
            raise ValueError(f"no probability for {', '.join(missing)}")
        bad = [name for name in labels if not _is_probability(prediction.findings[name].get("probability"))]
        if bad:
            raise ValueError(f"not a probability for {', '.join(bad)}")
        masks = sorted(prediction.masks)
        if not {"heart", "left_lung", "right_lung"} <= set(masks):
            raise ValueError(f"the segmenter gave masks {masks}")
        card = predictor.card
        seg = predictor.segmenter_card
        segmenter = f"{seg.name} {seg.version}" if seg else "no segmenter"
        ctr = f"CTR {prediction.ctr.value:.2f}" if prediction.ctr else "no CTR"
        withheld = "withheld by the input check" if prediction.withheld else "shown"
        return (f"{card.name} {card.version} + {segmenter}: {len(labels)} findings, masks "
                f"{', '.join(masks)}, {ctr}; {withheld}")

    return _timed("predict on a generated phantom", check)


def _is_probability(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0


def self_test(*, device: str = "cpu", predict: bool = True) -> list[Part]:
    with tempfile.TemporaryDirectory(prefix="cxrview-self-test-") as raw:
        folder = Path(raw)
        parts = decode_parts(folder)
        if predict:
            parts.append(predict_part(folder, device))
    return parts


def run(args: argparse.Namespace) -> int:
    from cxrview import __version__

    parts = self_test(device=args.device, predict=not args.no_predict)
    ok = all(part.ok for part in parts)
    if args.json:
        print(json.dumps({"version": __version__, "ok": ok, "parts": [asdict(p) for p in parts]}))
    else:
        print(f"cxrview {__version__} self-test")
        for part in parts:
            print(f"{'OK  ' if part.ok else 'FAIL'} {part.part}: {part.detail}")
        failed = sum(not p.ok for p in parts)
        print(f"{len(parts) - failed} of {len(parts)} parts OK" + ("" if ok else f", {failed} FAILED"))
    sys.stdout.flush()
    return EXIT_OK if ok else EXIT_SELF_TEST_FAILED

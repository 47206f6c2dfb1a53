"""Loading and saving model bundles (card.json + safetensors), and device choice.

Weights are only ever read with safetensors: a bundle from a colleague or the
internet cannot execute code (pickle can). Loading checks the sha256 recorded
in the card and that every tensor matches the architecture, and says which
file is wrong when not.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cxrview.inference.card import CARD_FILE, BundleError, ModelCard

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from torch import nn

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """Devices usable here, best first (always ends with 'cpu')."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA → MPS → CPU for 'auto'; an explicit choice that is unavailable is an error."""
    import torch

    preference = (preference or "auto").lower()
    if preference not in DEVICE_CHOICES:
        raise BundleError(f"unknown device {preference!r} (choose from {', '.join(DEVICE_CHOICES)})")
    available = available_devices()
    if preference == "auto":
        return torch.device(available[0])
    if preference not in available:
        raise BundleError(f"device {preference!r} is not available here (available: "
                          f"{', '.join(available)})")
    return torch.device(preference)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class LoadedModel:
    card: ModelCard
    model: nn.Module
    device: torch.device
    path: Path


def load_bundle(bundle_dir: str | os.PathLike[str], *, device: str = "auto",
                verify_sha: bool = True) -> LoadedModel:
    """Read, validate and instantiate a bundle in eval mode on the chosen device."""
    from safetensors.torch import load_file

    from cxrview.inference.architectures import build_model

    root = Path(bundle_dir)
    card = ModelCard.read(root)
    weights = root / card.weights_file
    if not weights.is_file():
        raise BundleError(f"{weights}: weights file missing")
    if verify_sha:
        actual = file_sha256(weights)
        if card.weights_sha256 and actual != card.weights_sha256:
            raise BundleError(f"{weights}: sha256 {actual[:12]}… does not match the card's "
                              f"{card.weights_sha256[:12]}… (file corrupt or replaced)")
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own error types on damaged headers
        raise BundleError(f"{weights}: not a readable safetensors file ({exc})") from exc
    try:
        model = build_model(card)
    except (ValueError, ImportError) as exc:
        raise BundleError(f"{root / CARD_FILE}: {exc}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        detail = "; ".join(f"{what}: {', '.join(keys[:3])}{'…' if len(keys) > 3 else ''}"
                           for what, keys in (("missing", missing), ("unexpected", unexpected),
                                              ("wrong shape", mismatched)) if keys)
        raise BundleError(f"{weights}: weights do not fit {card.architecture} with "
                          f"{len(card.labels)} outputs ({detail})")
    model.load_state_dict(state)  # copies into the float32 parameters, whatever the stored dtype
    target = pick_device(device)
    model.to(target).eval()
    return LoadedModel(card=card, model=model, device=target, path=root)


def save_bundle(bundle_dir: str | os.PathLike[str], model: nn.Module, card: ModelCard) -> Path:
    """Write weights + card into a new folder atomically (temp folder, then rename).

    A half-written bundle never appears under the final name, so the app can
    never pick one up.
    """
    import torch
    from safetensors.torch import save_file

    def write(staging: Path) -> None:
        store = torch.float16 if card.weights_dtype == "float16" else None
        state = {k: (v.detach().to("cpu", dtype=store) if store is not None and v.is_floating_point()
                     else v.detach().to("cpu")).contiguous()
                 for k, v in model.state_dict().items()}
        weights = staging / card.weights_file
        save_file(state, str(weights), metadata={"architecture": card.architecture,
                                                  "version": card.version})
        card.weights_sha256 = file_sha256(weights)
        (staging / CARD_FILE).write_text(card.to_json(), encoding="utf-8")

    return _publish(Path(bundle_dir), write)


def save_card_with_weights_of(bundle_dir: str | os.PathLike[str], source: str | os.PathLike[str],
                              card: ModelCard) -> Path:
    """A new bundle holding ``source``'s weights file byte for byte and a new card (same atomicity).

    For changes that do not touch the weights (recalibrated thresholds): the
    sha256 stays the same, so the weights are recognisably the same model.
    """
    src = Path(source)

    def write(staging: Path) -> None:
        shutil.copyfile(src / card.weights_file, staging / card.weights_file)
        card.weights_sha256 = file_sha256(staging / card.weights_file)
        (staging / CARD_FILE).write_text(card.to_json(), encoding="utf-8")

    return _publish(Path(bundle_dir), write)


def _publish(target: Path, write: Callable[[Path], None]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(staging)
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(target, backup)
            os.replace(staging, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target

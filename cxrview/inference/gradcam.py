"""Grad-CAM (Selvaraju et al. 2017) for the classifiers named in model cards.

Compact on purpose: one forward pass, then one ``autograd.grad`` per requested
finding on the retained graph. The trick that keeps it as cheap as a plain
forward pass: parameters are frozen for the call and the target block's output
is detached and re-marked as requiring grad inside a forward hook, so autograd
records only the small head after the target (pooling + linear layer). Each
backward then costs microseconds instead of a full backward through the
network, which is why retaining the graph beats recomputing (see
``benchmarks/predict_speed.py``).

The target is the last block of ``feature_blocks(model)`` (ResNet ``layer4``,
DenseNet ``denseblock4``, SmallCNN's last conv block): the deepest spatial
features, where class evidence is most localised. An ensemble has one target
per member; its map is the mean of the members' maps (each at the input size).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn


MIN_CAM_SIDE = 7  # coarser maps (4×4 from resnet18 at 128 px) cannot outline a finding


def cam_target(model: nn.Module,
               input_shape: tuple[int, int, int] | None = None) -> nn.Module | list[nn.Module]:
    """The module whose output Grad-CAM weighs (for an ensemble, one per member).

    Normally the last feature block. With ``input_shape`` (C, H, W), the
    deepest block whose output is still at least :data:`MIN_CAM_SIDE` pixels
    on its short side: a small-input model's last block is too coarse to
    localise anything, and one block earlier keeps most of the class
    specificity at twice the resolution.

    ``feature_blocks`` may return a container built on the fly (``Sequential``
    slices of SmallCNN, the ResNet stem pair); hooks on such a container never
    fire because the model's forward never calls it. Descend to its last
    child, which the model does call and whose output is the block's output.
    """
    from cxrview.inference.architectures import Ensemble, feature_blocks

    if isinstance(model, Ensemble):
        targets: list[nn.Module] = []
        for member, size in zip(model.members, model.input_sizes, strict=True):
            shape = None if input_shape is None else (input_shape[0], size, size)
            found = cam_target(member, shape)
            targets += found if isinstance(found, list) else [found]
        return targets
    blocks = [_called_module(model, b) for b in feature_blocks(model)]
    if input_shape is None:
        return blocks[-1]
    sides = _output_sides(model, blocks, input_shape)
    for block in reversed(blocks):
        if sides.get(id(block), 0) >= MIN_CAM_SIDE:
            return block
    return blocks[-1]


def _output_sides(model: nn.Module, blocks: list[nn.Module],
                  input_shape: tuple[int, int, int]) -> dict[int, int]:
    """Short side of each block's output for one dummy input (no grad, eval mode kept)."""
    import torch

    sides: dict[int, int] = {}
    handles = [b.register_forward_hook(
        lambda m, _i, out: sides.__setitem__(id(m), int(min(out.shape[-2:]))) if out.ndim == 4 else None)
        for b in blocks]
    param = next(model.parameters(), None)
    x = torch.zeros((1, *input_shape), device=param.device if param is not None else "cpu",
                    dtype=param.dtype if param is not None else torch.float32)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return sides


def _called_module(model: nn.Module, target: nn.Module) -> nn.Module:
    own = {id(m) for m in model.modules()}
    while id(target) not in own:
        children = list(target.children())
        if not children:
            raise ValueError(f"cannot find a Grad-CAM target inside {type(model).__name__}")
        target = children[-1]
    return target


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Parameters temporarily without grad: the graph then starts at the hooked activation."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def normalise_cam(cam: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the maximum; an all-zero (or non-finite) map stays zero rather than NaN."""
    cam = np.nan_to_num(cam.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max()) if cam.size else 0.0
    return cam / peak if peak > 0 else np.zeros_like(cam)


class CamSession:
    """One forward pass whose graph is kept for any number of Grad-CAM maps.

    ``with CamSession(model, x) as session:`` runs the forward (``session.logits``,
    detached, shape (1, K)); ``session.cam(k)`` then costs one backward through
    the head only. Probabilities and maps come from the same pass, so asking for
    maps after seeing which findings are positive never costs a second forward.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, *,
                 target: nn.Module | Sequence[nn.Module] | None = None) -> None:
        if x.ndim != 4 or x.shape[0] != 1:
            raise ValueError(f"Grad-CAM expects one image (1, C, H, W), got {tuple(x.shape)}")
        self.model = model
        self.x = x
        chosen = target if target is not None else cam_target(model)
        # not a list or tuple: one module (a checker cannot narrow a Sequence away by isinstance)
        self.targets: list[nn.Module] = (list(chosen) if isinstance(chosen, (list, tuple))
                                         else [cast("nn.Module", chosen)])
        self.logits: torch.Tensor | None = None
        self._raw_logits: torch.Tensor | None = None
        self._activations: list[torch.Tensor] | None = None

    def __enter__(self) -> CamSession:
        import torch

        captured: dict[int, torch.Tensor] = {}

        def hook_for(slot: int) -> Callable[[nn.Module, object, torch.Tensor], torch.Tensor]:
            def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
                leaf = output.detach().requires_grad_(True)
                captured[slot] = leaf  # the last call wins, as for a module called twice
                return leaf
            return hook

        handles = [t.register_forward_hook(hook_for(i)) for i, t in enumerate(self.targets)]
        try:
            with _frozen(self.model), torch.enable_grad():
                raw = self.model(self.x)
        finally:
            for handle in handles:
                handle.remove()
        if len(captured) != len(self.targets):
            raise RuntimeError("Grad-CAM target was not called during the forward pass")
        self._activations, self._raw_logits = [captured[i] for i in range(len(self.targets))], raw
        self.logits = raw.detach()
        return self

    def cam(self, index: int) -> np.ndarray:
        """Float32 (H, W) map in [0, 1] at the input size for output ``index``."""
        import torch
        import torch.nn.functional as F

        if self._raw_logits is None or self._activations is None:
            raise RuntimeError("CamSession.cam() called outside its with-block")
        grads = torch.autograd.grad(self._raw_logits[0, int(index)], self._activations,
                                    retain_graph=True, allow_unused=True)
        total = None
        for grad, activation in zip(grads, self._activations, strict=True):
            if grad is None:
                continue
            weights = grad.mean(dim=(2, 3), keepdim=True)  # global-average-pooled gradients
            cam = torch.relu((weights * activation.detach()).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=tuple(self.x.shape[-2:]), mode="bilinear",
                                align_corners=False)
            total = cam if total is None else total + cam
        if total is None:
            return np.zeros(tuple(self.x.shape[-2:]), dtype=np.float32)
        return normalise_cam((total / len(self._activations))[0, 0].cpu().numpy())

    def features(self) -> np.ndarray:
        """The pooled target activations of this pass, (D,) (``features.pool_activations``)."""
        from cxrview.inference.features import pool_activations

        if self._activations is None:
            raise RuntimeError("CamSession.features() called outside its with-block")
        pooled: np.ndarray = pool_activations(self._activations)[0]
        return pooled

    def __exit__(self, *exc: object) -> None:
        self._raw_logits = self._activations = None  # frees the retained graph


def gradcam(
    model: nn.Module,
    x: torch.Tensor,
    classes: Sequence[int],
    *,
    target: nn.Module | None = None,
) -> tuple[torch.Tensor, dict[int, np.ndarray]]:
    """Logits of ``x`` (1, C, H, W) and ``{class_index: cam}`` (float32, input size, [0, 1])."""
    with CamSession(model, x, target=target) as session:
        maps = {int(k): session.cam(int(k)) for k in dict.fromkeys(classes)}
        assert session.logits is not None
        return session.logits, maps


def cam_to_size(cam: np.ndarray, width: int, height: int) -> np.ndarray:
    """A model-size map resized to the original image (float32, bilinear), for drawing."""
    import cv2

    return cv2.resize(cam.astype(np.float32, copy=False), (int(width), int(height)),
                      interpolation=cv2.INTER_LINEAR)

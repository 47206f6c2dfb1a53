"""Network constructors named in model cards. Random init only: nothing is downloaded.

``build_model(card)`` is the single place a card's ``architecture`` string turns
into a module, so a bundle written by ``training`` always rebuilds identically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from cxrview.inference.card import ModelCard

TORCHVISION_CLASSIFIERS = ("resnet18", "resnet34", "resnet50", "densenet121")
ARCHITECTURES = (*TORCHVISION_CLASSIFIERS, "small-cnn", "unet", "ensemble")


class SmallCNN(nn.Module):
    """The "lightweight" baseline: 5 conv blocks 32→512 (kernels 5,5,3,3,3), BN, max-pool, linear."""

    def __init__(self, num_outputs: int, channels: int = 1) -> None:
        super().__init__()
        widths = (32, 64, 128, 256, 512)
        kernels = (5, 5, 3, 3, 3)
        layers: list[nn.Module] = []
        in_ch = channels
        for width, k in zip(widths, kernels, strict=True):
            layers += [nn.Conv2d(in_ch, width, k, padding=k // 2, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_ch, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(torch.flatten(self.pool(self.features(x)), 1))
        return logits


class Ensemble(nn.Module):
    """Classifiers trained separately on the same split, their logits averaged.

    With ~1,100 training images, independently initialised members make
    partly independent mistakes, and averaging them is the cheapest reliable
    gain in AUROC (the card records each member's own metrics). A member
    trained at a smaller size sees the ensemble's input resized inside the
    forward, so the bundle keeps one input size and one preprocessing.
    """

    def __init__(self, members: list[nn.Module], input_sizes: list[int], input_size: int) -> None:
        super().__init__()
        if not members or len(members) != len(input_sizes):
            raise ValueError("an ensemble needs at least one member and one input size per member")
        self.members = nn.ModuleList(members)
        self.input_sizes = [int(s) for s in input_sizes]
        self.input_size = int(input_size)

    def member_input(self, x: torch.Tensor, index: int) -> torch.Tensor:
        import torch.nn.functional as F

        size = self.input_sizes[index]
        if size == self.input_size:
            return x
        # Scale relative to the ensemble's size, so progressive-resizing batches scale too.
        side = (max(8, round(x.shape[-2] * size / self.input_size)),
                max(8, round(x.shape[-1] * size / self.input_size)))
        return F.interpolate(x, size=side, mode="bilinear", align_corners=False, antialias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = [m(self.member_input(x, i)) for i, m in enumerate(self.members)]
        return torch.stack(logits).mean(dim=0)


def _ensemble(num_outputs: int, channels: int, args: dict[str, Any]) -> Ensemble:
    specs = args.get("members") or []
    if not specs:
        raise ValueError("ensemble architecture_args need a non-empty 'members' list")
    if "input_size" not in args:
        raise ValueError("ensemble architecture_args need the ensemble's 'input_size'")
    members, sizes = [], []
    for spec in specs:
        if spec.get("architecture") in (None, "ensemble", "unet"):
            raise ValueError(f"ensemble member must be a classifier, got {spec.get('architecture')!r}")
        members.append(build(spec["architecture"], num_outputs, channels, spec.get("architecture_args")))
        sizes.append(int(spec.get("input_size", args["input_size"])))
    return Ensemble(members, sizes, int(args["input_size"]))


def _torchvision_classifier(name: str, num_outputs: int, channels: int) -> nn.Module:
    import torchvision

    model: Any = getattr(torchvision.models, name)(weights=None, num_classes=num_outputs)
    if channels != 3:
        # Grey radiographs: a 1-channel stem instead of replicating grey into RGB (3x less work).
        if name.startswith("resnet"):
            old = model.conv1
            model.conv1 = nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride,
                                    old.padding, bias=False)
        else:
            old = model.features.conv0
            model.features.conv0 = nn.Conv2d(channels, old.out_channels, old.kernel_size,
                                             old.stride, old.padding, bias=False)
    return cast(nn.Module, model)


def _unet(num_outputs: int, channels: int, args: dict[str, Any]) -> nn.Module:
    import segmentation_models_pytorch as smp

    unet: nn.Module = smp.Unet(encoder_name=args.get("encoder", "resnet18"), encoder_weights=None,
                               in_channels=channels, classes=num_outputs,
                               decoder_channels=tuple(args.get("decoder_channels", (256, 128, 64, 32, 16))))
    return unet


def build(architecture: str, num_outputs: int, channels: int = 1,
          args: dict[str, Any] | None = None) -> nn.Module:
    args = dict(args or {})
    if architecture in TORCHVISION_CLASSIFIERS:
        return _torchvision_classifier(architecture, num_outputs, channels)
    if architecture == "small-cnn":
        return SmallCNN(num_outputs, channels)
    if architecture == "unet":
        return _unet(num_outputs, channels, args)
    if architecture == "ensemble":
        return _ensemble(num_outputs, channels, args)
    raise ValueError(f"unknown architecture {architecture!r} (known: {', '.join(ARCHITECTURES)})")


def build_model(card: ModelCard) -> nn.Module:
    return build(card.architecture, len(card.labels), card.channels, card.architecture_args)


def _sub(module: nn.Module, name: str) -> nn.Module:
    """A named child module (attribute access on a Module is typed "Tensor | Module")."""
    return module.get_submodule(name)


def feature_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's blocks from input to output, for freezing the first N and for Grad-CAM."""
    if isinstance(model, Ensemble):  # block i of every member together (freezing N freezes all)
        per_member = [feature_blocks(m) for m in model.members]
        return [nn.ModuleList(blocks) for blocks in zip(*per_member, strict=False)]
    if hasattr(model, "layer4"):  # torchvision ResNet
        return [nn.Sequential(_sub(model, "conv1"), _sub(model, "bn1")), _sub(model, "layer1"),
                _sub(model, "layer2"), _sub(model, "layer3"), _sub(model, "layer4")]
    if hasattr(model, "features") and hasattr(model.features, "denseblock1"):  # DenseNet
        f = _sub(model, "features")
        return [nn.Sequential(_sub(f, "conv0"), _sub(f, "norm0")), _sub(f, "denseblock1"),
                _sub(f, "denseblock2"), _sub(f, "denseblock3"), _sub(f, "denseblock4")]
    if isinstance(model, SmallCNN):
        return [model.features[i:i + 4] for i in range(0, len(model.features), 4)]
    if hasattr(model, "encoder"):  # smp U-Net: freeze encoder stages
        encoder = _sub(model, "encoder")
        if hasattr(encoder, "layer4"):
            return [nn.Sequential(_sub(encoder, "conv1"), _sub(encoder, "bn1")), _sub(encoder, "layer1"),
                    _sub(encoder, "layer2"), _sub(encoder, "layer3"), _sub(encoder, "layer4")]
        return [encoder]
    return list(model.children())

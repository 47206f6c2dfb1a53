"""Grad-CAM against a network whose correct map is known, and on the real architectures."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from cxrview.inference.architectures import build  # noqa: E402
from cxrview.inference.gradcam import CamSession, cam_target, cam_to_size, gradcam, normalise_cam  # noqa: E402

SIZE = 64
SQUARE = (slice(8, 24), slice(40, 56))  # rows, cols: a bright square in the upper-right quadrant


class SquareDetector(nn.Module):
    """Fixed weights: a 3×3 mean filter (stride 2) + ReLU is the "feature"; logit 0 = +mean of it,
    logit 1 = -mean of it. The evidence for class 0 is exactly the bright square."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False), nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.fill_(1.0 / 9.0)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0] * 4, [-1.0] * 4]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def _square_image() -> torch.Tensor:
    x = torch.zeros(1, 1, SIZE, SIZE)
    x[0, 0, SQUARE[0], SQUARE[1]] = 1.0
    return x


def test_cam_peaks_inside_the_square() -> None:
    model = SquareDetector().eval()
    logits, maps = gradcam(model, _square_image(), [0], target=model.features)
    cam = maps[0]
    assert cam.shape == (SIZE, SIZE) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() == pytest.approx(1.0)
    row, col = np.unravel_index(int(np.argmax(cam)), cam.shape)
    assert SQUARE[0].start <= row < SQUARE[0].stop and SQUARE[1].start <= col < SQUARE[1].stop
    inside = cam[SQUARE].mean()
    outside = cam.copy()
    outside[SQUARE[0].start - 4:SQUARE[0].stop + 4, SQUARE[1].start - 4:SQUARE[1].stop + 4] = np.nan
    assert inside > 0.7 and np.nanmax(outside) < 0.05
    assert logits.shape == (1, 2) and not logits.requires_grad


def test_negative_evidence_gives_an_empty_map_not_nan() -> None:
    model = SquareDetector().eval()
    _, maps = gradcam(model, _square_image(), [1], target=model.features)
    assert np.isfinite(maps[1]).all() and maps[1].max() == 0.0  # ReLU keeps only positive evidence


def test_session_logits_equal_a_plain_forward_and_parameters_are_restored() -> None:
    torch.manual_seed(0)
    model = build("small-cnn", 3).eval()
    x = torch.randn(1, 1, SIZE, SIZE)
    with torch.inference_mode():
        plain = model(x)
    with CamSession(model, x) as session:
        first, second = session.cam(0), session.cam(2)  # several maps from one forward
        assert session.logits is not None
        torch.testing.assert_close(session.logits, plain)
    assert first.shape == second.shape == (SIZE, SIZE)
    assert all(p.requires_grad for p in model.parameters())
    assert not model.features[-1]._forward_hooks  # hook removed


@pytest.mark.parametrize("arch", ["resnet18", "small-cnn"])
def test_real_architectures_give_finite_maps_at_input_size(arch: str) -> None:
    torch.manual_seed(1)
    model = build(arch, 14).eval()
    size = 96 if arch == "resnet18" else SIZE
    x = torch.randn(1, 1, size, size)
    logits, maps = gradcam(model, x, [0, 5, 13, 5])
    assert logits.shape == (1, 14) and set(maps) == {0, 5, 13}
    for cam in maps.values():
        assert cam.shape == (size, size) and cam.dtype == np.float32
        assert np.isfinite(cam).all() and 0.0 <= cam.min() and cam.max() <= 1.0


def test_cam_target_is_a_module_the_forward_calls() -> None:
    resnet = build("resnet18", 2)
    assert cam_target(resnet) is resnet.layer4
    small = build("small-cnn", 2)
    assert cam_target(small) is small.features[-1]  # last module of the last conv block


def test_cam_target_steps_back_when_the_last_block_is_too_coarse() -> None:
    resnet = build("resnet18", 2)
    assert cam_target(resnet, (1, 224, 224)) is resnet.layer4  # 7×7
    assert cam_target(resnet, (1, 128, 128)) is resnet.layer3  # layer4 would be 4×4
    assert resnet.training  # the probe forward leaves the mode as it was


def test_helpers() -> None:
    assert normalise_cam(np.array([[np.nan, -1.0], [2.0, 4.0]])).tolist() == [[0.0, 0.0], [0.5, 1.0]]
    assert cam_to_size(np.ones((8, 8), np.float32), 30, 20).shape == (20, 30)
    with pytest.raises(ValueError, match="one image"):
        gradcam(SquareDetector(), torch.zeros(2, 1, 8, 8), [0])

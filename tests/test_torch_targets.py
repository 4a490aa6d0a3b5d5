"""Targets beyond classification on PyTorch models: segmentation maps that cannot leak
outside their region, a detector whose box score depends on one region, regression
and tuple/dict outputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import salmap  # noqa: E402
from salmap.models.torch_adapter import TorchAdapter  # noqa: E402
from salmap.targets import Box, Regression, Segmentation  # noqa: E402

torch.set_num_threads(2)


def _pointwise_segmenter(seed: int, classes: int = 4):
    """1×1 convolutions only: each output pixel sees its own input pixel alone."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, classes, 1)
    ).eval()


def _random_mask(rng, size: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    for _ in range(rng.integers(1, 4)):
        y, x = rng.integers(0, size - 4, 2)
        h, w = rng.integers(3, size // 2, 2)
        mask[y : y + h, x : x + w] = True
    return mask


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("method", ["vanilla", "integrated-gradients", "smoothgrad"])
def test_segmentation_map_is_exactly_zero_outside_the_mask(seed, method):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(16, 40))
    adapter = TorchAdapter(_pointwise_segmenter(seed), input_size=size, preprocess="torch")
    image = rng.random((size, size, 3), dtype=np.float32)
    mask = _random_mask(rng, size)
    params = {"steps": 8} if method == "integrated-gradients" else {}
    params |= {"samples": 4} if method == "smoothgrad" else {}
    target = Segmentation(int(rng.integers(4)), mask=mask)
    result = salmap.explain(image, adapter, method=method, target=target, **params)
    assert np.all(result.map[~mask] == 0)
    assert np.count_nonzero(result.map[mask]) > 0.5 * mask.sum()


def test_segmentation_default_region_is_the_models_own():
    adapter = TorchAdapter(_pointwise_segmenter(7), input_size=32, preprocess="none")
    image = np.random.default_rng(7).random((32, 32, 3), dtype=np.float32)
    labels = adapter.predict(image[None])[0].argmax(axis=0)
    klass = int(np.bincount(labels.ravel()).argmax())
    result = salmap.explain(image, adapter, method="vanilla", target=Segmentation(klass))
    assert np.all(result.map[labels != klass] == 0)
    assert np.count_nonzero(result.map[labels == klass]) > 0


class RegionDetector(torch.nn.Module):
    """A detection-style model returning torchvision-style dicts: two fixed boxes, each
    scored from the pooled features inside it (roi_align over a 3×3 convolution)."""

    BOXES = ((4.0, 6.0, 20.0, 22.0), (30.0, 28.0, 58.0, 50.0))

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.features = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.classify = torch.nn.Linear(8, 3)

    def forward(self, x):
        boxes = torch.tensor(self.BOXES, dtype=x.dtype)
        rois = [boxes] * len(x)
        pooled = torchvision.ops.roi_align(self.features(x), rois, output_size=4, aligned=True)
        logits = self.classify(pooled.mean(dim=(2, 3))).view(len(x), len(boxes), 3)
        probabilities = logits.softmax(dim=-1)[..., 1:]
        scores, labels = probabilities.max(dim=-1)
        return [
            {"boxes": boxes, "labels": labels[i] + 1, "scores": scores[i]} for i in range(len(x))
        ]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("which", [0, 1])
def test_box_target_concentrates_on_its_region(seed, which):
    adapter = TorchAdapter(RegionDetector(seed), input_size=64, preprocess="none")
    image = np.random.default_rng(seed).random((64, 64, 3), dtype=np.float32)
    label = int(adapter.predict(image[None])[0]["labels"][which])
    x0, y0, x1, y1 = RegionDetector.BOXES[which]
    target = Box((x0 + 1, y0 - 1, x1 + 1, y1), label=label)  # IoU > 0.5 with the detection
    saliency = np.abs(salmap.explain(image, adapter, method="vanilla", target=target).map)
    inside = np.zeros_like(saliency, bool)  # the box, with roi_align's and the conv's halo
    inside[int(y0) - 3 : int(y1) + 3, int(x0) - 3 : int(x1) + 3] = True
    assert saliency[inside].sum() > 0
    assert saliency[~inside].sum() == 0
    # a box that matches no detection scores 0 and explains nothing
    nothing = salmap.explain(image, adapter, method="vanilla", target=Box((0, 40, 10, 63)))
    assert np.all(nothing.map == 0)


def test_regression_and_dict_outputs():
    torch.manual_seed(0)

    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.age = torch.nn.Linear(4, 2)

        def forward(self, x):
            pooled = torch.relu(self.conv(x)).mean(dim=(2, 3))
            return {"age": self.age(pooled), "features": pooled}

    module = TwoHeads().eval()
    adapter = TorchAdapter(module, input_size=16, preprocess="none", output="age")
    image = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    grads, scores = adapter.gradients(image[None], Regression(1))
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy()).requires_grad_(True)
    value = module(x)["age"][0, 1]
    value.backward()
    assert scores[0] == pytest.approx(value.item(), rel=1e-5)
    expected = x.grad[0].permute(1, 2, 0).numpy()  # NCHW here, channels-last in salmap
    np.testing.assert_allclose(grads[0], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())

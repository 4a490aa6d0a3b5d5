"""salmap on PyTorch agrees with Captum, the reference attribution library for PyTorch.

A seeded torchvision ResNet18 (random weights, ImageNet normalisation inside the
module, so both libraries see [0, 1] images) explains real photos; every method runs
with the same rule, steps, baseline, window and fill in both libraries.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
captum_attr = pytest.importorskip("captum.attr")

import salmap  # noqa: E402
from salmap.models.torch_adapter import TorchAdapter  # noqa: E402

torch.set_num_threads(2)

SIZE = 112
PHOTOS = ("chelsea", "coffee", "astronaut")


class Normalised(torch.nn.Module):
    """ImageNet mean/std normalisation, then the network: a [0, 1]-input model."""

    def __init__(self, network):
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        return self.network((x - self.mean) / self.std)


def _photo(name: str) -> np.ndarray:
    import cv2

    image = salmap.sample_image(name)
    return cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)


@pytest.fixture(scope="module", params=[0, 1], ids=["seed0", "seed1"])
def case(request):
    torch.manual_seed(request.param)
    module = Normalised(torchvision.models.resnet18()).eval()
    adapter = TorchAdapter(module, input_size=SIZE, preprocess="none")
    return module, adapter


def _tensor(image: np.ndarray):
    return torch.from_numpy(image.transpose(2, 0, 1)[None].copy())


def _correlation(first, second) -> float:
    return float(np.corrcoef(np.ravel(first), np.ravel(second))[0, 1])


def _top_class(module, x) -> int:
    with torch.no_grad():
        return int(module(x).argmax())


GRADIENT_METHODS = {
    # salmap method and params: Captum class and attribute() keywords
    "vanilla": ({}, captum_attr.Saliency, {"abs": False}),
    "gradient-x-input": ({}, captum_attr.InputXGradient, {}),
    "integrated-gradients": (
        {"steps": 50, "rule": "gauss-legendre", "baseline": "black"},
        captum_attr.IntegratedGradients,
        {"n_steps": 50, "method": "gausslegendre", "baselines": 0.0},
    ),
    "guided-backprop": ({}, captum_attr.GuidedBackprop, {}),
    "deconvnet": ({}, captum_attr.Deconvolution, {}),
}


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("method", list(GRADIENT_METHODS))
def test_gradient_methods_match_captum(case, method, photo):
    module, adapter = case
    image = _photo(photo)
    x = _tensor(image)
    target = _top_class(module, x)
    params, captum_class, captum_params = GRADIENT_METHODS[method]
    ours = salmap.explain(image, adapter, method=method, target=target, **params).attribution
    theirs = captum_class(module).attribute(x, target=target, **captum_params)
    theirs = theirs[0].detach().numpy().transpose(1, 2, 0)
    assert ours.shape == theirs.shape == (SIZE, SIZE, 3)
    assert _correlation(ours, theirs) >= 0.99


@pytest.mark.parametrize("photo", PHOTOS[:2])
def test_occlusion_matches_captum(case, photo):
    module, adapter = case
    image = _photo(photo)
    x = _tensor(image)
    target = _top_class(module, x)
    ours = salmap.explain(
        image, adapter, method="occlusion", target=target, window=16, stride=8, value=0.5
    ).map
    theirs = captum_attr.Occlusion(module).attribute(
        x, target=target, sliding_window_shapes=(3, 16, 16), strides=(3, 8, 8), baselines=0.5
    )
    assert _correlation(ours, theirs[0, 0].numpy()) >= 0.99


@pytest.mark.parametrize("photo", PHOTOS)
def test_grad_cam_matches_captum_layer_grad_cam(case, photo):
    module, adapter = case
    image = _photo(photo)
    x = _tensor(image)
    target = _top_class(module, x)
    assert adapter.cam_layer() == "network.layer4"
    ours = salmap.explain(image, adapter, method="grad-cam", target=target).map
    cam = captum_attr.LayerGradCam(module, module.network.layer4)
    theirs = cam.attribute(x, target=target, relu_attributions=True)
    theirs = captum_attr.LayerAttribution.interpolate(theirs, (SIZE, SIZE), "bilinear")
    assert _correlation(ours, theirs[0, 0].detach().numpy()) >= 0.99

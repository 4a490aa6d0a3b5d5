"""XGrad-CAM, Eigen-Grad-CAM and Ablation-CAM on PyTorch models against pytorch-grad-cam."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")

from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from salmap.methods import ablation_cam, eigengrad_cam, xgrad_cam  # noqa: E402
from salmap.models.torch_adapter import TorchAdapter  # noqa: E402

SIZE = 48


def _cnn(seed: int):
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 12, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 5),
    ).eval()


def _resnet18(seed: int):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None, num_classes=6).eval()


def _images(seed: int, count: int = 2) -> np.ndarray:
    """Smooth random images (a coarse grid upsampled), so maps have structure."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.random((count, 6, 6, 3)).astype(np.float32)
    return np.stack([cv2.resize(c, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) for c in coarse])


def _reference(cam_class, model, layer, images, targets):
    tensor = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    with cam_class(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=tensor, targets=[ClassifierOutputTarget(int(t)) for t in targets])


def _correlations(ours, theirs):
    return [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(ours, theirs, strict=True)]


CASES = [("cnn", 0, "7"), ("cnn", 1, "7"), ("cnn", 2, "4")]
LARGE = [("resnet18", 4, "layer4")]
VARIANTS = [("XGradCAM", xgrad_cam), ("AblationCAM", ablation_cam), ("EigenGradCAM", eigengrad_cam)]


@pytest.mark.parametrize(
    ("arch", "seed", "layer", "name", "ours"),
    [(*case, *variant) for case in CASES for variant in VARIANTS]
    # pytorch-grad-cam's AblationCAM takes half a minute on ResNet18's 512 channels.
    + [(*case, *variant) for case in LARGE for variant in VARIANTS if variant[0] != "AblationCAM"],
)
def test_cam_variants_equal_pytorch_grad_cam(arch, seed, layer, name, ours):
    model = _cnn(seed) if arch == "cnn" else _resnet18(seed)
    adapter = TorchAdapter(model, input_size=SIZE, batch_size=64)
    images = _images(seed, 3)
    targets = np.argmax(adapter.predict(images), axis=1)  # each image's top class
    module = dict(model.named_modules())[layer]
    theirs = _reference(getattr(pytorch_grad_cam, name), model, module, images, targets)
    maps = ours(adapter, images, targets, layer=layer)
    assert maps.shape == (3, SIZE, SIZE) and maps.min() >= 0
    live = [i for i in range(3) if theirs[i].max() > 0]
    assert live and all(maps[i].max() > 0 for i in live)
    assert all(maps[i].max() == 0 for i in range(3) if i not in live)
    correlations = _correlations(maps[live], theirs[live])
    if name == "EigenGradCAM":
        # pytorch-grad-cam keeps LAPACK's arbitrary sign of the singular vector; salmap
        # orients it along the summed gradient × activation. Compare with either sign.
        flipped = _reference(_FlippedEigenGrad, model, module, images, targets)
        correlations = np.maximum(correlations, _correlations(maps[live], flipped[live]))
    assert min(correlations) >= 0.99, correlations


class _FlippedEigenGrad(pytorch_grad_cam.EigenGradCAM):
    def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads, *a):
        from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

        return -get_2d_projection(grads * activations)


def test_ablation_scores_zero_one_channel_and_leave_the_model_alone():
    model = _cnn(4)
    adapter = TorchAdapter(model, input_size=SIZE)
    images = _images(9, 3)
    before = [p.detach().clone() for p in model.parameters()]
    plain = adapter.scores(images, np.array([0, 1, 2]))
    ablated = adapter.layer_ablation_scores(images, np.array([0, 1, 2]), "6", np.array([-1, 3, 5]))
    assert ablated[0] == pytest.approx(plain[0], rel=1e-6)
    # By hand: the same network with the channel's output zeroed.
    x = torch.from_numpy(images[1:2].transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        h = model[:7](x)
        h[:, 3] = 0
        expected = model[7:](h)[0, 1].item()
    assert ablated[1] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert not model._forward_hooks and not model[6]._forward_hooks
    for old, new in zip(before, model.parameters(), strict=True):
        assert torch.equal(old, new)


@pytest.mark.parametrize(("arch", "seed"), [("cnn", 0), ("cnn", 1), ("resnet18", 2)])
def test_fullgrad_equals_pytorch_grad_cam(arch, seed):
    from salmap.methods import fullgrad

    model = _cnn(seed) if arch == "cnn" else _resnet18(seed)
    adapter = TorchAdapter(model, input_size=SIZE, batch_size=8)
    images = _images(seed, 2)
    targets = np.argmax(adapter.predict(images), axis=1)
    with pytorch_grad_cam.FullGrad(model=model, target_layers=[]) as cam:
        theirs = cam(
            input_tensor=torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
            targets=[ClassifierOutputTarget(int(t)) for t in targets],
        )
    maps = fullgrad(adapter, images, targets)
    assert maps.min() >= 0 and maps.max() == pytest.approx(1.0)
    assert min(_correlations(maps, theirs)) >= 0.99


def test_fullgrad_needs_bias_gradients(tiny_keras_model):
    import salmap
    from salmap.errors import ModelError
    from salmap.methods import fullgrad

    adapter = salmap.load_model(tiny_keras_model, preprocess="none")
    with pytest.raises(ModelError, match="FullGrad needs the gradients of every bias"):
        fullgrad(adapter, _images(0, 1)[:, :32, :32], [0])

"""LRP rules and composites on PyTorch: gradient × input as epsilon -> 0 on bias-free ReLU
networks, and zennit's rules and composites on seeded VGG16 and ResNet18."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
zennit = pytest.importorskip("zennit")

from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import EpsilonGammaBox, EpsilonPlus, LayerMapComposite  # noqa: E402
from zennit.rules import Epsilon, Gamma, Norm, Pass, ZPlus  # noqa: E402
from zennit.torchvision import ResNetCanonizer  # noqa: E402
from zennit.types import Activation, AvgPool, Convolution, Linear  # noqa: E402

from salmap.errors import ModelError  # noqa: E402
from salmap.methods import gradient_x_input, lrp  # noqa: E402
from salmap.models.torch_adapter import TorchAdapter  # noqa: E402

nn = torch.nn


def _images(seed, count, size):
    return np.random.default_rng(seed).random((count, size, size, 3), dtype=np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lrp_epsilon_on_a_bias_free_relu_network_is_gradient_times_input(seed, monkeypatch):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(32, 5, bias=False),
    ).eval()  # fmt: skip
    adapter = TorchAdapter(model, input_size=16)
    images, targets = _images(seed, 3, 16), [0, 2, 4]
    expected = gradient_x_input(adapter, images, targets)
    errors = []
    for epsilon in (1e-4, 1e-6, 1e-9):  # epsilon -> 0
        monkeypatch.setattr("salmap.models.torch_rules.LRP_EPSILON", epsilon)
        relevance = lrp(adapter, images, targets, rule="epsilon")
        errors.append(np.abs(relevance - expected).max() / np.abs(expected).max())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4
    for a, b in zip(relevance, expected, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99999
    # Bias-free: the relevance is conserved, it sums to the score.
    scores = adapter.scores(images, np.array(targets))
    np.testing.assert_allclose(relevance.reshape(3, -1).sum(axis=1), scores, rtol=1e-3)


def _zennit(model, images, targets, composite):
    tensor = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    classes = model(tensor[:1]).shape[1]
    maps = []
    for i, target in enumerate(targets):
        with Gradient(model=model, composite=composite) as attributor:
            _, relevance = attributor(tensor[i : i + 1], torch.eye(classes)[[target]])
        maps.append(relevance[0].detach().numpy().transpose(1, 2, 0))
    return np.stack(maps)


def _every_layer(rule):
    layers = [(Activation, Pass()), (Convolution, rule), (Linear, rule), (AvgPool, Norm())]
    return LayerMapComposite(layers)


def _vgg16(seed):
    torch.manual_seed(seed)
    return torchvision.models.vgg16(weights=None, num_classes=5).eval()


def _resnet18(seed):
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(0.2 * torch.rand(size, generator=generator) - 0.1)
            module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
    return model


CASES = [
    ("cnn", "epsilon", lambda: _every_layer(Epsilon())),
    ("cnn", "alpha1beta0", lambda: _every_layer(ZPlus())),
    ("vgg16", "gamma", lambda: _every_layer(Gamma())),
    ("vgg16", "epsilon-plus", lambda: EpsilonPlus()),
    ("vgg16", "epsilon-gamma-box", lambda: EpsilonGammaBox(low=0.0, high=1.0)),
    ("resnet18", "epsilon-plus", lambda: EpsilonPlus(canonizers=[ResNetCanonizer()])),
    (
        "resnet18",
        "epsilon-gamma-box",
        lambda: EpsilonGammaBox(low=0.0, high=1.0, canonizers=[ResNetCanonizer()]),
    ),
]


def _cnn(seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5),
    ).eval()  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "rule", "composite"), CASES)
def test_lrp_equals_zennit(arch, rule, composite):
    seed = len(rule)
    model = {"cnn": _cnn, "vgg16": _vgg16, "resnet18": _resnet18}[arch](seed)
    adapter = TorchAdapter(model, input_size=32)
    images, targets = _images(seed, 1, 32), [3]
    # zennit starts from relevance 1 at the output, salmap from the score itself: the
    # rules are linear in it, so the maps differ by that factor.
    scores = adapter.scores(images, np.array(targets))
    ours = lrp(adapter, images, targets, rule=rule) / scores[:, None, None, None]
    theirs = _zennit(model, images, targets, composite())
    for a, b in zip(ours, theirs, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99


def _signed_cnn(seed):
    """'same' padding, a grouped convolution fed signed values (no rectifier before it),
    batch normalisations with negative scales."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding="same"), nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 64, 5),
    ).eval()  # fmt: skip
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.normal_(0, 1)  # some scales negative
            module.bias.data.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("rule", ["epsilon-plus", "gamma"])
def test_lrp_equals_zennit_on_signed_inputs_and_negative_batch_norm(rule):
    from zennit.canonizers import SequentialMergeBatchNorm

    model = _signed_cnn(4)
    adapter = TorchAdapter(model, input_size=16)
    images, targets = _images(4, 2, 16), [1, 3]
    scores = adapter.scores(images, np.array(targets))
    ours = lrp(adapter, images, targets, rule=rule) / scores[:, None, None, None]
    canonizers = [SequentialMergeBatchNorm()]
    if rule == "epsilon-plus":
        composite = EpsilonPlus(canonizers=canonizers)
    else:
        layers = [(Activation, Pass()), (Convolution, Gamma()), (Linear, Gamma())]
        composite = LayerMapComposite(layers, canonizers=canonizers)
    theirs = _zennit(model, images, targets, composite)
    for a, b in zip(ours, theirs, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.999


def test_models_without_lrp_fail_with_one_line(tiny_keras_model):
    import salmap

    adapter = salmap.load_model(tiny_keras_model, preprocess="none")
    with pytest.raises(ModelError, match="backward rule 'lrp-epsilon-plus' is not available"):
        lrp(adapter, _images(0, 1, 32), [0])

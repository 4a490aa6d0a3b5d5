"""DeepLIFT and DeepLIFT-SHAP on PyTorch: completeness on ReLU networks, Captum's DeepLift
and DeepLiftShap on the same references, and a clear error where a rule is missing."""

from __future__ import annotations

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from salmap.errors import ModelError  # noqa: E402
from salmap.methods import deeplift, deeplift_shap  # noqa: E402
from salmap.models.torch_adapter import TorchAdapter  # noqa: E402

nn = torch.nn


def _randomise_batch_norms(model, seed):
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(0.2 * torch.rand(size, generator=generator) - 0.1)
            module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(size, generator=generator))
    return model


def _relu_net(seed):
    torch.manual_seed(seed)
    return _randomise_batch_norms(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5),
        ).eval(),
        seed,
    )  # fmt: skip


def _resnet18(seed, maxpool=True):
    torch.manual_seed(seed)
    model = _randomise_batch_norms(torchvision.models.resnet18(weights=None, num_classes=6), seed)
    if not maxpool:
        model.maxpool = nn.Identity()
    return model.eval()


def _one_relu_per_call(model):
    """A copy of a torchvision ResNet whose blocks call two ReLU modules instead of one
    twice (Captum's hooks need that; the weights are the same)."""
    import copy

    model = copy.deepcopy(model)

    def forward(block, x):
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.bn2(block.conv2(out))
        identity = x if block.downsample is None else block.downsample(x)
        return block.second_relu(out + identity)

    for block in model.modules():
        if isinstance(block, torchvision.models.resnet.BasicBlock):
            block.relu, block.second_relu = nn.ReLU(), nn.ReLU()
            block.forward = types.MethodType(forward, block)
    model.relu = nn.ReLU()
    return model


def _images(seed, count, size):
    return np.random.default_rng(seed).random((count, size, size, 3), dtype=np.float32)


@pytest.mark.parametrize(
    ("arch", "seed", "baseline"),
    [("net", 0, "black"), ("net", 1, "uniform"), ("net", 2, "grey"), ("resnet18", 3, "black")],
)
def test_deeplift_sums_to_the_score_difference(arch, seed, baseline):
    # torchvision's ResNet calls one in-place ReLU module twice per block: the rule
    # works call by call, so that is fine.
    model = _relu_net(seed) if arch == "net" else _resnet18(seed)
    size = 24 if arch == "net" else 48
    adapter = TorchAdapter(model, input_size=size, batch_size=4)
    images, targets = _images(seed, 3, size), np.array([0, 2, 4])
    attribution = deeplift(adapter, images, targets, baseline=baseline, seed=seed)
    if baseline == "uniform":
        from salmap.methods.engine import unit_rng
        from salmap.methods.path import make_baselines

        reference = make_baselines(images[0], "uniform", unit_rng(seed, 0xD1F))[0]
    else:
        reference = np.full(images.shape[1:], {"black": 0.0, "grey": 0.5}[baseline], np.float32)
    references = np.broadcast_to(reference, images.shape)
    scores, reference_scores = adapter.scores(images, targets), adapter.scores(references, targets)
    totals = attribution.reshape(3, -1).sum(axis=1, dtype=np.float64)
    scale = np.abs(scores) + np.abs(reference_scores)
    assert np.all(np.abs(totals - (scores - reference_scores)) <= 1e-4 * scale)


@pytest.mark.parametrize("seed", [0, 1])
def test_deeplift_equals_captum_on_a_resnet18(seed):
    # Without the stem's max pooling: Captum drops its max-pooling rule after a ReLU
    # (see test_captum_drops_the_max_pooling_rule_after_a_rectifier); every other layer
    # agrees exactly.
    captum = pytest.importorskip("captum.attr")
    model = _resnet18(seed, maxpool=False)
    adapter = TorchAdapter(model, input_size=48, batch_size=8)
    images, targets = _images(seed + 5, 2, 48), [1, 3]
    ours = deeplift(adapter, images, targets)
    tensor = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    reference = _one_relu_per_call(model)
    theirs = captum.DeepLift(reference).attribute(tensor, baselines=tensor * 0, target=targets)
    theirs = theirs.detach().numpy().transpose(0, 2, 3, 1)
    for a, b in zip(ours, theirs, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * np.abs(theirs).max())


def test_max_pooling_keeps_completeness_where_captum_loses_it():
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 64, 5),
    ).eval()  # fmt: skip
    adapter = TorchAdapter(model, input_size=16)
    images = _images(0, 2, 16)
    reference = _images(1, 1, 16)[0]
    targets = [0, 1]
    ours = deeplift(adapter, images, targets, baseline=reference)
    references = np.broadcast_to(reference, images.shape)
    difference = adapter.scores(images, np.array(targets)) - adapter.scores(
        references, np.array(targets)
    )
    np.testing.assert_allclose(ours.reshape(2, -1).sum(axis=1), difference, rtol=1e-4)
    theirs = captum.DeepLift(model).attribute(
        torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
        baselines=torch.from_numpy(references.transpose(0, 3, 1, 2).copy()),
        target=targets,
    )
    captum_totals = theirs.detach().numpy().reshape(2, -1).sum(axis=1)
    assert np.abs(captum_totals - difference).max() > 1e-3 * np.abs(difference).max()


class _PlainGradientMaxPool(nn.Module):
    """ResNet's stem max pooling, asked for its indices: the DeepLIFT rule passes such
    calls through, so this pooling keeps its plain gradient."""

    def forward(self, x):
        return nn.functional.max_pool2d(x, 3, 2, 1, return_indices=True)[0]


def test_captum_drops_the_max_pooling_rule_after_a_rectifier():
    # Why salmap and Captum's DeepLift differ on a stock ResNet18 (corr 0.93 with a black
    # reference on the benchmark's model): Captum's backward rule of a module is a hook on
    # its input tensor; the stem's ReLU output is the max pooling's input, and the ReLU's
    # hook, registered first, stores that tensor's gradient before the max pooling's hook
    # replaces it, then builds its own input gradient from the stored one. So Captum's
    # result is DeepLIFT with max pooling's plain gradient: equal to salmap's on a model
    # whose max pooling keeps its gradient, and, against a non-constant reference, no
    # longer summing to f(x) - f(ref) (salmap's rescale rule for max pooling does).
    captum = pytest.importorskip("captum.attr")
    model = _resnet18(0)
    plain = _resnet18(0)
    plain.maxpool = _PlainGradientMaxPool()
    images, targets = _images(5, 2, 48), [1, 3]
    reference = _images(6, 1, 48)[0]
    references = np.broadcast_to(reference, images.shape)
    tensor = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    theirs = captum.DeepLift(_one_relu_per_call(model)).attribute(
        tensor, baselines=torch.from_numpy(references.transpose(0, 3, 1, 2).copy()), target=targets
    )
    theirs = theirs.detach().numpy().transpose(0, 2, 3, 1)
    adapter = TorchAdapter(model, input_size=48, batch_size=8)
    with_gradient = deeplift(
        TorchAdapter(plain, input_size=48), images, targets, baseline=reference
    )
    np.testing.assert_allclose(with_gradient, theirs, rtol=1e-3, atol=1e-5 * np.abs(theirs).max())
    ours = deeplift(adapter, images, targets, baseline=reference)
    assert np.abs(ours - theirs).max() > 0.1 * np.abs(theirs).max()  # the rule matters here
    difference = adapter.scores(images, np.array(targets)) - adapter.scores(
        references, np.array(targets)
    )
    np.testing.assert_allclose(ours.reshape(2, -1).sum(axis=1), difference, rtol=1e-4, atol=1e-6)
    captum_totals = theirs.reshape(2, -1).sum(axis=1)
    assert np.abs(captum_totals - difference).max() > 0.05 * np.abs(difference).max()


def test_deeplift_shap_equals_captum_with_the_same_background():
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 5),
    ).eval()  # fmt: skip
    adapter = TorchAdapter(model, input_size=16, batch_size=6)
    images, background = _images(2, 2, 16), _images(3, 4, 16)
    ours = deeplift_shap(adapter, images, [1, 4], baseline=background)
    theirs = captum.DeepLiftShap(model).attribute(
        torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
        baselines=torch.from_numpy(background.transpose(0, 3, 1, 2).copy()),
        target=[1, 4],
    )
    theirs = theirs.detach().numpy().transpose(0, 2, 3, 1)
    for a, b in zip(ours, theirs, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * np.abs(theirs).max())


def test_models_without_the_rule_fail_with_one_line(tiny_keras_model):
    import salmap
    from salmap.models.analytic import AnalyticAdapter

    keras_adapter = salmap.load_model(tiny_keras_model, preprocess="none")
    analytic = AnalyticAdapter(np.ones((2, 32, 32, 3)))
    images = _images(0, 1, 32)
    for adapter in (keras_adapter, analytic):
        with pytest.raises(ModelError, match="backward rule 'deeplift' is not available"):
            deeplift(adapter, images, [0])

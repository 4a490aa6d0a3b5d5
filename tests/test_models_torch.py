"""The PyTorch adapter and the named torch models: the user's module is left as it was
found, batches and sizes behave, files load safely, bad models fail with one line."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import salmap  # noqa: E402
from salmap.cli import main  # noqa: E402
from salmap.errors import ModelError, UsageError  # noqa: E402
from salmap.methods import METHODS  # noqa: E402
from salmap.models.torch_adapter import TorchAdapter, token_grid, torch_preprocess  # noqa: E402
from salmap.targets import Class, Function  # noqa: E402

torch.set_num_threads(2)


class TinyNet(torch.nn.Module):
    """Conv-BN-ReLU ×2, dropout, a linear head: 10 classes, any input size."""

    def __init__(self, functional: bool = False):
        super().__init__()
        self.functional = functional
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(16, 10)

    def forward(self, x):
        activation = torch.nn.functional.relu if self.functional else self.relu
        x = activation(self.bn(self.conv1(x)))
        x = activation(self.conv2(x))
        return self.head(self.drop(x.mean(dim=(2, 3))))


def _tiny(seed: int = 0, functional: bool = False) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(functional)


def _images(count: int, size: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, size, size, 3), dtype=np.float32)


def _state(module) -> dict:
    """Everything a method could change on a module."""
    return {
        "tensors": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "training": [m.training for m in module.modules()],
        "requires_grad": [p.requires_grad for p in module.parameters()],
        "grads": [p.grad for p in module.parameters()],
        "hooks": [
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in module.modules()
        ],
    }


def _assert_unchanged(module, before: dict) -> None:
    after = _state(module)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    assert all(g is None for g in after["grads"])
    for key, value in before["tensors"].items():
        assert torch.equal(after["tensors"][key], value), key


def _user_module(transformer: bool = False):
    """A module as users hand it over: in training mode, one parameter frozen (a small
    ViT with dropout for the transformer methods)."""
    if transformer:
        from torchvision.models.vision_transformer import VisionTransformer

        torch.manual_seed(3)
        module = VisionTransformer(
            image_size=24, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8,
            mlp_dim=16, num_classes=10, dropout=0.5, attention_dropout=0.5,
        )  # fmt: skip
        torch.nn.init.normal_(module.heads.head.weight)
        module.train()
        module.class_token.requires_grad_(False)
        return module
    module = _tiny(3)
    module.train()
    module.conv1.bias.requires_grad_(False)
    return module


FAST = {
    "samples": 3,
    "steps": 4,
    "window": 8,
    "stride": 8,
    "masks": 8,
    "probe": 2,
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_module_unchanged_after_every_method(method):
    module = _user_module(METHODS[method].family == "transformers")
    adapter = TorchAdapter(module, input_size=24, preprocess="torch")
    before = _state(module)
    params = {k: v for k, v in FAST.items() if k in METHODS[method].defaults}
    result = salmap.explain(_images(1)[0], adapter, method=method, target=3, **params)
    assert result.map.shape == (24, 24) and np.isfinite(result.map).all()
    _assert_unchanged(module, before)


@pytest.mark.parametrize("backward", ["standard", "guided"])
def test_module_unchanged_after_an_exception(backward):
    module = _user_module()
    adapter = TorchAdapter(module, input_size=24, preprocess="torch")
    before = _state(module)

    def fails(outputs):
        raise RuntimeError("half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        adapter.gradients(_images(2), Function(fails), backward)
    with pytest.raises(RuntimeError, match="half-way"):
        adapter.layer_values_and_gradients(_images(2), Function(fails), "conv2")
    _assert_unchanged(module, before)
    # and it still works afterwards, in eval mode (dropout off: repeatable)
    first = adapter.gradients(_images(2), Class([1, 2]))[0]
    assert np.array_equal(first, adapter.gradients(_images(2), Class([1, 2]))[0])


def test_batches_and_sizes():
    adapter = TorchAdapter(_tiny(), input_size=24, preprocess="torch", batch_size=2)
    images = _images(5, size=31)  # resized inside the graph
    targets = Class(np.array([0, 1, 2, 3, 4]))
    grads, scores = adapter.gradients(images, targets)
    assert grads.shape == images.shape and scores.shape == (5,)
    for row in range(5):
        one, score = adapter.gradients(images[row : row + 1], targets[[row]])
        np.testing.assert_allclose(one[0], grads[row], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(score[0], scores[row], rtol=1e-5)
    np.testing.assert_allclose(adapter.scores(images, targets), scores, rtol=1e-5)
    logits = adapter.predict(images)
    np.testing.assert_allclose(logits[np.arange(5), np.arange(5)], scores, rtol=1e-5)


def test_gradient_is_the_gradient():
    """Central differences in image space (through resize and preprocessing) agree."""
    torch.set_default_dtype(torch.float64)
    try:
        module = _tiny(1)
    finally:
        torch.set_default_dtype(torch.float32)
    adapter = TorchAdapter(module, input_size=16, preprocess="caffe")
    image = _images(1, size=20, seed=5)
    grads, _ = adapter.gradients(image, Class([7]))
    rng = np.random.default_rng(0)
    for _ in range(5):
        y, x, c = rng.integers(20), rng.integers(20), rng.integers(3)
        step = np.zeros_like(image)
        step[0, y, x, c] = 1e-2
        plus, minus = (
            adapter.scores(image + step, Class([7])),
            adapter.scores(image - step, Class([7])),
        )
        assert (plus - minus)[0] / 2e-2 == pytest.approx(grads[0, y, x, c], rel=0.05, abs=1e-4)


def test_preprocess_modes():
    x = torch.rand(2, 3, 4, 5)
    caffe = torch_preprocess("caffe")(x)
    assert torch.allclose(caffe[:, 0], x[:, 2] * 255 - 103.939)
    torch_mode = torch_preprocess("torch")(x)
    assert torch.allclose(torch_mode[:, 1], (x[:, 1] - 0.456) / 0.224)
    assert torch.allclose(torch_preprocess("tf")(x), x * 2 - 1)
    assert torch.allclose(
        torch_preprocess({"mean": [0.5] * 3, "std": [0.25] * 3})(x), (x - 0.5) * 4
    )
    with pytest.raises(UsageError, match="unknown preprocessing"):
        torch_preprocess("bgr")


def test_guided_rules_reach_functional_relus():
    """nn.ReLU modules and functional relu get the same guided/deconv rules."""
    images = _images(2, seed=2)
    targets = Class([4, 5])
    modules = TorchAdapter(_tiny(4), input_size=24, preprocess="none")
    functional = TorchAdapter(_tiny(4, functional=True), input_size=24, preprocess="none")
    for rule in ("guided", "deconv"):
        expected, _ = modules.gradients(images, targets, rule)
        np.testing.assert_allclose(functional.gradients(images, targets, rule)[0], expected)
    vanilla, _ = modules.gradients(images, targets)
    guided, _ = modules.gradients(images, targets, "guided")
    assert not np.allclose(vanilla, guided)


def test_unsupported_backward_rules_are_errors(tmp_path):
    no_relu = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3)
    )
    no_relu(torch.zeros(1, 3, 8, 8))
    adapter = TorchAdapter(no_relu, input_size=8, preprocess="none")
    with pytest.raises(ModelError, match="has none"):
        adapter.gradients(_images(1, 8), Class([0]), "guided")
    traced = torch.jit.trace(_tiny().eval(), torch.rand(1, 3, 24, 24))
    scripted = TorchAdapter(traced, input_size=24, preprocess="none")
    with pytest.raises(ModelError, match="not available"):
        scripted.gradients(_images(1), Class([0]), "deconv")
    with pytest.raises(ModelError, match="not available"):
        adapter.gradients(_images(1, 8), Class([0]), "lrp")


def test_cam_layers_of_torchvision_models():
    torch.manual_seed(0)
    assert (
        TorchAdapter(torchvision.models.resnet18(), input_size=64, preprocess="torch").cam_layer()
        == "layer4"
    )
    mobilenet = TorchAdapter(
        torchvision.models.mobilenet_v3_small(), input_size=64, preprocess="torch"
    )
    assert mobilenet.cam_layer() == "features"
    with pytest.raises(UsageError, match="no layer 'nope'"):
        mobilenet.cam_layer("nope")


def test_token_grids():
    assert token_grid(197, (224, 224)) == (1, 14, 14)  # ViT: class token
    assert token_grid(198, (224, 224)) == (2, 14, 14)  # DeiT: class + distillation
    assert token_grid(201, (224, 224)) == (5, 14, 14)  # class + 4 registers
    assert token_grid(1 + 14 * 21, (224, 336)) == (1, 14, 21)  # not square
    assert token_grid(196, (224, 224)) == (0, 14, 14)  # global-pool ViT
    assert token_grid(197, (224, 320)) is None  # no grid of that aspect


def test_randomization_cascade_leaves_the_module():
    module = _user_module()
    adapter = TorchAdapter(module, input_size=24, preprocess="none")
    before = _state(module)
    assert adapter.cascade_layers() == ["head", "conv2", "bn", "conv1"]
    images, target = _images(1), Class([2])
    original = adapter.gradients(images, target)[0]
    steps = list(adapter.randomization_cascade(None, seed=0))
    assert [(name, count) for name, count, _ in steps][:1] == [("head", 1)]
    assert [count for _, count, _ in steps] == [1, 2, 3, 4]
    _assert_unchanged(module, before)
    # cumulative: the copy is changed in place, so the last adapter is fully random
    assert not np.allclose(steps[-1][2].gradients(images, target)[0], original)
    # seeded: the same seed re-draws the same weights
    again = next(iter(adapter.randomization_cascade(1, seed=0)))[2]
    assert torch.equal(again.module.head.weight, steps[-1][2].module.head.weight)
    assert not torch.equal(again.module.head.weight, module.head.weight)
    np.testing.assert_array_equal(adapter.gradients(images, target)[0], original)


# -- named models and files ------------------------------------------------------------------------
def test_load_model_dispatch():
    module = _tiny()
    adapter = salmap.load_model(module, preprocess="torch", input_size=24)
    assert isinstance(adapter, TorchAdapter) and adapter.framework == "torch"
    assert adapter.num_classes == 10 and adapter.class_names is None
    with pytest.raises(UsageError, match="preprocess"):
        salmap.load_model(module, input_size=24)
    with pytest.raises(UsageError, match="downloads nothing"):
        salmap.load_model("resnet18", framework="torch")
    first = salmap.load_model("resnet18", framework="torch", weights="random", input_size=32)
    second = salmap.load_model("resnet18", framework="torch", weights="random", input_size=32)
    np.testing.assert_array_equal(first.predict(_images(1, 32)), second.predict(_images(1, 32)))
    assert first.class_names[285] == "Egyptian cat"
    with pytest.raises(UsageError, match="unknown model"):
        salmap.load_model("not_a_model_at_all", framework="torch", weights="random")
    with pytest.raises(UsageError, match="PyTorch"):
        salmap.load_model("efficientnet_lite0", device="cpu")


def test_state_dict_and_torchscript_files(tmp_path):
    torch.manual_seed(0)
    network = torchvision.models.resnet18().eval()
    state = tmp_path / "resnet18.pth"
    torch.save(network.state_dict(), state)
    images = _images(2, 32)
    expected = TorchAdapter(network, input_size=32, preprocess="torch").predict(images)
    loaded = salmap.load_model(state, arch="resnet18", preprocess="torch", input_size=32)
    # --weights of a named architecture is the same file
    assert loaded.num_classes == 1000
    np.testing.assert_allclose(loaded.predict(images), expected, rtol=1e-4, atol=1e-5)
    scripted = tmp_path / "resnet18.pt"
    torch.jit.trace(network, torch.rand(1, 3, 32, 32)).save(str(scripted))
    traced = salmap.load_model(scripted, preprocess="torch", input_size=32)
    np.testing.assert_allclose(traced.predict(images), expected, rtol=1e-4, atol=1e-5)
    assert traced.backward_rules == ("standard",) and "layers" not in traced.capabilities
    with pytest.raises(ModelError, match="inner layer"):
        salmap.explain(images[0], traced, method="grad-cam")


class _Runs:
    """A pickle that would run code when loaded."""

    def __reduce__(self):
        import os

        return os.system, ("echo pwned",)


class TwoInputs(torch.nn.Module):
    def forward(self, x, mask):
        return x.mean(dim=(2, 3)) * mask


class SegmentationLike(torch.nn.Module):
    def forward(self, x):
        return x[:, :2]


def _bad_model_files(tmp_path) -> dict:
    files = {}
    files["two-inputs"] = tmp_path / "two_inputs.pt"
    torch.jit.script(TwoInputs()).save(str(files["two-inputs"]))
    files["not-classes"] = tmp_path / "segmentation.pt"
    torch.jit.script(SegmentationLike()).save(str(files["not-classes"]))
    files["corrupt"] = tmp_path / "corrupt.pt"
    scripted = files["not-classes"].read_bytes()
    files["corrupt"].write_bytes(scripted[: len(scripted) // 2])
    files["code"] = tmp_path / "code.pth"
    files["code"].write_bytes(pickle.dumps({"conv1.weight": _Runs()}))
    files["whole-module"] = tmp_path / "module.pth"
    torch.save(_tiny(), files["whole-module"])
    files["wrong-arch"] = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), files["wrong-arch"])
    return files


BAD_MODELS = {
    "two-inputs": ([], "failed on a", 4),
    # an output that does not fit a class target is a model problem (exit 4), in
    # explain() as in the adapter
    "not-classes": (["--target", "1"], "N×classes", 4),
    "corrupt": ([], "not a TorchScript model", 4),
    "code": (["--arch", "resnet18"], "contains Python code", 4),
    "whole-module": (["--arch", "resnet18"], "contains Python code", 4),
    "wrong-arch": (["--arch", "resnet34"], "does not fit resnet34", 4),
}


def test_bad_models_fail_with_one_line(tmp_path, capsys):
    files = _bad_model_files(tmp_path)
    for case, (extra, message, exit_code) in BAD_MODELS.items():
        figure = tmp_path / f"{case}.png"
        argv = ["explain", "chelsea", "--model", str(files[case]), "--framework", "torch"]
        argv += ["--preprocess", "none", "--input-size", "32", "-o", str(figure), *extra]
        code = main(argv)
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code == exit_code, (case, captured.err)
        assert len(lines) == 1 and message in lines[0], (case, lines)
        assert "Traceback" not in captured.err and not figure.exists()


def test_a_class_target_on_a_map_output_is_a_model_error():
    adapter = TorchAdapter(SegmentationLike(), input_size=16, preprocess="none")
    with pytest.raises(ModelError, match="not N×classes"):
        adapter.gradients(_images(1, 16), Class([1]))


# -- the same EfficientNet-Lite0 weights in both frameworks -------------------------------------
@pytest.mark.slow
def test_efficientnet_lite0_torch_and_keras_agree():
    pytest.importorskip("efficientnet_lite_pytorch")
    torch_model = salmap.load_model("efficientnet_lite0", framework="torch", device="cpu")
    keras_model = salmap.load_model("efficientnet_lite0")
    assert torch_model.framework == "torch" and keras_model.framework == "keras"
    for photo, expected in (("chelsea", 285), ("coffee", 967)):
        image = salmap.sample_image(photo)
        torch_logits = torch_model.predict(image[None])[0]
        keras_logits = keras_model.predict(image[None])[0]
        assert int(torch_logits.argmax()) == int(keras_logits.argmax()) == expected
        assert np.corrcoef(torch_logits, keras_logits)[0, 1] > 0.999
        for method, params in (
            ("vanilla", {}),
            ("integrated-gradients", {"steps": 32, "rule": "gauss-legendre"}),
            ("grad-cam", {}),
        ):
            maps = [
                salmap.explain(image, model, method=method, target=expected, **params).map
                for model in (torch_model, keras_model)
            ]
            correlation = np.corrcoef(maps[0].ravel(), maps[1].ravel())[0, 1]
            assert correlation >= 0.98, (photo, method, correlation)

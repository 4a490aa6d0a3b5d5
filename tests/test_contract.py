"""One contract over every method × every framework: what any method must do on any model.

Each method in ``salmap.methods.METHODS`` runs on the analytic NumPy model, a small
Keras CNN and (when the PyTorch adapter is installed) a small PyTorch CNN — the
transformer methods on a small PyTorch ViT instead, and must refuse the others with one
line — through a proxy that records every model call. The checks: output shape and finiteness,
batch-size invariance, same seed same map, another seed another map (noisy methods),
model evaluations equal to the method's plan, full batches, and a clear error for a
backward rule the model lacks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from salmap.errors import ModelError
from salmap.methods import METHODS
from salmap.models.analytic import AnalyticAdapter

SIZE = 32
CLASSES = 10
IMAGES = 3

#: Light parameters so that every method runs in a fraction of a second on tiny models.
LIGHT = {
    "samples": 6,
    "steps": 6,
    "masks": 40,
    "window": 8,
    "stride": 8,
    "probe": 4,
    "permutations": 2,
    "grid": 2,
    "designs": 8,
}

#: Model evaluations per image with the light parameters: (gradient, forward). ``None``
#: where the count depends on the model (Guided IG, XRAI's segments).
PLAN = {
    "vanilla": (1, 0),
    "gradient-x-input": (1, 0),
    "guided-backprop": (1, 0),
    "deconvnet": (1, 0),
    "smoothgrad": (6, 0),
    "squaregrad": (6, 0),
    "vargrad": (6, 0),
    "integrated-gradients": (6, 5),  # adaptive rule: a 4-interval probe, then 6 points
    "blur-ig": (6, 0),
    "guided-ig": (6, 0),
    "occlusion": (0, 1 + 16),  # the image itself and 4×4 windows of 8 px
    "rise": (0, 40),
}


class Recorder:
    """Any adapter, with every call's kind and batch size written down."""

    def __init__(self, adapter):
        self._adapter = adapter
        self.calls: list[tuple[str, int]] = []

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def _record(self, kind, images, call, *args, **kwargs):
        self.calls.append((kind, len(images)))
        return call(images, *args, **kwargs)

    def predict(self, images):
        return self._record("forward", images, self._adapter.predict)

    def scores(self, images, targets):
        return self._record("forward", images, self._adapter.scores, targets)

    def gradients(self, images, targets, backward="standard"):
        return self._record("gradient", images, self._adapter.gradients, targets, backward)

    def layer_values_and_gradients(self, images, targets, layer=None):
        call = self._adapter.layer_values_and_gradients
        return self._record("layer", images, call, targets, layer)

    def attention_maps(self, images, targets=None, **quantities):
        return self._record(
            "attention", images, self._adapter.attention_maps, targets, **quantities
        )

    def count(self, kind: str) -> int:
        return sum(size for k, size in self.calls if k == kind)


def _analytic():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(CLASSES, SIZE, SIZE, 3))
    quadratic = 0.3 * rng.normal(size=(CLASSES, SIZE, SIZE, 3))
    return AnalyticAdapter(weights, rng.normal(size=CLASSES), quadratic, batch_size=4)


def _keras(tiny_keras_model):
    import salmap

    return salmap.load_model(tiny_keras_model, preprocess="none", batch_size=4)


def _torch():
    torch_adapter = pytest.importorskip("salmap.models.torch_adapter")
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, CLASSES),
    ).eval()
    return torch_adapter.TorchAdapter(
        module, input_size=(SIZE, SIZE), preprocess="none", batch_size=4
    )


def _vit():
    torch_adapter = pytest.importorskip("salmap.models.torch_adapter")
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    module = VisionTransformer(
        image_size=SIZE, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
        mlp_dim=32, num_classes=CLASSES,
    )  # fmt: skip
    torch.nn.init.normal_(module.heads.head.weight)  # torchvision starts the head at zero
    return torch_adapter.TorchAdapter(
        module.eval(), input_size=(SIZE, SIZE), preprocess="none", batch_size=4
    )


#: The model kinds every method runs on; transformer methods run on the ViT alone.
KINDS = ("analytic", "keras", "torch")
TRANSFORMERS = sorted(n for n in METHODS if METHODS[n].family == "transformers")


def _pairs(names) -> list[tuple[str, str]]:
    """(model kind, method) pairs: transformer methods on the ViT, others on KINDS."""
    return [
        (kind, name) for name in names for kind in (("vit",) if name in TRANSFORMERS else KINDS)
    ]


@pytest.fixture(scope="module")
def adapters(tiny_keras_model):
    """The adapter of each model kind, built once."""
    built: dict = {}
    factories = {
        "analytic": _analytic, "keras": lambda: _keras(tiny_keras_model), "torch": _torch,
        "vit": _vit,
    }  # fmt: skip

    def get(kind: str):
        if kind not in built:
            built[kind] = factories[kind]()
        return built[kind]

    return get


@pytest.fixture(scope="module", params=KINDS)
def adapter(request, adapters):
    return adapters(request.param)


@pytest.fixture(scope="module")
def images():
    from skimage.transform import resize

    import salmap

    photos = [salmap.sample_image(name) for name in ("chelsea", "coffee", "astronaut")]
    return np.stack([resize(p, (SIZE, SIZE), anti_aliasing=True) for p in photos]).astype(
        np.float32
    )


def _params(name: str, **extra) -> dict:
    defaults = METHODS[name].defaults
    params = {key: value for key, value in LIGHT.items() if key in defaults}
    if METHODS[name].family == "noise":
        params.update(samples=LIGHT["samples"])
    return {**params, **extra}


def _supported(adapter, name: str) -> bool:
    needs_rule = {
        "guided-backprop": "guided",
        "deconvnet": "deconv",
        "guided-grad-cam": "guided",
        "deeplift": "deeplift",
        "deeplift-shap": "deeplift",
        "lrp": "lrp-epsilon-plus",
    }
    rule = needs_rule.get(name)
    capability = {"fullgrad": "biases", "ablation-cam": "ablation"}.get(name)
    if capability is not None and capability not in adapter.capabilities:
        return False
    return rule is None or rule in adapter.backward_rules


def _run(adapter, name, **params):
    targets = np.array([1, 4, 7])
    return METHODS[name].function(adapter, images_cache["images"], targets, **params)


images_cache: dict = {}


@pytest.fixture(autouse=True)
def _share_images(images):
    images_cache["images"] = images


@pytest.mark.parametrize("kind, name", _pairs(sorted(METHODS)))
def test_shape_finite_and_batch_size_invariance(adapters, kind, name):
    adapter = adapters(kind)
    if not _supported(adapter, name):
        pytest.skip(f"{adapter.framework} has no rule for {name} (checked below)")
    spec = METHODS[name]
    params = _params(name)
    if "batch_size" not in spec.defaults and spec.family != "noise":
        pytest.skip(f"{name} takes no batch_size")
    small = _run(adapter, name, batch_size=1, **params)
    large = _run(adapter, name, batch_size=64, **params)
    expected = (IMAGES, SIZE, SIZE, 3) if spec.output == "attribution" else (IMAGES, SIZE, SIZE)
    assert small.shape == expected
    assert np.all(np.isfinite(small))
    scale = max(float(np.abs(large).max()), 1e-12)
    np.testing.assert_allclose(small, large, atol=2e-4 * scale, rtol=2e-3)


@pytest.mark.parametrize(
    "kind, name", _pairs(sorted(n for n in METHODS if "seed" in METHODS[n].defaults))
)
def test_same_seed_same_map_other_seed_other_map(adapters, kind, name):
    adapter = adapters(kind)
    if not _supported(adapter, name):
        pytest.skip(f"{adapter.framework} has no rule for {name}")
    params = _params(name)
    if "baseline" in METHODS[name].defaults:  # a random baseline gives the seed a role
        params["baseline"] = "uniform"
    first = _run(adapter, name, seed=3, **params)
    again = _run(adapter, name, seed=3, **params)
    other = _run(adapter, name, seed=4, **params)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other, atol=0)  # squared gradients can be ~1e-11


@pytest.mark.parametrize("name", sorted(PLAN))
def test_model_evaluations_follow_the_plan_in_full_batches(adapter, name):
    if not _supported(adapter, name):
        pytest.skip(f"{adapter.framework} has no rule for {name}")
    recorder = Recorder(adapter)
    _run(recorder, name, batch_size=4, **_params(name))
    gradient, forward = PLAN[name]
    if name == "guided-ig":  # sequential: one gradient call per step, all images in it
        assert recorder.calls == [("gradient", IMAGES)] * LIGHT["steps"]
        return
    assert recorder.count("gradient") == IMAGES * gradient
    if name != "integrated-gradients":  # the adaptive probe runs per image (see below)
        assert recorder.count("forward") == IMAGES * forward
        for kind in ("gradient", "forward"):
            total = recorder.count(kind)
            assert sum(k == kind for k, _ in recorder.calls) == math.ceil(total / 4)
    else:
        assert recorder.count("forward") == IMAGES * forward
    assert all(size <= 4 for _, size in recorder.calls)


def test_cam_layer_read_once_per_batch(adapter):
    recorder = Recorder(adapter)
    _run(recorder, "grad-cam", batch_size=2)
    assert recorder.calls == [("layer", 2), ("layer", 1)]


@pytest.mark.parametrize("name", ["guided-backprop", "deconvnet", "guided-grad-cam"])
def test_a_rule_the_model_lacks_is_an_error(adapter, name):
    if _supported(adapter, name):
        result = _run(adapter, name)
        assert np.all(np.isfinite(result))
        return
    with pytest.raises(ModelError, match="backward rule"):
        _run(adapter, name)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_methods_read_every_block_once_per_batch(adapters, name):
    recorder = Recorder(adapters("vit"))
    _run(recorder, name, batch_size=2)
    assert recorder.calls == [("attention", 2), ("attention", 1)]


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_methods_refuse_a_model_without_attention(adapter, name):
    with pytest.raises(ModelError, match="attention"):
        _run(adapter, name)

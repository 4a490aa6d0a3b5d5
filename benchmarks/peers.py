"""The peer libraries, run on salmap's model, image, baseline and noise.

Every peer is given a Keras model that takes the [0, 1] RGB image and applies the
salmap adapter's preprocessing inside (:func:`unit_model`), so every library
differentiates with respect to the same [0, 1] image, uses the same black (zero)
baseline and adds noise of the same absolute standard deviation in [0, 1] units.
For each peer, :func:`make_peers` returns a :class:`Peer` whose functions all take
``(image H×W×3 float32 in [0, 1], target class index, *, keyword parameters)`` and
return NumPy arrays in [0, 1]-image space:

- ``vanilla(image, target)`` -> H×W, max over channels of |gradient|;
- ``smoothgrad(image, target, *, samples, sigma, seed)`` -> H×W, max over channels
  of |mean gradient| (signed gradients averaged first, as Smilkov et al.), noise
  standard deviation ``sigma`` in [0, 1] units;
- ``ig(image, target, *, steps)`` -> H×W×3 signed attribution, black baseline;
- ``grad_cam(image, target)``, ``occlusion(image, target, *, window, stride)``,
  ``rise(image, target, *, masks, seed)`` -> H×W;

and ``None`` for what the peer does not have. Each takes ``batch_size=`` where the
library batches (Xplique everywhere, PAIR's IG), and ignores it where the library
runs one sample per model call by design (PAIR's and tf-keras-vis's SmoothGrad).

How each library's parameters map onto the shared ones (read from their sources):

- **Xplique 2.0.2** compiles its own gradient (``tf.function`` around the model)
  and adds ``tf.random.normal(0, noise)`` — ``noise`` is the absolute standard
  deviation. Its noise (and RISE's masks) cannot be seeded per call: with a global
  TF seed, every new trace replays the same stream (a remainder batch repeats the
  first draws, and every seed gives the same noise), so it runs with the global
  seed unset: independent draws, not reproducible. Its explainers reduce
  channels themselves (``reducer``: "mean" for SmoothGrad and IG, "max" of |g| for
  Saliency); ``reducer=None`` keeps the three channels, reduced here. Its IG uses
  the trapezoid rule on ``linspace(0, 1, steps)`` (its only rule). Grad-CAM runs on
  the adapter's own model with preprocessed input (Xplique finds its layer with
  ``model.get_layer``, top level only; the input space does not enter Grad-CAM).
  Occlusion fills windows with ``occlusion_value`` (0.5, salmap's default) and sums
  the drops of covering windows (salmap averages them: the same model calls).
- **PAIR saliency 0.2.1**: the callback is compiled with ``tf.function``.
  ``GetSmoothedMask`` draws ``np.random.normal(0, stdev_spread * (max - min))``, so
  ``stdev_spread = sigma / (image max - image min)``, seeded with
  ``np.random.seed(seed)``; ``magnitude=False`` gives the plain mean (PAIR's
  default squares the gradients). Its IG sums gradients at ``linspace(0, 1,
  steps)`` and divides by ``steps`` (its only rule). No RISE; its occlusion only
  slides by one pixel.
- **tf-keras-vis 0.8.7** runs eagerly (no ``tf.function``), one model call per
  SmoothGrad sample; ``smooth_noise`` is relative to each input's (max - min), so
  ``smooth_noise = sigma / (image max - image min)``, seeded with
  ``np.random.seed(seed)``. ``gradient_modifier=None`` and ``keepdims=True`` keep
  the signed per-channel gradients (its default, |g| per sample before averaging,
  is not SmoothGrad's mean). No IG, occlusion or RISE.

Install the peers in their own virtual environment that sees the machine's
TensorFlow 2.21 and the editable salmap (Xplique 2.0.2 pins ``tensorflow<=2.20``
and pulls the CUDA build, hence ``--no-deps`` and its requirements by hand;
opencv-python is not installed: cv2 comes from the system's
opencv-contrib-python-headless; its pins scikit-image<=0.25.2 and scipy<=1.15.3
are not applied, so salmap keeps the machine's versions)::

    python -m venv --system-site-packages /tmp/peers-venv
    /tmp/peers-venv/bin/pip install tf-keras-vis saliency
    /tmp/peers-venv/bin/pip install --no-deps xplique==2.0.2
    /tmp/peers-venv/bin/pip install einops "scikit-learn<=1.7.2" \\
        "tensorflow-probability==0.25.0"
    /tmp/peers-venv/bin/pip install --no-deps tf-keras==2.21.0

Run the sanity checks (each peer against salmap on chelsea, 224×224)::

    /tmp/peers-venv/bin/python benchmarks/peers.py
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

#: The peers, in table order.
PEER_NAMES = ("xplique", "pair", "tf-keras-vis")
_MODULES = {
    "xplique": "xplique.attributions",
    "pair": "saliency.core",
    "tf-keras-vis": "tf_keras_vis.saliency",
}


def missing_peers() -> dict[str, str]:
    """The peers that do not import here, with the reason (one line each)."""
    missing = {}
    for name in PEER_NAMES:
        try:
            importlib.import_module(_MODULES[name])
        except Exception as error:  # noqa: BLE001 - any import failure means "not run"
            missing[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
    return missing


def max_abs(attribution) -> np.ndarray:
    """H×W×C -> H×W: max over channels of |value| (salmap's default reduction)."""
    return np.abs(np.asarray(attribution, np.float32)).max(axis=-1)


def unit_model(adapter):
    """A Keras model from [0, 1] RGB images to the adapter's logits.

    The adapter's preprocessing runs inside (a layer calling ``adapter._preprocess``),
    then the adapter's own model, so peers see what salmap's gradients see.
    """
    import keras

    if adapter._logits is not adapter.model:
        raise SystemExit(f"{adapter.name}: the peers need a model that outputs logits")
    cached = adapter.__dict__.get("_peers_unit_model")
    if cached is not None:
        return cached

    class Preprocess(keras.layers.Layer):
        """salmap's [0, 1] -> model-input preprocessing, as a layer."""

        def __init__(self, function, **kwargs):
            super().__init__(**kwargs)
            self.function = function

        def call(self, inputs):
            return self.function(inputs)

    height, width = adapter.input_size
    inputs = keras.Input((height, width, 3), name="unit_image")
    outputs = adapter.model(Preprocess(adapter._preprocess, name="salmap_preprocess")(inputs))
    model = keras.Model(inputs, outputs, name=f"{adapter.name}_unit")
    adapter.__dict__["_peers_unit_model"] = model
    return model


@dataclass
class Peer:
    """One library's functions on one adapter (``None``: the library lacks it)."""

    name: str
    vanilla: Callable | None = None
    smoothgrad: Callable | None = None
    ig: Callable | None = None
    grad_cam: Callable | None = None
    occlusion: Callable | None = None
    rise: Callable | None = None


def make_peers(adapter, names=None, default_batch: int = 64) -> dict[str, Peer]:
    """The importable peers among ``names`` (default all), built on ``adapter``."""
    builders = {"xplique": xplique_peer, "pair": pair_peer, "tf-keras-vis": tf_keras_vis_peer}
    missing = missing_peers()
    return {
        name: builders[name](adapter, default_batch)
        for name in (names or PEER_NAMES)
        if name not in missing
    }


def _range(image) -> float:
    spread = float(np.max(image) - np.min(image))
    if spread <= 0:
        raise ValueError("a constant image has no range to scale the relative noise by")
    return spread


def _prepared(adapter, image):
    import tensorflow as tf

    return adapter._preprocess(tf.constant(np.asarray(image, np.float32)[None]))


def _simple_layer(adapter) -> str:
    layer = adapter.cam_layer()
    if "/" in layer:
        raise SystemExit(f"{adapter.name}: the peers' Grad-CAM needs a top-level layer")
    return layer


# -- Xplique ------------------------------------------------------------------------
def xplique_peer(adapter, default_batch: int = 64) -> Peer:
    """Xplique's explainers, built once per parameter set, as the library intends."""
    import tensorflow as tf
    from xplique.attributions import (
        GradCAM,
        IntegratedGradients,
        Occlusion,
        Rise,
        Saliency,
        SmoothGrad,
    )

    model = unit_model(adapter)
    classes = adapter.num_classes
    explainers = {}

    def explainer(kind, **params):
        key = (kind.__name__, tuple(sorted(params.items())))
        if key not in explainers:
            if kind is GradCAM:
                explainers[key] = kind(adapter.model, **params)
            else:
                explainers[key] = kind(model, **params)
        return explainers[key]

    def unseeded():
        # Xplique draws its noise and masks inside tf.function without op seeds. With a
        # global TF seed set (load_benchmark_model sets one for ResNet50's weights), each
        # new trace (one per batch shape) replays the same stream: a 32-sample remainder
        # batch repeats the first 32 draws of the 64-sample batch, and tf.random.set_seed
        # with any value gives the same noise again (measured on _perturb_samples). So
        # Xplique runs unseeded, as its users run it: independent draws every call, not
        # reproducible ones; ``seed`` is not used.
        tf.random.set_seed(None)

    def one_hot(target):
        return tf.one_hot([int(target)], classes)

    def batch(size):
        return int(size or default_batch)

    def run(instance, image, target):
        inputs = np.asarray(image, np.float32)[None]
        return instance.explain(inputs, one_hot(target)).numpy()[0]

    def vanilla(image, target, *, batch_size=None):
        # Saliency: max over channels of |gradient| (its default reducer "max").
        return run(explainer(Saliency, batch_size=batch(batch_size)), image, target)[..., 0]

    def smoothgrad(image, target, *, samples, sigma, seed, batch_size=None):
        instance = explainer(
            SmoothGrad,
            batch_size=batch(batch_size),
            nb_samples=int(samples),
            noise=float(sigma),
            reducer=None,
        )
        unseeded()
        return max_abs(run(instance, image, target))

    def ig(image, target, *, steps, batch_size=None):
        instance = explainer(
            IntegratedGradients,
            batch_size=batch(batch_size),
            steps=int(steps),
            baseline_value=0.0,
            reducer=None,
        )
        return run(instance, image, target)

    def grad_cam(image, target, *, batch_size=None):
        instance = explainer(
            GradCAM, batch_size=batch(batch_size), conv_layer=_simple_layer(adapter)
        )
        inputs = _prepared(adapter, image)
        return instance.explain(inputs, one_hot(target)).numpy()[0, ..., 0]

    def occlusion(image, target, *, window, stride, value=0.5, batch_size=None):
        instance = explainer(
            Occlusion,
            batch_size=batch(batch_size),
            patch_size=int(window),
            patch_stride=int(stride),
            occlusion_value=float(value),
        )
        return run(instance, image, target)[..., 0]

    def rise(image, target, *, masks, seed=0, cells=7, probability=0.5, batch_size=None):
        instance = explainer(
            Rise,
            batch_size=batch(batch_size),
            nb_samples=int(masks),
            grid_size=int(cells),
            preservation_probability=float(probability),
            mask_value=0.0,
        )
        unseeded()
        return run(instance, image, target)[..., 0]

    return Peer("xplique", vanilla, smoothgrad, ig, grad_cam, occlusion, rise)


# -- PAIR saliency --------------------------------------------------------------------
def pair_callbacks(adapter):
    """PAIR's ``call_model_function``, compiled, on the same [0, 1] images and
    preprocessing; the target comes in ``call_model_args["target"]``."""
    import keras
    import saliency.core as pair
    import tensorflow as tf

    model = adapter.model
    cached = adapter.__dict__.get("_peers_pair_callback")
    if cached is not None:
        return cached

    two_outputs = None

    @tf.function(reduce_retracing=True)
    def gradients(x, target):
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores = tf.gather(model(adapter._preprocess(x), training=False), target, axis=1)
        return tape.gradient(scores, x), scores

    @tf.function(reduce_retracing=True)
    def convolution(x, target):
        with tf.GradientTape() as tape:
            activations, logits = two_outputs(adapter._preprocess(x), training=False)
            score = tf.gather(logits, target, axis=1)
        return activations, tape.gradient(score, activations)

    def call_model_function(x_batch, call_model_args=None, expected_keys=None):
        nonlocal two_outputs
        x = tf.constant(np.asarray(x_batch, np.float32))
        target = tf.constant(int(call_model_args["target"]), tf.int32)
        if pair.CONVOLUTION_LAYER_VALUES in (expected_keys or []):
            if two_outputs is None:
                layer = model.get_layer(_simple_layer(adapter))
                two_outputs = keras.Model(model.inputs, [layer.output, model.output])
            values, grads = convolution(x, target)
            return {
                pair.CONVOLUTION_LAYER_VALUES: values.numpy(),
                pair.CONVOLUTION_OUTPUT_GRADIENTS: grads.numpy(),
            }
        grads, scores = gradients(x, target)
        return {
            pair.INPUT_OUTPUT_GRADIENTS: grads.numpy(),
            pair.OUTPUT_LAYER_VALUES: scores.numpy(),
        }

    adapter.__dict__["_peers_pair_callback"] = call_model_function
    return call_model_function


def pair_peer(adapter, default_batch: int = 64) -> Peer:
    """PAIR's methods with the compiled callback."""
    import saliency.core as pair

    call = pair_callbacks(adapter)
    gradient_saliency = pair.GradientSaliency()
    integrated = pair.IntegratedGradients()
    cam = pair.GradCam()

    def args(target):
        return {"target": int(target)}

    def vanilla(image, target, *, batch_size=None):
        return max_abs(gradient_saliency.GetMask(image, call, args(target)))

    def smoothgrad(image, target, *, samples, sigma, seed, batch_size=None):
        np.random.seed(int(seed))  # noqa: NPY002 - PAIR draws from the global generator
        mask = gradient_saliency.GetSmoothedMask(
            image,
            call,
            args(target),
            stdev_spread=float(sigma) / _range(image),
            nsamples=int(samples),
            magnitude=False,
        )
        return max_abs(mask)

    def ig(image, target, *, steps, batch_size=None):
        return integrated.GetMask(
            image,
            call,
            args(target),
            x_baseline=np.zeros_like(image),
            x_steps=int(steps),
            batch_size=int(batch_size or default_batch),
        )

    def grad_cam(image, target, *, batch_size=None):
        return cam.GetMask(image, call, args(target), should_resize=True)

    return Peer("pair", vanilla, smoothgrad, ig, grad_cam)


# -- tf-keras-vis ---------------------------------------------------------------------
def tf_keras_vis_peer(adapter, default_batch: int = 64) -> Peer:
    """tf-keras-vis's Saliency (vanilla, SmoothGrad) and Gradcam, eager as it runs."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.scores import CategoricalScore

    saliency = Saliency(unit_model(adapter), model_modifier=None, clone=False)
    gradcam = Gradcam(adapter.model, model_modifier=None, clone=False)

    def signed(image, target, **params):
        grads = saliency(
            CategoricalScore([int(target)]),
            np.asarray(image, np.float32)[None],
            keepdims=True,
            gradient_modifier=None,
            normalize_map=False,
            **params,
        )
        return np.asarray(grads)[0]

    def vanilla(image, target, *, batch_size=None):
        return max_abs(signed(image, target))

    def smoothgrad(image, target, *, samples, sigma, seed, batch_size=None):
        np.random.seed(int(seed))  # noqa: NPY002 - tf-keras-vis draws from it
        noise = float(sigma) / _range(image)
        return max_abs(signed(image, target, smooth_samples=int(samples), smooth_noise=noise))

    def grad_cam(image, target, *, batch_size=None):
        cam = gradcam(
            CategoricalScore([int(target)]),
            _prepared(adapter, image).numpy(),
            penultimate_layer=_simple_layer(adapter),
            normalize_cam=False,
        )
        return np.asarray(cam)[0]

    return Peer("tf-keras-vis", vanilla, smoothgrad, None, grad_cam)


# -- sanity checks ----------------------------------------------------------------------
def chelsea_224() -> np.ndarray:
    """The benchmarks' image: chelsea resized to 224×224, float32 RGB in [0, 1]."""
    from skimage.transform import resize

    import salmap

    return resize(salmap.sample_image("chelsea"), (224, 224), anti_aliasing=True).astype(np.float32)


def load_benchmark_model(name: str, batch_size: int = 64):
    """ResNet50 with seeded random weights, or the embedded EfficientNet-Lite0."""
    import keras

    import salmap

    keras.utils.set_random_seed(0)
    weights = None if name == "efficientnet_lite0" else "random"
    return salmap.load_model(name, weights=weights, batch_size=batch_size)


def correlation(a, b) -> float:
    """Pearson correlation of two maps (flattened)."""
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def noise_check(names=None, samples: int = 96, sigma: float = 0.15) -> dict:
    """The noise each library's SmoothGrad really adds: ``{library: (sigma, samples)}``.

    On a model whose score is ``sum(x_red^3) / 3`` the gradient is ``x_red^2`` on the
    red channel and 0 on the others, so the mean over ``n`` noisy copies is, per
    pixel, ``x^2 + sigma^2`` on average with variance ``(4 x^2 sigma^2 + 2 sigma^4) /
    n`` (Gaussian noise). ``sqrt(mean(map - x^2))`` recovers sigma, and the variance
    of the standardised residuals recovers the effective number of independent
    samples (fewer than ``n`` when draws repeat). Run on chelsea; 96 samples make a
    64-sample batch and a 32-sample remainder.
    """
    import keras

    from salmap.methods import smoothgrad
    from salmap.models import KerasAdapter

    image = chelsea_224()
    red = image[..., 0].astype(np.float64)
    inputs = keras.Input((224, 224, 3))
    cube = keras.layers.Lambda(
        lambda x: keras.ops.stack(
            [keras.ops.sum(x[..., 0] ** 3, axis=(1, 2)) / 3, keras.ops.sum(x, axis=(1, 2, 3))],
            axis=-1,
        )
    )(inputs)
    adapter = KerasAdapter(keras.Model(inputs, cube), preprocess="none", batch_size=64)

    def measured(smoothed):
        residual = np.asarray(smoothed, np.float64) - red**2
        spread = np.sqrt(4 * red**2 * sigma**2 + 2 * sigma**4)
        effective = 1 / np.var((residual - sigma**2) / spread)
        return float(np.sqrt(max(residual.mean(), 0.0))), float(effective)

    ours = smoothgrad(adapter, image[None], [0], samples=samples, sigma=sigma, seed=0)[0]
    out = {"salmap": measured(max_abs(ours))}
    for name, peer in make_peers(adapter, names).items():
        out[name] = measured(peer.smoothgrad(image, 0, samples=samples, sigma=sigma, seed=0))
    return out


def sanity(models, ig_steps: int, samples: int) -> None:
    """Print each peer against salmap on chelsea (see the module docstring)."""
    from salmap.methods import completeness_error, integrated_gradients, smoothgrad
    from salmap.methods import vanilla_gradients as salmap_vanilla

    image = chelsea_224()
    batch = image[None]
    sigma = 0.15 * _range(image)
    print(f"missing peers: {missing_peers() or 'none'}")
    print("noise check (x^3 model, sigma 0.15 and 96 samples asked):")
    for name, (measured, effective) in noise_check().items():
        print(f"  {name:<14} sigma {measured:.4f}, independent samples {effective:.1f}")
    for name in models:
        adapter = load_benchmark_model(name)
        target = int(np.argmax(adapter.predict(batch)[0]))
        targets = np.array([target])
        peers = make_peers(adapter)
        ours_vanilla = max_abs(salmap_vanilla(adapter, batch, targets)[0])
        ours_ig = integrated_gradients(adapter, batch, targets, steps=ig_steps, rule="trapezoid")
        ours_sg = max_abs(smoothgrad(adapter, batch, targets, samples=samples, sigma=sigma)[0])
        ours_sg_other = max_abs(
            smoothgrad(adapter, batch, targets, samples=samples, sigma=sigma, seed=7)[0]
        )
        salmap_error = completeness_error(adapter, batch, targets, ours_ig)[0]
        print(f"\n{adapter.name} (target {target})")
        print(
            f"  salmap: IG-{ig_steps} trapezoid completeness error {salmap_error:.2e}; "
            f"SmoothGrad-{samples} seed 0 vs seed 7: r = {correlation(ours_sg, ours_sg_other):.4f}"
        )
        for peer_name, peer in peers.items():
            theirs = peer.vanilla(image, target)
            difference = np.abs(theirs - ours_vanilla).max() / np.abs(ours_vanilla).max()
            line = f"  {peer_name:<13} vanilla max|diff|/max {difference:.1e}"
            if peer.ig is not None:
                attribution = peer.ig(image, target, steps=ig_steps)
                error = completeness_error(adapter, batch, targets, attribution[None])[0]
                against = np.abs(attribution - ours_ig[0]).max() / np.abs(ours_ig[0]).max()
                line += (
                    f"; IG-{ig_steps} completeness error {error:.2e}, "
                    f"max|diff vs salmap trapezoid|/max {against:.1e}"
                )
            smoothed = peer.smoothgrad(image, target, samples=samples, sigma=sigma, seed=3)
            line += (
                f"; SmoothGrad-{samples} r vs salmap seed 0 {correlation(smoothed, ours_sg):.4f}"
            )
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Sanity checks of the peers against salmap")
    parser.add_argument("--models", default="resnet50,efficientnet_lite0")
    parser.add_argument("--ig-steps", type=int, default=512)
    parser.add_argument("--samples", type=int, default=64, help="SmoothGrad samples")
    args = parser.parse_args()
    sanity(args.models.split(","), args.ig_steps, args.samples)


if __name__ == "__main__":
    main()

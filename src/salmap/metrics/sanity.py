"""Sanity checks for saliency maps (Adebayo et al. 2018): does the map depend on the model?

:func:`cascading_randomization` re-initialises a *copy* of the model's layers from the
top (logits) down, one cut point after another, and explains the same image with the
same target after each cut. A method that explains the model gives maps that drift
away from the original as more of the network becomes random; a method that only
reconstructs the image (an edge detector) keeps giving the same map. The distance
is measured by :func:`rank_correlation` (Spearman, of map magnitudes by default) and
:func:`map_ssim` (structural similarity of min-max normalised maps).

The user's model is never touched: a Keras model is cloned
(``keras.models.clone_model``, weights copied) and only the clone is re-initialised.
Other adapters can take part by providing ``randomization_cascade(cuts, seed)``,
a generator of ``(label, adapter)`` pairs, cumulative from the top layer down.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from salmap.errors import ModelError, UsageError
from salmap.maps import normalize_map, resize_map

__all__ = [
    "CascadeResult",
    "cascading_randomization",
    "rank_correlation",
    "map_ssim",
    "weighted_layers",
    "cascade_length",
    "supports_cascade",
]

#: Cut points used when ``layers`` is not given: every weighted layer of small models,
#: this many evenly spaced ones of larger models.
DEFAULT_CUTS = 10


@dataclass
class CascadeResult:
    """Maps and similarities along a cascading randomisation.

    Attributes
    ----------
    layers : list of str
        ``"original"``, then for each step the lowest layer randomised so far (every
        weighted layer above it is random too).
    randomised : list of int
        How many weighted layers are random at each step (0 for the original).
    maps : dict of method -> list of H×W float32
        The map at each step, at the image's resolution.
    spearman : dict of method -> array
        Spearman rank correlation with the original map at each step (1 at step 0).
    ssim : dict of method -> array
        SSIM with the original map at each step (1 at step 0).
    target : int
        The class explained at every step (the original model's choice).
    absolute : bool
        Whether maps were compared by magnitude.
    """

    layers: list[str]
    randomised: list[int]
    maps: dict[str, list[np.ndarray]]
    spearman: dict[str, np.ndarray]
    ssim: dict[str, np.ndarray]
    target: int
    model: str | None = None
    absolute: bool = True
    params: dict[str, dict] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.maps)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "target": int(self.target),
            "absolute": self.absolute,
            "layers": list(self.layers),
            "randomised": [int(n) for n in self.randomised],
            "spearman": {m: [_number(v) for v in values] for m, values in self.spearman.items()},
            "ssim": {m: [_number(v) for v in values] for m, values in self.ssim.items()},
        }


def _number(value) -> float | None:
    value = float(value)
    return None if np.isnan(value) else round(value, 6)


# -- similarity ---------------------------------------------------------------------------
def rank_correlation(first: np.ndarray, second: np.ndarray, *, absolute: bool = True) -> float:
    """Spearman rank correlation of two maps (resized to the first's shape).

    ``absolute=True`` compares magnitudes, as Adebayo et al. do for maps whose sign is
    not meaningful; ties get average ranks. Returns NaN when a map is constant.
    """
    from scipy.stats import spearmanr

    first, second = _pair(first, second, absolute)
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(first.ravel(), second.ravel())[0])


def map_ssim(first: np.ndarray, second: np.ndarray, *, absolute: bool = True) -> float:
    """Structural similarity (Wang et al. 2004, scikit-image) of two maps, each min-max
    normalised to [0, 1] first (magnitudes if ``absolute``), in [-1, 1]."""
    from skimage.metrics import structural_similarity

    first, second = _pair(first, second, absolute)
    first, second = normalize_map(first), normalize_map(second)
    side = min(first.shape)
    if side < 3:
        raise UsageError(f"maps of shape {first.shape} are too small for SSIM (need 3×3)")
    window = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(first, second, data_range=1.0, win_size=window))


def _pair(first, second, absolute: bool) -> tuple[np.ndarray, np.ndarray]:
    first = np.asarray(first, dtype=np.float32)
    second = np.asarray(second, dtype=np.float32)
    if first.ndim != 2 or second.ndim != 2:
        raise UsageError(f"maps must be H×W, got shapes {first.shape} and {second.shape}")
    second = resize_map(second, *first.shape)
    if absolute:
        return np.abs(first), np.abs(second)
    return first, second


# -- randomised copies ------------------------------------------------------------------------
def weighted_layers(model) -> list:
    """A Keras model's layers that own weights, in topological order, looking inside
    nested models (a nested model's own layers, not the model as one block)."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(weighted_layers(layer))
        elif layer.weights:
            found.append(layer)
    return found


_INITIALIZER_NAMES = {
    "kernel": ("kernel_initializer", "depthwise_initializer"),
    "depthwise_kernel": ("depthwise_initializer",),
    "pointwise_kernel": ("pointwise_initializer",),
    "recurrent_kernel": ("recurrent_initializer",),
}


def _initializer_for(layer, variable):
    name = variable.name.split("/")[-1].split(":")[0]
    for attribute in _INITIALIZER_NAMES.get(name, (f"{name}_initializer",)):
        initializer = getattr(layer, attribute, None)
        if initializer is not None:
            return initializer
    return None


def _reinitialise(layer, seed: int) -> None:
    """Give ``layer`` fresh weights from its own initialisers (Adebayo et al. §3.1:
    "re-initialise ... with the original initialisation"), seeded; a weight without a
    known initialiser is drawn Glorot-uniform (matrices) or shuffled (vectors)."""
    import keras

    rng = np.random.default_rng(seed)
    for index, variable in enumerate(layer.weights):
        shape = tuple(variable.shape)
        initializer = _initializer_for(layer, variable)
        if initializer is not None:
            config = initializer.get_config()
            if "seed" in config:
                initializer = type(initializer).from_config({**config, "seed": seed + index})
            value = keras.ops.convert_to_numpy(initializer(shape, dtype=variable.dtype))
        elif len(shape) >= 2:
            value = keras.ops.convert_to_numpy(
                keras.initializers.GlorotUniform(seed=seed + index)(shape, dtype=variable.dtype)
            )
        else:
            value = rng.permutation(keras.ops.convert_to_numpy(variable))
        variable.assign(value)


def _cut_points(count: int, layers, names: list[str]) -> list[int]:
    """Indices into the top-down list of weighted layers where the cascade stops."""
    if count == 0:
        raise ModelError("the model has no layers with weights to randomise")
    if layers is None:
        layers = min(count, DEFAULT_CUTS)
    if isinstance(layers, (int, np.integer)):
        if int(layers) < 1:
            raise UsageError(f"the cascade needs at least one step, got layers={layers}")
        steps = min(int(layers), count)
        return sorted({int(round(p)) for p in np.linspace(0, count - 1, steps)})
    positions = []
    for name in layers:
        if name not in names:
            raise UsageError(
                f"no weighted layer named {name!r}; the model's weighted layers from the top "
                f"are {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
            )
        positions.append(names.index(name))
    return sorted(set(positions))


def _keras_cascade(adapter, layers, seed: int) -> Iterator[tuple[str, int, object]]:
    """Clone the adapter's Keras model once, then re-initialise the clone's weighted
    layers from the top down, yielding after each cut point. The clone is changed in
    place, so one adapter (compiled once) serves every step."""
    import keras

    from salmap.models.zoo import load_model

    model = adapter.model
    try:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    except Exception as error:  # noqa: BLE001 - Keras raises many types for unclonable models
        raise ModelError(
            f"cannot copy model {adapter.name!r} for the randomisation test ({error}); "
            "subclassed models cannot be cloned — build the model with the functional API"
        ) from None
    copy = load_model(
        clone,
        input_size=adapter.input_size,
        preprocess=adapter.preprocess,
        class_names=adapter.class_names,
        batch_size=getattr(adapter, "batch_size", 32),
    )
    top_down = weighted_layers(clone)[::-1]
    names = [layer.name for layer in top_down]
    done = 0
    for position in _cut_points(len(top_down), layers, names):
        for index in range(done, position + 1):
            _reinitialise(top_down[index], seed + 1000 * index)
        done = position + 1
        yield names[position], done, copy


def cascade_length(model, layers: int | Sequence[str] | None = None) -> int | None:
    """How many steps :func:`cascading_randomization` takes for ``model`` (None when the
    adapter runs its own cascade and does not say)."""
    from salmap.models.zoo import load_model

    adapter = load_model(model)
    if getattr(adapter, "framework", None) == "keras" and hasattr(adapter, "model"):
        names = [layer.name for layer in weighted_layers(adapter.model)[::-1]]
        return len(_cut_points(len(names), layers, names))
    length = getattr(adapter, "randomization_cascade_length", None)
    return length(layers) if length is not None else None


def supports_cascade(model) -> bool:
    """Whether :func:`cascading_randomization` can randomise a copy of ``model``."""
    from salmap.models.zoo import load_model

    adapter = load_model(model)
    return hasattr(adapter, "randomization_cascade") or (
        getattr(adapter, "framework", None) == "keras" and hasattr(adapter, "model")
    )


def _cascade(adapter, layers, seed: int):
    own = getattr(adapter, "randomization_cascade", None)
    if own is not None:
        return own(layers, seed)
    if supports_cascade(adapter):
        return _keras_cascade(adapter, layers, seed)
    raise ModelError(
        f"the randomisation test needs a Keras model (or an adapter with a "
        f"randomization_cascade method); {type(adapter).__name__} has neither"
    )


# -- the test ------------------------------------------------------------------------------------
def cascading_randomization(
    model,
    image,
    methods: str | Sequence[str] = "vanilla",
    target: int | str | None = None,
    *,
    layers: int | Sequence[str] | None = None,
    params: Mapping[str, dict] | None = None,
    absolute: bool = True,
    seed: int = 0,
    progress=None,
) -> CascadeResult:
    """Cascading model-parameter randomisation (Adebayo et al. 2018, §3.1).

    Parameters
    ----------
    model : adapter, keras.Model or name
        Anything :func:`salmap.load_model` accepts; it is not modified.
    image : path or H×W×3 float32 in [0, 1]
    methods : str or sequence of str
        Method names (``salmap.methods.METHODS``); every method is explained on the
        same randomised copy at each step, so the model is copied once.
    target : int or str, optional
        The class to explain at every step; default the original model's top-1.
    layers : int or sequence of str, optional
        The cut points: an int spreads that many evenly over the weighted layers (from
        the top layer alone to all of them); names stop exactly after those layers.
        Default: every weighted layer for models with at most 10, else 10 cuts.
    params : dict of method -> dict, optional
        Method parameters (e.g. ``{"integrated-gradients": {"steps": 16}}``).
    absolute : bool
        Compare map magnitudes (default, as the paper's main figures) or signed maps.
    seed : int
        Seed of the re-initialisation.
    progress : callable, optional
        Called as ``progress(step, steps, label)`` after each step.

    Returns
    -------
    CascadeResult

    References
    ----------
    J. Adebayo, J. Gilmer, M. Muelly, I. Goodfellow, M. Hardt, B. Kim. Sanity Checks for
    Saliency Maps. NeurIPS 2018, §3.1 and Fig. 2.
    """
    from salmap.api import explain
    from salmap.io.image import load_image
    from salmap.models.zoo import load_model

    adapter = load_model(model)
    image = load_image(image)
    methods = [methods] if isinstance(methods, str) else list(methods)
    if not methods:
        raise UsageError("no methods given for the randomisation test")
    params = {name: dict((params or {}).get(name, {})) for name in methods}

    def explain_all(some_adapter, klass):
        return {
            name: explain(image, some_adapter, method=name, target=klass, **params[name])
            for name in methods
        }

    originals = explain_all(adapter, target)
    klass = int(next(iter(originals.values())).target)
    maps = {name: [result.map] for name, result in originals.items()}
    labels, randomised = ["original"], [0]
    total = cascade_length(adapter, layers)
    # The cascade is a generator: each step randomises a few more layers of the one copy,
    # and its maps are taken before the next step.
    for step, (label, count, copy) in enumerate(_cascade(adapter, layers, seed), start=1):
        for name, result in explain_all(copy, klass).items():
            maps[name].append(result.map)
        labels.append(label)
        randomised.append(count)
        if progress is not None:
            progress(step, total, label)
    spearman = {
        name: np.array([rank_correlation(found[0], m, absolute=absolute) for m in found])
        for name, found in maps.items()
    }
    ssim = {
        name: np.array([map_ssim(found[0], m, absolute=absolute) for m in found])
        for name, found in maps.items()
    }
    return CascadeResult(
        layers=labels,
        randomised=randomised,
        maps=maps,
        spearman=spearman,
        ssim=ssim,
        target=klass,
        model=getattr(adapter, "name", None),
        absolute=absolute,
        params=params,
    )

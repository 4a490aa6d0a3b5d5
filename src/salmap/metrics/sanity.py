"""Sanity checks for saliency maps (Adebayo et al. 2018): does the map depend on the model?

:func:`cascading_randomization` re-initialises a *copy* of the model's layers from the
top (logits) down, one cut point after another, and explains the same image with the
same target after each cut. A method that explains the model gives maps that drift
away from the original as more of the network becomes random; a method that only
reconstructs the image (an edge detector) keeps giving the same map. The distance
is measured by :func:`rank_correlation` (Spearman, of map magnitudes by default) and
:func:`map_ssim` (structural similarity of min-max normalised maps).

The user's model is never touched: the adapter's ``randomization_cascade`` randomises
a copy (see :mod:`salmap.models.base`), cumulative from the top layer down.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from salmap.errors import UsageError
from salmap.maps import normalize_map, resize_map
from salmap.models.base import cut_points, require

__all__ = [
    "CascadeResult",
    "cascading_randomization",
    "rank_correlation",
    "map_ssim",
    "cascade_length",
    "supports_cascade",
]


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


# -- the cascade, through the adapter protocol ------------------------------------------------
def cascade_length(model, layers: int | Sequence[str] | None = None) -> int:
    """How many steps :func:`cascading_randomization` takes for ``model``."""
    from salmap.models.zoo import load_model

    names = load_model(model).cascade_layers()
    return len(cut_points(len(names), layers, names))


def supports_cascade(model) -> bool:
    """Whether :func:`cascading_randomization` can randomise a copy of ``model``."""
    from salmap.models.zoo import load_model

    return "randomize" in load_model(model).capabilities


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
    require(adapter, "randomize", "the randomisation test")
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
    cascade = adapter.randomization_cascade(layers, seed)
    for step, (label, count, copy) in enumerate(cascade, start=1):
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
        model=adapter.name,
        absolute=absolute,
        params=params,
    )

"""Evaluate saliency methods on images: every method × every metric, with baselines.

:func:`evaluate` explains each image with each method (and with the random and
centre baseline maps), runs the faithfulness metrics on every map, the pointing game
on a composite made from each image, and the randomisation cascade on the first
image, and gathers the numbers, curves and maps into an :class:`Evaluation` that
:func:`salmap.report.write_report` turns into HTML, JSON and CSV.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from salmap.errors import ModelError, UsageError
from salmap.maps import SaliencyMap, resize_map
from salmap.metrics import faithfulness as faith
from salmap.metrics.sanity import (
    CascadeResult,
    cascade_length,
    cascading_randomization,
    supports_cascade,
)

__all__ = [
    "evaluate",
    "Evaluation",
    "Column",
    "COLUMNS",
    "METRICS",
    "METRIC_FUNCTIONS",
    "DEFAULT_METRICS",
    "BASELINES",
    "confidence_interval",
]

#: Metric groups :func:`evaluate` knows, in report order.
METRICS = ("deletion", "insertion", "road", "mufidelity", "pointing", "sanity")
DEFAULT_METRICS = METRICS
#: Baseline maps evaluated beside the methods.
BASELINES = ("random", "centre")


@dataclass(frozen=True)
class Column:
    """One number of the results table."""

    key: str
    metric: str
    title: str
    higher_is_better: bool
    description: str


COLUMNS = (
    Column(
        "deletion",
        "deletion",
        "Deletion AUC",
        False,
        "area under the probability curve "
        "as the most salient pixels are blacked out first (Petsiuk et al. 2018)",
    ),
    Column(
        "insertion",
        "insertion",
        "Insertion AUC",
        True,
        "area under the probability "
        "curve as the most salient pixels are put back first onto a blurred copy",
    ),
    Column(
        "road_morf",
        "road",
        "ROAD MoRF",
        False,
        "mean probability with the 10–90 % most "
        "relevant pixels imputed (noisy linear imputation, Rong et al. 2022)",
    ),
    Column(
        "road_lerf",
        "road",
        "ROAD LeRF",
        True,
        "mean probability with the 10–90 % least relevant pixels imputed",
    ),
    Column(
        "road",
        "road",
        "ROAD (LeRF−MoRF)/2",
        True,
        "ROAD's two curves together: 0 means no better than the reversed map",
    ),
    Column(
        "mufidelity",
        "mufidelity",
        "MuFidelity",
        True,
        "correlation of grid-cell "
        "attribution sums with the score drop when the cells are removed (Bhatt et al. 2020)",
    ),
    Column(
        "pointing_hit",
        "pointing",
        "Pointing hit",
        True,
        "the map's maximum lies within "
        "15 px of the pasted photo's box on a composite (Zhang et al. 2016)",
    ),
    Column(
        "pointing_energy",
        "pointing",
        "Pointing energy",
        True,
        "share of the map's positive mass inside the box (Wang et al. 2020)",
    ),
    Column(
        "sanity_spearman",
        "sanity",
        "Sanity ρ",
        False,
        "mean Spearman rank correlation of "
        "the maps of the randomisation cascade with the original map (Adebayo et al. 2018); "
        "high means the map ignores the model",
    ),
)


@dataclass
class Evaluation:
    """Everything :func:`evaluate` found.

    Attributes
    ----------
    model : str
    images : list of str
        Image names (paths or sample names), in order.
    methods : list of str
        Methods then baselines, in table order.
    baselines : list of str
    metrics : list of str
        Metric groups that were run.
    rows : list of dict
        One per image × method: ``image``, ``method``, ``baseline``, ``target``,
        ``label``, ``probability``, ``seconds`` and one value per column key.
    curves : dict
        ``(image, method) -> {"deletion": PerturbationCurve, ...}``.
    maps : dict
        ``(image, method) -> SaliencyMap``.
    pictures : dict
        ``image -> H×W×3 array``.
    pointing : dict
        ``image -> {"composite": array, "box": tuple, "maps": {method: H×W array}}``.
    sanity : CascadeResult or None
        The cascade on the first image, for the methods (not the baselines).
    settings : dict
        The parameters every metric ran with.
    seconds : float
        Wall time of the whole evaluation.
    """

    model: str
    images: list[str]
    methods: list[str]
    baselines: list[str]
    metrics: list[str]
    rows: list[dict] = field(default_factory=list)
    curves: dict = field(default_factory=dict)
    maps: dict = field(default_factory=dict)
    pictures: dict = field(default_factory=dict)
    pointing: dict = field(default_factory=dict)
    sanity: CascadeResult | None = None
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def columns(self) -> list[Column]:
        """The table's columns for the metrics that ran."""
        return [column for column in COLUMNS if column.metric in self.metrics]

    def value(self, image: str, method: str, key: str) -> float:
        for row in self.rows:
            if row["image"] == image and row["method"] == method:
                return row.get(key, float("nan"))
        raise KeyError((image, method))

    def summary(self) -> list[dict]:
        """Per method: the mean of each column over the images, its standard deviation
        (``_std``) and the half-width of its 95 % confidence interval (``_ci``, Student's
        t), and the mean seconds per image of the method itself."""
        table = []
        for method in self.methods:
            rows = [row for row in self.rows if row["method"] == method]
            entry = {
                "method": method,
                "baseline": method in self.baselines,
                "images": len(rows),
                "seconds": _mean([row["seconds"] for row in rows]),
            }
            for column in self.columns:
                values = [row.get(column.key, float("nan")) for row in rows]
                entry[column.key] = _mean(values)
                entry[f"{column.key}_std"] = _std(values)
                entry[f"{column.key}_ci"] = confidence_interval(values)
            table.append(entry)
        return table

    def to_dict(self) -> dict:
        """JSON-ready: settings, summary, rows, curves and the cascade (no pictures)."""
        return {
            "model": self.model,
            "images": list(self.images),
            "methods": list(self.methods),
            "baselines": list(self.baselines),
            "metrics": list(self.metrics),
            "settings": _jsonable(self.settings),
            "seconds": round(self.seconds, 3),
            "columns": [
                {
                    "key": c.key,
                    "title": c.title,
                    "higher_is_better": c.higher_is_better,
                    "description": c.description,
                }
                for c in self.columns
            ],
            "summary": [_jsonable(entry) for entry in self.summary()],
            "rows": [_jsonable(row) for row in self.rows],
            "curves": [
                {"image": image, "method": method, **{k: c.to_dict() for k, c in found.items()}}
                for (image, method), found in self.curves.items()
            ],
            "pointing_boxes": {image: list(found["box"]) for image, found in self.pointing.items()},
            "sanity": None if self.sanity is None else self.sanity.to_dict(),
        }


def _mean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _std(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.std()) if values.size > 1 else float("nan")


def confidence_interval(values, level: float = 0.95) -> float:
    """Half-width of the ``level`` confidence interval of the mean of ``values`` (NaNs
    left out): Student's t quantile × standard error; NaN below two values.

    References
    ----------
    W. S. Gosset ("Student"). The probable error of a mean. Biometrika 6(1), 1908.
    """
    from scipy.stats import t

    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size < 2:
        return float("nan")
    error = values.std(ddof=1) / np.sqrt(values.size)
    return float(t.ppf(0.5 + level / 2, values.size - 1) * error)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if not np.isfinite(value) else value
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if value is None or isinstance(value, str):
        return value
    return repr(value)


def _names(images) -> list[str]:
    """Unique display names: file names of paths, ``image N`` for arrays."""
    names = []
    for index, image in enumerate(images):
        if isinstance(image, (str, Path)):
            name = Path(str(image)).name
        else:
            name = f"image {index + 1}"
        while name in names:
            name = f"{name} ({index + 1})"
        names.append(name)
    return names


def _baseline_map(name: str, shape, seed: int) -> np.ndarray:
    if name == "random":
        return faith.random_map(shape, seed=seed)
    if name == "centre":
        return faith.centre_map(shape)
    raise UsageError(f"unknown baseline {name!r}; use {', '.join(BASELINES)}")


def evaluate(
    images: Sequence,
    model=None,
    *,
    names: Sequence[str] | None = None,
    methods: Sequence[str] = ("vanilla",),
    metrics: Sequence[str] = DEFAULT_METRICS,
    baselines: Sequence[str] = BASELINES,
    target: int | str | None = None,
    method_params: Mapping[str, dict] | None = None,
    steps: int = 224,
    deletion_reference="black",
    insertion_reference="blur",
    road_fractions: Sequence[float] = faith.ROAD_FRACTIONS,
    mufidelity_samples: int = 200,
    mufidelity_grid: int | None = 9,
    pointing_background: str = "neutral",
    pointing_size: tuple[int, int] = (224, 224),
    cascade_layers: int | Sequence[str] | None = None,
    resolution: str = "model",
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> Evaluation:
    """Explain each image with each method and measure how faithful each map is.

    Parameters
    ----------
    images : sequence of paths or H×W×3 arrays in [0, 1]
    model : adapter, keras.Model or name, optional
        Anything :func:`salmap.load_model` accepts (default the embedded model).
    names : sequence of str, optional
        What the report calls each image; default the file names (``image N`` for
        arrays).
    methods : sequence of str
        Method names from ``salmap.methods.METHODS``.
    metrics : sequence of str
        Any of ``deletion``, ``insertion``, ``road``, ``mufidelity``, ``pointing``,
        ``sanity`` (default: all).
    baselines : sequence of str
        Baseline maps evaluated like methods (default ``random`` and ``centre``).
    target : int or str, optional
        Class explained in every image; default each image's top-1 class.
    method_params : dict of method -> dict, optional
        Parameters for the methods (e.g. ``{"integrated-gradients": {"steps": 32}}``).
    steps : int
        Deletion/insertion steps (224, as RISE on 224×224 images).
    deletion_reference, insertion_reference :
        What removed pixels become (see :func:`salmap.metrics.reference_image`):
        black and RISE's blur by default.
    road_fractions : sequence of float
        ROAD's removal fractions (10 %, …, 90 %).
    mufidelity_samples, mufidelity_grid :
        MuFidelity's number of random subsets (200) and grid (9×9 cells).
    pointing_background : {"neutral", "cluttered"}
        Canvas of the pointing-game composite.
    pointing_size : (height, width)
        Size of the composite.
    cascade_layers : int or sequence of str, optional
        Cut points of the randomisation cascade (see
        :func:`salmap.metrics.cascading_randomization`).
    resolution : {"model", "image"}
        Where the perturbation metrics (deletion, insertion, ROAD, MuFidelity) perturb
        pixels: at the model's input size (default; image and map are resized to it
        first — the adapter would resize every perturbed image to it anyway, and RISE
        and ROAD work at the network's 224×224) or at each image's own size (slower:
        ROAD's imputation grows faster than linearly with the pixel count).
    seed : int
        Seed of the random baseline, ROAD's noise, MuFidelity's subsets, the composite's
        placement and the re-initialisation.
    progress : callable, optional
        ``progress(done, total, text)`` after each image × method (and cascade step).

    Returns
    -------
    Evaluation
    """
    from salmap.io.image import load_image
    from salmap.models.zoo import load_model

    started = time.perf_counter()
    methods, baselines, metrics = list(methods), list(baselines), list(metrics)
    _check_names(methods, baselines, metrics, resolution)
    if not len(images):
        raise UsageError("no images given")
    params = {name: dict((method_params or {}).get(name, {})) for name in methods}
    pictures = [load_image(image) for image in images]
    if names is not None and len(names) != len(images):
        raise UsageError(f"{len(names)} names given for {len(images)} images")
    names = _names(images if names is None else names)
    adapter = load_model(model)
    result = Evaluation(
        model=getattr(adapter, "name", str(model)),
        images=names,
        methods=methods + baselines,
        baselines=baselines,
        metrics=metrics,
        pictures=dict(zip(names, pictures, strict=True)),
        settings={
            "steps": steps,
            "deletion_reference": deletion_reference,
            "insertion_reference": insertion_reference,
            "road_fractions": list(road_fractions),
            "road_noise": 0.01,
            "mufidelity_samples": mufidelity_samples,
            "mufidelity_grid": mufidelity_grid,
            "mufidelity_subset_fraction": 0.2,
            "pointing_background": pointing_background,
            "pointing_size": list(pointing_size),
            "pointing_tolerance": 15,
            "cascade_layers": cascade_layers,
            "score": "probability",
            "resolution": resolution,
            "seed": seed,
            "method_params": params,
        },
    )
    run_sanity = "sanity" in metrics and bool(methods)
    if run_sanity and not supports_cascade(adapter):
        # Fail before hours of other metrics, not after.
        raise ModelError(
            f"the sanity check needs a Keras model to randomise; {result.model} is not one "
            "(leave 'sanity' out of the metrics)"
        )
    cascade_steps = (cascade_length(adapter, cascade_layers) or 0) if run_sanity else 0
    tick = _ticker(len(pictures) * len(result.methods) + cascade_steps, progress)
    _measure_all(result, adapter, pictures, target, params, tick)
    if run_sanity:
        _sanity(result, adapter, pictures[0], params, tick)
    result.seconds = time.perf_counter() - started
    return result


def _check_names(methods, baselines, metrics, resolution) -> None:
    from salmap.methods import METHODS

    for name in methods:
        if name not in METHODS:
            raise UsageError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    for name in baselines:
        if name not in BASELINES:
            raise UsageError(f"unknown baseline {name!r}; use {', '.join(BASELINES)}")
    for name in metrics:
        if name not in METRICS:
            raise UsageError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    if resolution not in ("model", "image"):
        raise UsageError(f"unknown resolution {resolution!r}; use 'model' or 'image'")
    if not methods and not baselines:
        raise UsageError("nothing to evaluate: give at least one method")


def _ticker(total: int, progress) -> Callable[[str], None]:
    done = 0

    def tick(text: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, text)

    return tick


# -- maps, in batches through the dataset pipeline ------------------------------------
def _probabilities(adapter, pictures) -> list[np.ndarray]:
    """Each picture's class probabilities, equal-sized pictures in one batch."""
    found: list[np.ndarray | None] = [None] * len(pictures)
    groups: dict[tuple, list[int]] = {}
    for index, picture in enumerate(pictures):
        groups.setdefault(picture.shape, []).append(index)
    for indices in groups.values():
        logits = np.asarray(adapter.predict(np.stack([pictures[i] for i in indices])), np.float64)
        exps = np.exp(logits - logits.max(axis=1, keepdims=True))
        for i, row in zip(indices, exps / exps.sum(axis=1, keepdims=True), strict=True):
            found[i] = row
    return found


def _explain_all(adapter, pictures, targets, method: str, params: dict) -> list[SaliencyMap]:
    """One method's maps of every picture for the given targets: batches of the
    adapter's size through :func:`salmap.batch.explain_batch`, the per-batch function
    of ``salmap batch``, so a method always sees whole batches."""
    from salmap.batch import Input, Sample, Settings, explain_batch

    size = int(getattr(adapter, "batch_size", 32))
    found = []
    for start in range(0, len(pictures), size):
        chunk = range(start, min(start + size, len(pictures)))
        samples = [
            Sample(Input(f"image {i}", None, (int(targets[i]),)), pictures[i], digest=str(i))
            for i in chunk
        ]
        settings = Settings(methods=(method,), params={method: params}, resolution="image")
        for item in explain_batch(adapter, samples, settings):
            if item.row["status"] != "ok":
                raise UsageError(item.row["error"])
            row = item.row
            found.append(
                SaliencyMap(
                    map=item.map,
                    image=item.image,
                    method=method,
                    params=dict(params),
                    target=row["target"],
                    label=row["label"],
                    score=row["score"],
                    model=getattr(adapter, "name", None),
                    seconds=row["seconds"],
                )
            )
    return found


def _maps(result, adapter, pictures, targets, probabilities, params) -> dict:
    """``(image index, method) -> SaliencyMap`` for the methods and the baselines."""
    seed = result.settings["seed"]
    maps = {}
    for method in result.methods:
        if method in result.baselines:
            for index, picture in enumerate(pictures):
                klass = int(targets[index])
                maps[(index, method)] = SaliencyMap(
                    map=_baseline_map(method, picture.shape[:2], seed),
                    image=picture,
                    method=method,
                    target=klass,
                    label=_label(adapter, klass),
                    score=float(probabilities[index][klass]),
                    model=result.model,
                )
        else:
            found = _explain_all(adapter, pictures, targets, method, params[method])
            maps.update({(index, method): m for index, m in enumerate(found)})
    return maps


def _label(adapter, klass: int) -> str:
    return adapter.class_names[klass] if adapter.class_names else f"class {klass}"


def _targets(adapter, target, probabilities) -> list[int]:
    if target is None:
        return [int(np.argmax(p)) for p in probabilities]
    from salmap.models.classes import resolve_target

    klass = resolve_target(
        target, adapter.num_classes, adapter.class_names, getattr(adapter, "synonyms", None)
    )
    return [klass] * len(probabilities)


def _pointed(result, adapter, pictures, targets, params) -> dict:
    """The pointing game's composites, their boxes, and every method's map of them."""
    settings = result.settings
    for name, picture in zip(result.images, pictures, strict=True):
        composite, box = faith.make_composite(
            picture,
            size=tuple(settings["pointing_size"]),
            background=settings["pointing_background"],
            seed=settings["seed"],
        )
        result.pointing[name] = {"composite": composite, "box": box, "maps": {}}
    composites = [result.pointing[name]["composite"] for name in result.images]
    for method in result.methods:
        if method in result.baselines:
            maps = [_baseline_map(method, c.shape[:2], settings["seed"]) for c in composites]
        else:
            maps = [
                m.map for m in _explain_all(adapter, composites, targets, method, params[method])
            ]
        for name, pointed in zip(result.images, maps, strict=True):
            result.pointing[name]["maps"][method] = pointed


def _measure_all(result, adapter, pictures, target, params, tick) -> None:
    """Every map of every image through the table of metrics; rows image by image."""
    probabilities = _probabilities(adapter, pictures)
    targets = _targets(adapter, target, probabilities)
    maps = _maps(result, adapter, pictures, targets, probabilities, params)
    if "pointing" in result.metrics:
        _pointed(result, adapter, pictures, targets, params)
    per_map = [METRIC_FUNCTIONS[name] for name in result.metrics if name in METRIC_FUNCTIONS]
    for index, (name, picture) in enumerate(zip(result.images, pictures, strict=True)):
        for method in result.methods:
            saliency = maps[(index, method)]
            result.maps[(name, method)] = saliency
            klass = int(targets[index])
            row = {
                "image": name,
                "method": method,
                "baseline": method in result.baselines,
                "target": klass,
                "label": _label(adapter, klass),
                "probability": float(probabilities[index][klass]),
                "seconds": float(saliency.seconds),
            }
            case = _case(result, adapter, name, method, picture, saliency.map, klass)
            for measure in per_map:
                row.update(measure(case))
            if case.curves:
                result.curves[(name, method)] = case.curves
            if "sanity" in result.metrics and method in result.baselines and index == 0:
                # A baseline map does not depend on the model at all: every map of the
                # cascade equals the original one.
                row["sanity_spearman"] = 1.0
            result.rows.append(row)
            tick(f"{name} · {method}")


def _sanity(result, adapter, picture, params, tick) -> None:
    """The randomisation cascade on the first image: the methods' rows of that image."""
    methods = [m for m in result.methods if m not in result.baselines]
    first = result.images[0]
    result.sanity = cascading_randomization(
        adapter,
        picture,
        methods,
        target=result.maps[(first, methods[0])].target,
        layers=result.settings["cascade_layers"],
        params=params,
        seed=result.settings["seed"],
        progress=lambda step, steps, label: tick(f"sanity · {label}"),
    )
    for method in methods:
        rho = result.sanity.spearman[method][1:]
        for row in result.rows:
            # The cascade runs on the first image only: the other rows stay empty.
            if row["method"] == method and row["image"] == first:
                # All-NaN when every randomised map is constant (a dead model's CAM).
                finite = rho[np.isfinite(rho)]
                row["sanity_spearman"] = float(finite.mean()) if finite.size else float("nan")
    result.settings["sanity_image"] = first


def _resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    shrinking = height < image.shape[0] or width < image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.clip(cv2.resize(image, (width, height), interpolation=interpolation), 0, 1)


# -- the table of metrics -------------------------------------------------------------
@dataclass
class _Case:
    """One map to measure: the image and map as the metrics see them (at the model's
    input size by default), its class, the settings, and curves to keep."""

    adapter: object
    image: np.ndarray
    saliency: np.ndarray
    target: int
    settings: dict
    pointing: dict | None
    method: str
    curves: dict = field(default_factory=dict)


def _case(result, adapter, name, method, picture, saliency, klass) -> _Case:
    if result.settings["resolution"] == "model":
        height, width = adapter.input_size
        picture = _resize_image(picture, height, width)
        saliency = resize_map(saliency, height, width)
    return _Case(
        adapter, picture, saliency, klass, result.settings, result.pointing.get(name), method
    )


def _deletion(case: _Case) -> dict:
    settings = case.settings
    curve = faith.deletion(
        case.adapter,
        case.image,
        case.saliency,
        case.target,
        steps=settings["steps"],
        reference=settings["deletion_reference"],
    )
    case.curves["deletion"] = curve
    return {"deletion": curve.value}


def _insertion(case: _Case) -> dict:
    settings = case.settings
    curve = faith.insertion(
        case.adapter,
        case.image,
        case.saliency,
        case.target,
        steps=settings["steps"],
        reference=settings["insertion_reference"],
    )
    case.curves["insertion"] = curve
    return {"insertion": curve.value}


def _road(case: _Case) -> dict:
    settings = case.settings
    found = faith.road(
        case.adapter,
        case.image,
        case.saliency,
        case.target,
        fractions=settings["road_fractions"],
        noise=settings["road_noise"],
        seed=settings["seed"],
    )
    case.curves["road-morf"], case.curves["road-lerf"] = found.morf, found.lerf
    return {"road_morf": found.morf.value, "road_lerf": found.lerf.value, "road": found.combined}


def _mufidelity(case: _Case) -> dict:
    settings = case.settings
    value = faith.mufidelity(
        case.adapter,
        case.image,
        case.saliency,
        case.target,
        grid_size=settings["mufidelity_grid"],
        samples=settings["mufidelity_samples"],
        seed=settings["seed"],
    )
    return {"mufidelity": value}


def _pointing(case: _Case) -> dict:
    pointed, box = case.pointing["maps"][case.method], case.pointing["box"]
    return {
        "pointing_hit": float(faith.pointing_game(pointed, box)),
        "pointing_energy": faith.energy_pointing_game(pointed, box),
    }


#: Metric group -> a function of one map (:class:`_Case`) returning its column values.
#: ``sanity`` is not here: it runs once, on the first image (see :func:`_sanity`).
METRIC_FUNCTIONS: dict[str, Callable[[_Case], dict]] = {
    "deletion": _deletion,
    "insertion": _insertion,
    "road": _road,
    "mufidelity": _mufidelity,
    "pointing": _pointing,
}

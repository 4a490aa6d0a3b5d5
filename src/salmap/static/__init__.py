"""Static (bottom-up) saliency: what catches the eye in a still image, no model needed.

Each model is a function on arrays, ``f(image H×W×3 float32 in [0, 1]) -> H×W
float32`` at the image's resolution, in its own module. :data:`STATIC_METHODS` names
them for :func:`static_saliency` and the ``salmap static`` command.

>>> import salmap
>>> result = salmap.static_saliency("chelsea", method="itti")
>>> result.extras["scan_path"][:2]          # first two attended (x, y) locations
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from salmap.errors import UsageError
from salmap.io.image import load_image
from salmap.maps import SaliencyMap
from salmap.static.bms import boolean_map_saliency, surrounded_regions
from salmap.static.fine_grained import fine_grained
from salmap.static.frequency_tuned import frequency_tuned
from salmap.static.gbvs import gbvs, gbvs_activation, gbvs_normalization, markov_equilibrium
from salmap.static.itti import (
    IttiKochStages,
    iterative_normalization,
    itti_koch,
    itti_koch_stages,
    map_normalization,
    winner_take_all,
)
from salmap.static.spectral_residual import spectral_residual
from salmap.static.stimuli import (
    BACKGROUNDS,
    SEARCH_KINDS,
    SearchArray,
    attended_item,
    on_target,
    random_search_array,
    search_array,
)

__all__ = [
    "StaticMethod",
    "STATIC_METHODS",
    "static_saliency",
    "itti_koch",
    "itti_koch_stages",
    "IttiKochStages",
    "map_normalization",
    "iterative_normalization",
    "winner_take_all",
    "spectral_residual",
    "fine_grained",
    "frequency_tuned",
    "gbvs",
    "gbvs_activation",
    "gbvs_normalization",
    "markov_equilibrium",
    "boolean_map_saliency",
    "surrounded_regions",
    "search_array",
    "SearchArray",
    "attended_item",
    "on_target",
    "random_search_array",
    "SEARCH_KINDS",
    "BACKGROUNDS",
]


@dataclass(frozen=True)
class StaticMethod:
    """A registered bottom-up saliency model."""

    name: str
    function: Callable[..., np.ndarray]
    summary: str
    reference: str

    def parameters(self) -> dict[str, object]:
        """The model's keyword parameters and their defaults."""
        signature = inspect.signature(self.function)
        return {
            name: parameter.default
            for name, parameter in signature.parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }


STATIC_METHODS: dict[str, StaticMethod] = {
    method.name: method
    for method in (
        StaticMethod(
            "itti",
            itti_koch_stages,
            "intensity, colour and orientation centre-surround maps, N(·), winner-take-all",
            "Itti, Koch & Niebur, IEEE TPAMI 1998",
        ),
        StaticMethod(
            "spectral-residual",
            spectral_residual,
            "what the log spectrum holds beyond its smooth trend",
            "Hou & Zhang, CVPR 2007",
        ),
        StaticMethod(
            "fine-grained",
            fine_grained,
            "full-resolution on/off centre-surround intensity contrast",
            "Montabone & Soto, Image and Vision Computing 2010",
        ),
        StaticMethod(
            "frequency-tuned",
            frequency_tuned,
            "distance of each blurred Lab pixel from the image's mean colour",
            "Achanta et al., CVPR 2009",
        ),
        StaticMethod(
            "gbvs",
            gbvs,
            "Markov-chain activation and normalisation of feature maps",
            "Harel, Koch & Perona, NIPS 2006",
        ),
        StaticMethod(
            "bms",
            boolean_map_saliency,
            "how often a pixel lies in a region surrounded in thresholded colour maps",
            "Zhang & Sclaroff, ICCV 2013",
        ),
    )
}

_ALIASES = {"itti-koch": "itti", "sr": "spectral-residual", "ft": "frequency-tuned"}


def _resolve(method: str) -> StaticMethod:
    name = _ALIASES.get(method, method)
    if name not in STATIC_METHODS:
        raise UsageError(
            f"unknown static saliency method {method!r}; use one of {', '.join(STATIC_METHODS)}"
        )
    return STATIC_METHODS[name]


def static_saliency(image, method: str = "itti", **params) -> SaliencyMap:
    """Bottom-up saliency map of one image.

    Parameters
    ----------
    image : path, array or bundled photo name
        Anything :func:`salmap.load_image` reads (``"chelsea"``, ``"photo.jpg"``, an
        H×W×3 array in [0, 1]).
    method : str
        A name from :data:`STATIC_METHODS`: ``itti``, ``spectral-residual``,
        ``fine-grained``, ``frequency-tuned``, ``gbvs`` or ``bms``.
    **params
        The model's keyword parameters (defaults are the papers'; see each
        function's docstring). For ``itti``, ``fixations`` sets how many attended
        locations the scan path has.

    Returns
    -------
    SaliencyMap
        ``map`` is H×W float32 at the image's resolution. For ``itti``, ``extras``
        holds ``feature_maps`` (the centre–surround maps), ``conspicuity``
        (intensity, colour, orientation at scale 4), ``coarse_saliency``,
        ``scan_path`` (K×2 (x, y) pixels), ``scan_values`` and ``foa_radius``.
    """
    chosen = _resolve(method)
    accepted = chosen.parameters()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UsageError(
            f"{chosen.name} has no parameter {', '.join(unknown)}; "
            f"it takes {', '.join(accepted) or 'none'}"
        )
    pixels = load_image(image)
    start = time.perf_counter()
    output = chosen.function(pixels, **params)
    seconds = time.perf_counter() - start
    used = {**accepted, **params}
    extras: dict = {"reference": chosen.reference}
    if isinstance(output, IttiKochStages):
        saliency = output.saliency
        used = {**used, **output.params}
        extras.update(
            feature_maps=output.feature_maps,
            conspicuity=output.conspicuity,
            coarse_saliency=output.coarse_saliency,
            scan_path=output.scan_path,
            scan_values=output.scan_values,
            foa_radius=output.foa_radius,
        )
    else:
        saliency = output
    return SaliencyMap(
        map=np.asarray(saliency, dtype=np.float32),
        image=pixels,
        method=chosen.name,
        params=used,
        seconds=seconds,
        extras=extras,
    )

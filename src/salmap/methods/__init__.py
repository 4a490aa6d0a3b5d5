"""Model saliency methods: each a short function over the model adapter.

A method takes ``(adapter, images N×H×W×3 in [0, 1], targets N, *, score, **params)``
and returns either a signed per-channel attribution (N×H×W×3, reduced to a map by
the channel reduction) or maps (N×H×W). Batching, chunking and seeding live in
:mod:`salmap.methods.engine`. :data:`METHODS` lists them for the API and the CLI.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from salmap.methods.cam import (
    eigen_cam,
    grad_cam,
    grad_cam_plus_plus,
    guided_grad_cam,
    hires_cam,
    layer_cam,
    score_cam,
)
from salmap.methods.gradients import (
    deconvnet,
    deconvnet_plan,
    gradient_x_input,
    gradient_x_input_plan,
    guided_backprop,
    guided_backprop_plan,
    vanilla_gradients,
    vanilla_plan,
)
from salmap.methods.noise import smoothgrad, squaregrad, vargrad
from salmap.methods.path import (
    blur_integrated_gradients,
    blur_integrated_gradients_plan,
    completeness_error,
    guided_integrated_gradients,
    integrated_gradients,
    integrated_gradients_plan,
)
from salmap.methods.perturbation import occlusion, rise
from salmap.methods.xrai import xrai

__all__ = [
    "Method",
    "METHODS",
    "ALIASES",
    "method_defaults",
    "method_parameters",
    "parameter_defaults",
    "vanilla_gradients",
    "gradient_x_input",
    "guided_backprop",
    "deconvnet",
    "smoothgrad",
    "squaregrad",
    "vargrad",
    "integrated_gradients",
    "blur_integrated_gradients",
    "guided_integrated_gradients",
    "completeness_error",
    "xrai",
    "grad_cam",
    "grad_cam_plus_plus",
    "layer_cam",
    "hires_cam",
    "eigen_cam",
    "score_cam",
    "guided_grad_cam",
    "occlusion",
    "rise",
]


@dataclass(frozen=True)
class Method:
    name: str
    function: Callable
    summary: str
    #: "attribution" (N×H×W×3, reduced over channels) or "map" (N×H×W)
    output: str = "attribution"
    #: whether maps carry a meaningful sign (drawn diverging on request)
    signed: bool = True
    defaults: dict = field(default_factory=dict)
    #: for gradient methods that are a fixed sum of gradients: ``plan(**params)``
    #: returns the engine's points and backward rule (the noise wrappers use it)
    plan: Callable | None = None
    family: str = "gradients"
    #: whether the function fills an ``info`` dict with per-image diagnostics
    #: (evaluations, completeness error, convergence), copied into the result's extras
    reports: bool = False


def method_defaults(function: Callable) -> dict:
    """A method's keyword parameters and their defaults, read from its signature."""
    defaults = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if name == "info":  # an output, not a parameter
            continue
        if parameter.kind is parameter.KEYWORD_ONLY and parameter.default is not parameter.empty:
            defaults[name] = parameter.default
    return defaults


def parameter_defaults(name: str, params: dict) -> dict:
    """The parameters method ``name`` takes with ``params``, with their defaults (a noise
    wrapper also takes its base method's)."""
    spec = METHODS[ALIASES.get(name, name)]
    defaults = dict(spec.defaults)
    if spec.family == "noise":
        base = str(params.get("base", "vanilla"))
        base = ALIASES.get(base, base)
        defaults = {**(METHODS[base].defaults if base in METHODS else {}), **defaults}
    return defaults


def method_parameters(name: str, params: dict) -> set[str]:
    """The parameter names method ``name`` takes with ``params`` (a noise wrapper also
    takes its base method's)."""
    return set(parameter_defaults(name, params))


def _method(name, function, summary, family, **kwargs) -> Method:
    defaults = kwargs.pop("defaults", None) or method_defaults(function)
    return Method(name, function, summary, family=family, defaults=defaults, **kwargs)


_NOISE_DEFAULTS = {
    "score": "logit",
    "base": "vanilla",
    "samples": 50,
    "sigma": 0.15,
    "sampling": "mc",
    "tolerance": None,
    "seed": 0,
}

METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        _method(
            "vanilla",
            vanilla_gradients,
            "gradient of the class score w.r.t. the pixels (Simonyan et al. 2014)",
            "gradients",
            plan=vanilla_plan,
        ),
        _method(
            "gradient-x-input",
            gradient_x_input,
            "gradient times the pixel values (Shrikumar et al. 2016)",
            "gradients",
            plan=gradient_x_input_plan,
        ),
        _method(
            "guided-backprop",
            guided_backprop,
            "gradients through ReLUs gated by input and signal (Springenberg et al. 2015)",
            "gradients",
            plan=guided_backprop_plan,
        ),
        _method(
            "deconvnet",
            deconvnet,
            "gradients through ReLUs gated by the signal only (Zeiler & Fergus 2014)",
            "gradients",
            plan=deconvnet_plan,
        ),
        _method(
            "smoothgrad",
            smoothgrad,
            "mean of any gradient method over noisy copies (Smilkov et al. 2017)",
            "noise",
            defaults=_NOISE_DEFAULTS,
            reports=True,
        ),
        _method(
            "squaregrad",
            squaregrad,
            "mean of the squared method over noisy copies (Hooker et al. 2019)",
            "noise",
            signed=False,
            defaults=_NOISE_DEFAULTS,
        ),
        _method(
            "vargrad",
            vargrad,
            "variance of any gradient method over noisy copies (Adebayo et al. 2018)",
            "noise",
            signed=False,
            defaults=_NOISE_DEFAULTS,
        ),
        _method(
            "integrated-gradients",
            integrated_gradients,
            "gradients integrated from a baseline to the image (Sundararajan et al. 2017)",
            "path",
            plan=integrated_gradients_plan,
            reports=True,
        ),
        _method(
            "blur-ig",
            blur_integrated_gradients,
            "gradients integrated from a blurred copy to the image (Xu et al. 2020)",
            "path",
            plan=blur_integrated_gradients_plan,
        ),
        _method(
            "guided-ig",
            guided_integrated_gradients,
            "IG on an adaptive path, least important pixels first (Kapishnikov et al. 2021)",
            "path",
        ),
        _method(
            "xrai",
            xrai,
            "regions ranked by IG attribution density (Kapishnikov et al. 2019)",
            "regions",
            output="map",
            signed=False,
        ),
        _method(
            "grad-cam",
            grad_cam,
            "layer activations weighed by pooled gradients (Selvaraju et al. 2017)",
            "cam",
            output="map",
            signed=False,
        ),
        _method(
            "grad-cam++",
            grad_cam_plus_plus,
            "Grad-CAM with higher-order channel weights (Chattopadhay et al. 2018)",
            "cam",
            output="map",
            signed=False,
        ),
        _method(
            "score-cam",
            score_cam,
            "channels weighed by the score of the image they mask (Wang et al. 2020)",
            "cam",
            output="map",
            signed=False,
        ),
        _method(
            "layer-cam",
            layer_cam,
            "activations weighed by their own positive gradients (Jiang et al. 2021)",
            "cam",
            output="map",
            signed=False,
        ),
        _method(
            "hires-cam",
            hires_cam,
            "element-wise gradient × activation, summed over channels (Draelos & Carin 2020)",
            "cam",
            output="map",
            signed=False,
        ),
        _method(
            "eigen-cam",
            eigen_cam,
            "first principal component of the activations, class-agnostic (Muhammad 2020)",
            "cam",
            output="map",
            signed=False,
        ),
        _method(
            "guided-grad-cam",
            guided_grad_cam,
            "guided backpropagation times Grad-CAM (Selvaraju et al. 2017)",
            "cam",
        ),
        _method(
            "occlusion",
            occlusion,
            "score drop when a square window is covered (Zeiler & Fergus 2014)",
            "perturbation",
            output="map",
        ),
        _method(
            "rise",
            rise,
            "score-weighted average of random masks (Petsiuk et al. 2018)",
            "perturbation",
            output="map",
            signed=False,
            reports=True,
        ),
    )
}

#: Short names accepted wherever a method name is.
ALIASES = {
    "gradients": "vanilla",
    "saliency": "vanilla",
    "input-x-gradient": "gradient-x-input",
    "ig": "integrated-gradients",
    "blur-integrated-gradients": "blur-ig",
    "guided-integrated-gradients": "guided-ig",
    "gradcam": "grad-cam",
    "gradcam++": "grad-cam++",
    "grad-cam-plus-plus": "grad-cam++",
    "scorecam": "score-cam",
    "layercam": "layer-cam",
    "hirescam": "hires-cam",
    "eigencam": "eigen-cam",
    "guided-gradcam": "guided-grad-cam",
}

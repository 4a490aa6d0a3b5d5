"""The model registry: named models, model files and in-memory models, per framework.

A framework is one adapter module plus one entry of :data:`FRAMEWORKS` (the function
that loads its models, imported only when used).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from salmap.errors import ModelError, UsageError
from salmap.models.classes import imagenet_classes, imagenet_synonyms
from salmap.models.keras_adapter import KerasAdapter

__all__ = [
    "load_model",
    "available_models",
    "MODELS",
    "DEFAULT_MODEL",
    "ModelSpec",
    "FRAMEWORKS",
    "framework_of",
]

DEFAULT_MODEL = "efficientnet_lite0"

#: Each framework's loader ``(module, function)``: ``function(model, **options)`` returns
#: an adapter for a name, a file or an in-memory model of that framework.
FRAMEWORKS = {
    "keras": ("salmap.models.zoo", "load_keras_model"),
    "torch": ("salmap.models.torch_models", "load_torch_model"),
    "numpy": ("salmap.models.numpy_lite", "load_numpy_model"),
}
#: Model file suffixes that name their framework.
_TORCH_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")


@dataclass(frozen=True)
class ModelSpec:
    """A named ImageNet classifier salmap knows how to build and feed."""

    name: str
    description: str
    input_size: tuple[int, int]
    preprocess: object
    #: keras.applications constructor name, or None for the embedded model
    application: str | None = None
    #: file Keras caches the ImageNet weights under (in $KERAS_HOME/models)
    weights_file: str | None = None


def _efficientnet_lite0_preprocess():
    from salmap.models.efficientnet_lite import PREPROCESS

    return PREPROCESS


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "efficientnet_lite0",
            "EfficientNet-Lite0, ImageNet weights embedded (offline) — the default",
            (224, 224),
            _efficientnet_lite0_preprocess,
        ),
        ModelSpec(
            "resnet50",
            "ResNet50 (He et al. 2016), the TensorFlow tutorial's model",
            (224, 224),
            "caffe",
            "ResNet50",
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        ModelSpec(
            "vgg16",
            "VGG16 (Simonyan & Zisserman 2015)",
            (224, 224),
            "caffe",
            "VGG16",
            "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        ModelSpec(
            "mobilenet_v2",
            "MobileNetV2 (Sandler et al. 2018)",
            (224, 224),
            "tf",
            "MobileNetV2",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
        ),
        ModelSpec(
            "densenet121",
            "DenseNet121 (Huang et al. 2017)",
            (224, 224),
            "torch",
            "DenseNet121",
            "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        ModelSpec(
            "inception_v3",
            "InceptionV3 (Szegedy et al. 2016)",
            (299, 299),
            "tf",
            "InceptionV3",
            "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        ModelSpec(
            "efficientnet_b0",
            "EfficientNetB0 (Tan & Le 2019), normalises inside the model",
            (224, 224),
            "0-255",
            "EfficientNetB0",
            "efficientnetb0.h5",
        ),
    )
}


def _keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _weights_status(spec: ModelSpec) -> str:
    if spec.application is None:
        return "embedded"
    if spec.weights_file and (_keras_cache() / spec.weights_file).is_file():
        return "cached"
    return "download or --weights"


def available_models() -> list[dict]:
    """Every named model: name, description, input size, preprocessing, and whether its
    weights are at hand offline (``embedded``/``cached``) or need a download or a file."""
    rows = []
    for spec in MODELS.values():
        status = _weights_status(spec)
        preprocess = spec.preprocess if isinstance(spec.preprocess, str) else "mean/std"
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "input_size": list(spec.input_size),
                "preprocess": preprocess,
                "weights": status,
                "offline": status in ("embedded", "cached"),
                "framework": "keras",
            }
        )
    return rows + _torch_models()


def _torch_models() -> list[dict]:
    """The named PyTorch models, when the torch extra is installed."""
    if importlib.util.find_spec("torch") is None:
        return []
    from salmap.models.torch_models import TORCH_MODELS

    return [
        {
            "name": name,
            "description": description,
            "input_size": [224, 224],
            "preprocess": "mean/std",
            "weights": "embedded",
            "offline": True,
            "framework": "torch",
        }
        for name, description in TORCH_MODELS.items()
    ]


def load_model(
    model=None,
    *,
    framework: str | None = None,
    weights: str | os.PathLike | None = None,
    input_size: int | tuple[int, int] | None = None,
    preprocess=None,
    class_names=None,
    batch_size: int = 32,
    device=None,
    arch: str | None = None,
    output=None,
):
    """Load a model for explaining.

    Parameters
    ----------
    model : str, path, keras.Model, torch.nn.Module or adapter, optional
        A name from :data:`MODELS` (default ``efficientnet_lite0``, which works offline),
        a Keras model file (``.keras`` or ``.h5``, loaded with ``safe_mode``), an
        in-memory ``keras.Model``, an adapter (returned as it is); with PyTorch, a
        ``torch.nn.Module`` taking N×3×H×W, a torchvision or timm architecture name, a
        TorchScript file, or a ``.pth`` state dict with ``arch``.
    framework : {"keras", "torch", "numpy"}, optional
        Which framework runs a named model (default Keras; PyTorch for modules, torch
        files and ``arch``). ``efficientnet_lite0`` exists in all three, with the same
        weights (``numpy``: no framework at all, class targets and the standard
        backward rule; the fastest start for one photo).
    weights : path or "random", optional
        For named models: a local weights file instead of a download (Keras ``.h5``;
        a PyTorch state dict, read with ``weights_only=True``), or ``"random"`` for
        untrained (seeded, for PyTorch) weights (tests, benchmarks, sanity checks).
    input_size : int or (height, width), optional
        Size images are resized to inside the model; required for files and in-memory
        models whose input size is not fixed.
    preprocess : str, dict or callable
        Required for files and in-memory models: ``torch``, ``caffe``, ``tf``,
        ``none``, ``0-255``, a mean/std dict, or a differentiable function of a [0, 1]
        batch. Named models know their own.
    class_names : list of str or path, optional
        Class names in output order (or a text file, one per line). Models with 1000
        outputs default to the ImageNet names.
    batch_size : int
        Images per model call when a method does not say.
    device : str, optional
        PyTorch only: ``cuda``, ``cpu``… (default: CUDA when present for models salmap
        builds, the module's own device for a module).
    arch : str, optional
        PyTorch only: the architecture of a ``.pth`` state dict given as ``model``.
    output : int, str or callable, optional
        Which part of a tuple, dict or dataclass output targets score.
    """
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    if hasattr(model, "gradients") and hasattr(model, "predict") and not _is_keras(model):
        return model
    framework = framework_of(model, arch, framework)
    if framework not in FRAMEWORKS:
        raise UsageError(f"unknown framework {framework!r}; use {', '.join(FRAMEWORKS)}")
    options = dict(weights=weights, input_size=input_size, preprocess=preprocess)
    options.update(class_names=class_names, batch_size=batch_size)
    if framework == "torch":
        options.update(device=device, arch=arch, output=output)
    elif device is not None or arch is not None or output is not None:
        raise UsageError("device, arch and output are for PyTorch models (--framework torch)")
    module, function = FRAMEWORKS[framework]
    return getattr(importlib.import_module(module), function)(model, **options)


def framework_of(model, arch: str | None = None, framework: str | None = None) -> str:
    """The framework a model belongs to (``framework`` when given), without importing
    one that is not in use."""
    if framework is not None:
        return framework
    torch = sys.modules.get("torch")
    if arch is not None or (torch is not None and isinstance(model, torch.nn.Module)):
        return "torch"
    if isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() in _TORCH_SUFFIXES:
        return "torch"
    return "keras"


def load_keras_model(
    model=None,
    *,
    weights=None,
    input_size: tuple[int, int] | None = None,
    preprocess=None,
    class_names=None,
    batch_size: int = 32,
) -> KerasAdapter:
    """The Keras half of :func:`load_model` (same parameters)."""
    if model is None:
        model = DEFAULT_MODEL
    if _is_keras(model):
        return _wrap(model, None, input_size, preprocess, class_names, batch_size)
    name = str(model)
    if name in MODELS:
        return _load_named(MODELS[name], weights, input_size, class_names, batch_size)
    path = Path(name)
    if path.suffix.lower() in (".keras", ".h5", ".hdf5") or path.exists():
        return _wrap(_load_file(path), path.stem, input_size, preprocess, class_names, batch_size)
    raise UsageError(
        f"unknown model {name!r}; choose one of {', '.join(MODELS)}, give a .keras/.h5 file, "
        "or a torchvision/timm name with --framework torch"
    )


def _is_keras(model) -> bool:
    # Not imported yet: then ``model`` cannot be a Keras model (and importing Keras to
    # find out would cost seconds).
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)


def _class_names(class_names, num_classes: int):
    if class_names is None:
        if num_classes == 1000:
            return imagenet_classes(), imagenet_synonyms()
        return None, None
    if isinstance(class_names, (str, os.PathLike)):
        path = Path(class_names)
        if not path.is_file():
            raise UsageError(f"class-name file {path} not found")
        class_names = [
            line.strip() for line in path.read_text("utf-8").splitlines() if line.strip()
        ]
    return list(class_names), None


def _wrap(keras_model, name, input_size, preprocess, class_names, batch_size) -> KerasAdapter:
    if preprocess is None:
        raise UsageError(
            "say how the model expects its input: preprocess='torch', 'caffe', 'tf', 'none', "
            "'0-255', a mean/std dict or a function (CLI: --preprocess)"
        )
    names, synonyms = _class_names(class_names, int(keras_model.outputs[0].shape[-1]))
    return KerasAdapter(
        keras_model,
        name=name or keras_model.name,
        input_size=input_size,
        preprocess=preprocess,
        class_names=names,
        synonyms=synonyms,
        batch_size=batch_size,
    )


def _load_file(path: Path):
    import keras

    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except ValueError as error:
        if "safe_mode" in str(error) or "lambda" in str(error).lower():
            raise ModelError(
                f"{path}: the model contains Python code (a Lambda layer), which salmap does "
                "not run from an untrusted file; load it yourself with "
                "keras.models.load_model(..., safe_mode=False) and pass the model"
            ) from None
        raise ModelError(f"{path}: not a Keras model salmap can load ({_line(error)})") from None
    except Exception as error:  # noqa: BLE001 - h5py/zip/keras raise many types for bad files
        raise ModelError(f"{path}: not a Keras model salmap can load ({_line(error)})") from None


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _load_named(spec, weights, input_size, class_names, batch_size) -> KerasAdapter:
    if spec.application is None:
        from salmap.models.efficientnet_lite import build_efficientnet_lite0

        if weights not in (None, "random"):
            raise UsageError(f"{spec.name} has its weights embedded; --weights is not used")
        keras_model = build_efficientnet_lite0(weights=None if weights == "random" else "default")
        preprocess = spec.preprocess()
    else:
        keras_model = _build_application(spec, weights)
        preprocess = spec.preprocess
    names, synonyms = _class_names(class_names, int(keras_model.outputs[0].shape[-1]))
    return KerasAdapter(
        keras_model,
        name=spec.name,
        input_size=input_size or spec.input_size,
        preprocess=preprocess,
        class_names=names,
        synonyms=synonyms,
        batch_size=batch_size,
    )


def _build_application(spec: ModelSpec, weights):
    import keras

    constructor: Callable = getattr(keras.applications, spec.application)
    height, width = spec.input_size
    kwargs = {"input_shape": (height, width, 3), "classifier_activation": None}
    if weights == "random":
        return constructor(weights=None, **kwargs)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ModelError(f"weights file {path} not found")
        try:
            return constructor(weights=str(path), **kwargs)
        except Exception as error:  # noqa: BLE001 - h5py and keras raise many types
            raise ModelError(
                f"{path}: cannot load {spec.application} weights from it ({_line(error)}); "
                f"it must be keras.applications.{spec.application} ImageNet weights (.h5)"
            ) from None
    try:
        # Keras prints its download progress on stdout, which belongs to --json.
        with contextlib.redirect_stdout(io.StringIO()):
            return constructor(weights="imagenet", **kwargs)
    except Exception as error:  # noqa: BLE001 - keras wraps network errors in Exception
        raise ModelError(
            f"ImageNet weights for {spec.name} are not cached and the download failed "
            f"({_line(error)[-60:]}); pass --weights PATH to a local {spec.weights_file} "
            "file, or use the offline default efficientnet_lite0"
        ) from None

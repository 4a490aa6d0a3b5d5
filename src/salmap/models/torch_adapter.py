"""The PyTorch model adapter: any ``torch.nn.Module`` taking N×3×H×W images.

Images arrive as NumPy N×H×W×3 in [0, 1]; inside the differentiable path they become
an N×3×H×W tensor on the adapter's device, are resized to the model's input size
(bilinear, antialiased) and preprocessed, then run through the module; ``output=``
selects the part of a tuple, dict or dataclass output that targets score.

The user's module is never modified: every call runs in eval mode with the
parameters' ``requires_grad`` off (no weight gradients are computed) and restores
both afterwards, also when the call fails; forward hooks live only for one call.
Guided backpropagation and deconvnet change the backward rule of every rectifier
(``nn.ReLU``, ``nn.ReLU6`` and the functional ``relu``/``relu6``/``hardtanh(0, ·)``)
through a :class:`torch.overrides.TorchFunctionMode` active for the call, so no hook is
attached to the module at all.

Layers for CAMs are modules, by their ``named_modules`` name. The default is the last
module with a spatial output (N×C×h×w, h, w > 1, or Swin's channels-last N×h×w×C),
found by one traced forward; for Vision Transformers, whose late layers are token
sequences N×T×C, it is the last token layer whose patch tokens still reach the score
(the last block's first LayerNorm, found by one traced backward). Token layers are
reshaped to their grid without user code: the class, distillation and register
tokens in front are dropped and the grid is inferred from the token count and the
input's aspect ratio.

References
----------
J. T. Springenberg et al., "Striving for Simplicity: The All Convolutional Net",
ICLR workshop 2015 (guided backpropagation). M. D. Zeiler and R. Fergus, "Visualizing
and Understanding Convolutional Networks", ECCV 2014 (deconvnet). A. Dosovitskiy et
al., "An Image is Worth 16x16 Words", ICLR 2021 (ViT tokens).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the universal alias
from torch.overrides import TorchFunctionMode

from salmap.errors import ModelError, UsageError
from salmap.models.base import (
    AttentionMaps,
    as_image_batch,
    cut_points,
    require_backward,
    select_output,
)
from salmap.models.preprocessing import (
    _CAFFE_BGR_MEAN,
    _IMAGENET_MEAN,
    _IMAGENET_STD,
    PREPROCESS_MODES,
)
from salmap.models.torch_attention import AttentionMode
from salmap.models.torch_rules import (
    LRP_RULES,
    REFERENCE_RULES,
    lrp_relevance,
    reference_gradients,
)
from salmap.targets import Class, Target, as_targets

__all__ = ["TorchAdapter", "TorchOps", "torch_preprocess"]


def torch_preprocess(spec) -> Callable:
    """A function on N×3×H×W float32 tensors in [0, 1]: the model's preprocessing.

    ``spec`` is a mode of :data:`salmap.models.preprocessing.PREPROCESS_MODES`, a
    ``{"mean": ..., "std": ...}`` dict on [0, 1] RGB, or a callable on N×3×H×W tensors
    (differentiable: use torch operations).
    """
    if callable(spec):
        return spec
    if isinstance(spec, dict):
        return _normalise(spec["mean"], spec["std"])
    if spec in ("torch", "imagenet"):
        return _normalise(_IMAGENET_MEAN, _IMAGENET_STD)
    if spec == "caffe":
        mean = torch.tensor(_CAFFE_BGR_MEAN).view(1, 3, 1, 1)
        return lambda x: x.flip(1) * 255.0 - mean.to(x.device)
    if spec == "tf":
        return lambda x: x * 2.0 - 1.0
    if spec in ("none", None):
        return lambda x: x
    if spec == "0-255":
        return lambda x: x * 255.0
    raise UsageError(
        f"unknown preprocessing {spec!r}; use one of {', '.join(PREPROCESS_MODES)}, "
        "a mean/std dict or a function"
    )


def _normalise(mean, std) -> Callable:
    mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return lambda x: (x - mean.to(x.device)) / std.to(x.device)


class TorchOps:
    """:class:`salmap.targets.TensorOps` in torch tensors (class axis 1: channels first)."""

    def __init__(self, device):
        self.device = device

    def tensor(self, array):
        return torch.as_tensor(np.asarray(array, np.float32), device=self.device)

    def softmax(self, values):
        return torch.softmax(values, dim=-1)

    def take_columns(self, values, columns):
        columns = torch.as_tensor(np.asarray(columns, np.int64), device=values.device)
        return values[torch.arange(len(values), device=values.device), columns]

    def class_planes(self, values, index: int):
        return values[:, index]

    def spatial_sum(self, values):
        return values.flatten(1).sum(dim=1)

    def stack(self, values: list):
        return torch.stack(values)

    def to_numpy(self, values) -> np.ndarray:
        return values.detach().cpu().numpy()


# -- backward rules through the rectifiers ---------------------------------------------
class _Rectify(torch.autograd.Function):
    """``clamp(x, 0, high)`` forward; guided backpropagation (Springenberg et al. 2015,
    Eq. 6: gate on the forward input and on the signal) or deconvnet (Zeiler & Fergus
    2014: gate on the signal only) backward."""

    @staticmethod
    def forward(ctx, x, high, rule):
        ctx.high, ctx.rule = high, rule
        ctx.save_for_backward(x)
        return x.clamp(min=0) if high is None else x.clamp(0, high)

    @staticmethod
    def backward(ctx, upstream):
        positive = upstream.clamp(min=0)
        if ctx.rule == "deconv":
            return positive, None, None
        (x,) = ctx.saved_tensors
        gate = x > 0 if ctx.high is None else (x > 0) & (x < ctx.high)
        return positive * gate, None, None


_RELU = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
_RELU6 = {F.relu6}


class _RectifierRule(TorchFunctionMode):
    """Routes every rectifier called while active through :class:`_Rectify`."""

    def __init__(self, rule: str):
        super().__init__()
        self.rule = rule
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        high = _rectifier_bound(func, args, kwargs)
        if high is False:
            return func(*args, **kwargs)
        self.count += 1
        return _Rectify.apply(args[0], high, self.rule)


def _rectifier_bound(func, args, kwargs):
    """``None`` for a ReLU, its upper bound for ReLU6/hardtanh(0, b), ``False`` otherwise."""
    if func in _RELU:
        return None
    if func in _RELU6:
        return 6.0
    if func is F.hardtanh:
        low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        high = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
        return float(high) if low == 0 else False
    return False


# -- layers and token grids ----------------------------------------------------------------
def _spatial_layout(shape: tuple, input_size: tuple[int, int]) -> str | None:
    """How a layer's output holds a spatial map: ``"channels_first"`` (N×C×h×w),
    ``"channels_last"`` (N×h×w×C, e.g. Swin), ``"tokens"`` (N×T×C, ViT) or None."""
    if len(shape) == 4:
        first = _grid_like(shape[2], shape[3], input_size)
        last = _grid_like(shape[1], shape[2], input_size)
        if last and not first:
            return "channels_last"
        return "channels_first" if shape[2] * shape[3] > 1 else None
    if len(shape) == 3 and token_grid(shape[1], input_size) is not None:
        return "tokens"
    return None


def _grid_like(height: int, width: int, input_size: tuple[int, int]) -> bool:
    """Whether an h×w map can be the input seen with one stride on both axes."""
    if height * width <= 1 or height > input_size[0] or width > input_size[1]:
        return False
    return abs(input_size[0] / height - input_size[1] / width) <= 0.1 * input_size[0] / height


def token_grid(tokens: int, input_size: tuple[int, int]) -> tuple[int, int, int] | None:
    """``(extra tokens in front, h, w)`` of a token sequence over an image of
    ``input_size``, or None: the fewest front tokens (class, distillation, registers;
    at most 16) whose removal leaves an h×w grid with the image's aspect ratio and an
    integer patch size."""
    height, width = input_size
    for extra in range(0, min(17, tokens - 3)):
        rows = math.isqrt(round((tokens - extra) * height / width))
        for h in (rows, rows + 1):
            if h and (tokens - extra) % h == 0:
                w = (tokens - extra) // h
                if h > 1 and w > 1 and height % h == 0 and width % w == 0:
                    if height // h == width // w:
                        return extra, h, w
    return None


def _as_grid(values, layout: str, input_size: tuple[int, int]):
    """A layer's output as N×h×w×C (channels last), whatever its layout."""
    if layout == "channels_first":
        return values.permute(0, 2, 3, 1)
    if layout == "channels_last":
        return values
    extra, height, width = token_grid(values.shape[1], input_size)
    return values[:, extra:].reshape(len(values), height, width, values.shape[-1])


class TorchAdapter:
    """Wrap a ``torch.nn.Module`` taking N×3×H×W images for salmap's methods.

    Parameters
    ----------
    module : torch.nn.Module
        The model (a classifier, or any model whose output a target scores). Never
        modified: eval mode, ``requires_grad`` and hooks are set for each call only.
    name : str, optional
        A short name for results (default: the module's class name).
    input_size : int or (height, width)
        Images are resized to it inside the differentiable path.
    preprocess : str, dict or callable
        [0, 1] RGB → the module's input (see :func:`torch_preprocess`).
    class_names, synonyms : sequences, optional
        Class names in output order (and alternative names of each).
    batch_size : int
        Images per model call when the caller does not say (the engine chunks).
    device : str or torch.device, optional
        Where to run; default the module's own device. A different device moves the
        module there (``module.to(device)``), the one change salmap makes on request.
    output : int, str or callable, optional
        Which part of a tuple, dict or dataclass output targets score
        (:func:`salmap.models.base.select_output`).
    """

    framework = "torch"
    capabilities = frozenset({"layers", "randomize", "ablation", "biases", "attention"})

    def __init__(
        self,
        module,
        *,
        name: str | None = None,
        input_size: int | tuple[int, int],
        preprocess="none",
        class_names: Sequence[str] | None = None,
        synonyms: Sequence[Sequence[str]] | None = None,
        batch_size: int = 32,
        device=None,
        output=None,
    ):
        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"expected a torch.nn.Module, got {type(module).__name__}")
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.module = module
        self.name = name or type(module).__name__
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.preprocess = preprocess
        self._preprocess = torch_preprocess(preprocess)
        self.batch_size = int(batch_size)
        self.output = output
        self.device = torch.device(device) if device is not None else _module_device(module)
        if device is not None and _module_device(module) != self.device:
            module.to(self.device)
        self._dtype = _module_dtype(module)
        self._scripted = isinstance(module, torch.jit.ScriptModule)
        # TorchScript runs its own interpreter: rectifiers cannot be rerouted, and its
        # modules take no hooks (no layers for CAMs).
        if self._scripted:
            self.backward_rules, self.capabilities = ("standard",), frozenset()
        else:
            self.backward_rules = (
                "standard", "guided", "deconv", *REFERENCE_RULES, *LRP_RULES
            )  # fmt: skip
        self._ops = TorchOps(self.device)
        # Images go in channels-last (NHWC memory, as NumPy holds them): convolutions
        # then run 10-28 % faster on CPU (benchmarks/bench_torch.py). A model that
        # cannot take such strides (``x.view`` on a feature map) gets plain NCHW.
        self._channels_last = True
        try:
            self._layers, outputs = self._trace()
        except ModelError:
            self._channels_last = False
            self._layers, outputs = self._trace()
        self.num_classes = (
            int(outputs.shape[1]) if torch.is_tensor(outputs) and outputs.ndim == 2 else None
        )
        if class_names is not None and len(class_names) != self.num_classes:
            raise ModelError(
                f"{len(class_names)} class names given for a model with "
                f"{self.num_classes or 'no class'} outputs"
            )
        self.class_names = list(class_names) if class_names is not None else None
        self.synonyms = synonyms
        self._default_layer: str | None = None

    # -- the differentiable path ---------------------------------------------------------
    @contextlib.contextmanager
    def _session(self, grad: bool):
        """Eval mode, frozen parameters, gradients on or off — all restored on exit."""
        modes = [(m, m.training) for m in self.module.modules()]
        flags = [(p, p.requires_grad) for p in self.module.parameters()]
        try:
            if any(training for _, training in modes):
                self.module.eval()
            for parameter, _ in flags:
                parameter.requires_grad_(False)
            with torch.set_grad_enabled(grad):
                yield
        finally:
            for parameter, flag in flags:
                parameter.requires_grad_(flag)
            for submodule, training in modes:
                submodule.training = training

    def _input(self, images: np.ndarray, grad: bool = False):
        """NumPy N×H×W×3 → a leaf tensor N×3×H×W on the device (a copy: the model
        never shares the caller's memory), channels-last in memory where the model
        takes it."""
        images = as_image_batch(images)
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        layout = torch.channels_last if self._channels_last else torch.contiguous_format
        x = x.to(self.device, self._dtype, copy=True, memory_format=layout)
        return x.requires_grad_(True) if grad else x

    def _outputs(self, x):
        """The selected outputs of the module on a [0, 1] N×3×H×W batch."""
        return self._module_outputs(self._preprocess(self._resized(x)))

    def _resized(self, x):
        """A [0, 1] N×3×H×W batch at the model's input size (bilinear, antialiased)."""
        if tuple(x.shape[2:]) != self.input_size:
            x = F.interpolate(
                x, size=self.input_size, mode="bilinear", antialias=True, align_corners=False
            )
        return x

    def _module_outputs(self, x):
        """The selected outputs of the module on its own (preprocessed) input."""
        try:
            outputs = self.module(x)
        except Exception as error:  # noqa: BLE001 - a user's forward may raise anything
            raise ModelError(
                f"model {self.name!r} failed on a {tuple(x.shape)} batch ({_line(error)}); "
                "salmap calls module(images) with one N×3×H×W float tensor"
            ) from None
        return select_output(outputs, self.output)

    def _target_scores(self, outputs, targets):
        if isinstance(targets, Class) and not (torch.is_tensor(outputs) and outputs.ndim == 2):
            shape = tuple(outputs.shape) if torch.is_tensor(outputs) else type(outputs).__name__
            raise ModelError(
                f"model {self.name!r} outputs {shape}, not N×classes, so a class target "
                "cannot score it; select an output with output=, or use a Segmentation, "
                "Box, Regression or callable target"
            )
        scores = targets.scores(outputs, self._ops)
        if not torch.is_tensor(scores) or scores.ndim != 1:
            shape = tuple(scores.shape) if torch.is_tensor(scores) else type(scores).__name__
            raise ModelError(f"a target must give one score per image, got {shape}")
        return scores

    def _targets(self, targets, count: int) -> Target:
        return as_targets(targets, count)

    # -- the protocol -------------------------------------------------------------------------
    def predict(self, images: np.ndarray):
        """The model's (selected) outputs on a batch, as NumPy (N×classes logits for a
        classifier; lists and dicts of arrays for a detector). Forward only."""
        with self._session(grad=False):
            return _to_numpy(self._outputs(self._input(images)))

    def scores(self, images: np.ndarray, targets: Target) -> np.ndarray:
        """Each image's target score, N float32, forward only."""
        targets = self._targets(targets, len(as_image_batch(images)))
        with self._session(grad=False):
            values = self._target_scores(self._outputs(self._input(images)), targets)
            return values.float().cpu().numpy()

    def gradients(
        self,
        images: np.ndarray,
        targets: Target,
        backward: str = "standard",
        *,
        references: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(d score / d image N×H×W×3, scores N)`` float32 under the backward rule
        ``standard``, ``guided`` or ``deconv`` (the forward pass is unchanged), or the
        multipliers of ``deeplift`` against ``references`` (N×H×W×3, see
        :mod:`salmap.models.torch_rules`)."""
        require_backward(self, backward)
        images = as_image_batch(images)
        targets = self._targets(targets, len(images))
        if backward in REFERENCE_RULES:
            return reference_gradients(self, images, targets, references, backward)
        if backward in LRP_RULES:
            return lrp_relevance(self, images, targets, backward)
        rule = _RectifierRule(backward) if backward != "standard" else contextlib.nullcontext()
        with self._session(grad=True), rule:
            x = self._input(images, grad=True)
            values = self._target_scores(self._outputs(x), targets)
            if backward != "standard" and rule.count == 0:
                raise ModelError(
                    f"the backward rule {backward!r} changes rectifiers (ReLU), and model "
                    f"{self.name!r} has none; use standard gradients"
                )
            grads = _gradient(values, x)
        return _channels_last(grads), values.detach().float().cpu().numpy()

    def cam_layer(self, layer: str | None = None) -> str:
        """``layer`` checked, or the default: the last spatial layer (CNNs, Swin), or
        the last token layer whose patch tokens reach the score (ViTs)."""
        if layer is not None:
            if layer not in self._layers:
                names = [n for n, (_, layout) in self._layers.items() if layout]
                raise UsageError(
                    f"model {self.name!r} has no layer {layer!r} with a spatial output; "
                    f"the last ones are {', '.join(names[-5:])}"
                )
            return layer
        if self._default_layer is None:
            self._default_layer = self._find_default_layer()
        return self._default_layer

    def layer_values_and_gradients(
        self, images: np.ndarray, targets: Target, layer: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(activations N×h×w×C, d score / d activations N×h×w×C, scores N)`` float32
        of ``layer`` (a ``named_modules`` name; default :meth:`cam_layer`)."""
        layer = self.cam_layer(layer)
        layout = self._layers[layer][1]
        if layout is None:
            raise ModelError(
                f"layer {layer!r} outputs shape {self._layers[layer][0]}; CAM methods need "
                "a spatial map (N×C×h×w, N×h×w×C) or ViT tokens (N×T×C)"
            )
        images = as_image_batch(images)
        targets = self._targets(targets, len(images))
        with self._session(grad=True), _capture(self.module, [layer]) as captured:
            x = self._input(images, grad=True)
            values = self._target_scores(self._outputs(x), targets)
            activations = captured[layer]
            grads = _gradient(values, activations)
        to_grid = lambda t: _as_grid(t, layout, self.input_size)  # noqa: E731
        return (
            _numpy(to_grid(activations)),
            _numpy(to_grid(grads)),
            values.detach().float().cpu().numpy(),
        )

    def layer_ablation_scores(
        self, images: np.ndarray, targets: Target, layer: str | None, channels
    ) -> np.ndarray:
        """Scores (N float32, forward only) with channel ``channels[i]`` of ``layer``
        zeroed in image ``i`` (``-1``: none), by a forward hook for this call only."""
        layer = self.cam_layer(layer)
        shape, layout = self._layers[layer]
        axis = 1 if layout == "channels_first" else len(shape) - 1
        images = as_image_batch(images)
        targets = self._targets(targets, len(images))
        channels = torch.as_tensor(np.asarray(channels, np.int64), device=self.device)
        keep = torch.ones(len(images), shape[axis], device=self.device)
        rows = torch.nonzero(channels >= 0)[:, 0]
        keep[rows, channels[rows]] = 0
        view = [len(images)] + [1] * (len(shape) - 1)
        view[axis] = shape[axis]

        def zero(_module, _inputs, output):
            # A module called more than once (one ReLU reused) is read, as by the CAMs,
            # where its output has the traced shape.
            if tuple(output.shape[1:]) != tuple(shape[1:]):
                return output
            return output * keep.view(view).to(output.dtype)

        handle = dict(self.module.named_modules())[layer].register_forward_hook(zero)
        try:
            with self._session(grad=False):
                values = self._target_scores(self._outputs(self._input(images)), targets)
        finally:
            handle.remove()
        return values.float().cpu().numpy()

    def bias_gradients(self, images: np.ndarray, targets: Target):
        """``(d score / d image N×H×W×3, [bias × d score / d output, N×h×w×C per layer])``
        for every ``Conv2d`` with a bias and every ``BatchNorm2d`` (its effective bias
        ``beta - mean gamma / sqrt(var + eps)``), in call order (FullGrad)."""
        images = as_image_batch(images)
        targets = self._targets(targets, len(images))
        layers = [
            (name, module)
            for name, module in self.module.named_modules()
            if isinstance(module, torch.nn.BatchNorm2d)
            or (isinstance(module, torch.nn.Conv2d) and module.bias is not None)
        ]
        with self._session(grad=True), _capture(self.module, [n for n, _ in layers]) as seen:
            x = self._input(images, grad=True)
            values = self._target_scores(self._outputs(x), targets)
            names = [n for n, _ in layers if n in seen]
            grads = torch.autograd.grad(values.sum(), [x] + [seen[n] for n in names])
        modules = dict(layers)
        products = [
            _numpy((grad * _effective_bias(modules[name]).view(1, -1, 1, 1)).permute(0, 2, 3, 1))
            for name, grad in zip(names, grads[1:], strict=True)
        ]
        return _channels_last(grads[0]), products

    def attention_maps(
        self,
        images: np.ndarray,
        targets: Target | None = None,
        *,
        gradients: bool = False,
        relevance: bool = False,
    ) -> AttentionMaps:
        """Every self-attention's probabilities (N×heads×T×T per call, in call order),
        and on request ``d score / d A`` and the relevance of ``A`` under Chefer et
        al.'s rules (:mod:`salmap.models.torch_attention`: one forward pass, one
        backward pass for each). Relevance starts at the output as ``d score / d
        output``: one-hot for a class logit."""
        images = as_image_batch(images)
        scored = gradients or relevance
        targets = self._targets(targets, len(images)) if scored else None
        result = AttentionMaps(attention=[], front=0, grid=(0, 0))
        with self._session(grad=scored):
            mode = AttentionMode(relevance=relevance)
            x = self._input(images, grad=scored)
            with mode:
                outputs = self._outputs(x)
            result.front, result.grid = self._attention_layout(mode.maps, len(images))
            result.attention = [_numpy(a) for a in mode.maps]
            if scored:
                values = self._target_scores(outputs, targets)
                result.scores = values.detach().float().cpu().numpy()
            if relevance and not torch.is_tensor(outputs):
                raise ModelError("relevance needs a model with one tensor output")
            if gradients:
                result.gradients = _gradients_at(values.sum(), mode.maps, keep=relevance)
            if relevance:
                (weights,) = torch.autograd.grad(values.sum(), outputs, retain_graph=True)
                safe = torch.where(outputs == 0, 1.0, outputs)
                start = torch.where(outputs == 0, 0.0, weights / safe)
                mode.relevance_phase = True
                multipliers = _gradients_at(outputs, mode.maps, start)
                result.relevance = [
                    a * m for a, m in zip(result.attention, multipliers, strict=True)
                ]
        return result

    def _attention_layout(self, maps: list, count: int) -> tuple[int, tuple[int, int]]:
        """``(front tokens, (h, w))`` of the attention calls seen, or a one-line error
        when there are none or they are not global attention over one patch grid."""
        if not maps:
            raise ModelError(
                f"model {self.name!r} calls neither F.scaled_dot_product_attention nor "
                "nn.MultiheadAttention, where salmap reads attention; attention methods "
                "need a ViT-like transformer (windowed attention, as Swin's, is not read)"
            )
        shapes = {tuple(a.shape) for a in maps}
        tokens = maps[0].shape[-1]
        layout = token_grid(tokens, self.input_size)
        if len(shapes) > 1 or maps[0].shape[0] != count or layout is None:
            raise ModelError(
                f"model {self.name!r} has attention of shapes {sorted(shapes)} for {count} "
                "images; attention methods need global self-attention over one patch grid "
                "per image (ViT, DeiT), not windowed or pooled attention"
            )
        return layout[0], (layout[1], layout[2])

    def cascade_layers(self) -> list[str]:
        """Modules with their own parameters, in call order reversed (output first)."""
        owners = {
            name
            for name, module in self.module.named_modules()
            if next(module.parameters(recurse=False), None) is not None
        }
        return [name for name in reversed(self._layers) if name in owners]

    def randomization_cascade(
        self, layers: int | Sequence[str] | None, seed: int
    ) -> Iterator[tuple[str, int, TorchAdapter]]:
        """Re-initialise a deep copy's modules from the top down (each module's own
        ``reset_parameters``, seeded), yielding ``(layer, randomised so far, adapter)``
        after each cut point; the user's module is never touched."""
        names = self.cascade_layers()
        cuts = cut_points(len(names), layers, names)
        clone = copy.deepcopy(self.module)
        modules = dict(clone.named_modules())
        adapter = self._sibling(clone)
        done = 0
        for position in cuts:
            for index in range(done, position + 1):
                _reinitialise(modules[names[index]], seed + 1000 * index)
            done = position + 1
            yield names[position], done, adapter

    def _sibling(self, module) -> TorchAdapter:
        return TorchAdapter(
            module,
            name=self.name,
            input_size=self.input_size,
            preprocess=self.preprocess,
            class_names=self.class_names,
            synonyms=self.synonyms,
            batch_size=self.batch_size,
            device=self.device,
            output=self.output,
        )

    # -- one traced forward (and backward for ViTs) ---------------------------------------------
    def _trace(self):
        """Every module's output shape and layout in call order (a module called
        several times counts at its last call), and the model's outputs, from one
        forward pass of a grey image."""
        shapes: dict[str, tuple] = {}
        grey = np.full((1, *self.input_size, 3), 0.5, np.float32)
        names = [] if self._scripted else [n for n, _ in self.module.named_modules() if n]
        with self._session(grad=False), _capture(self.module, names, shapes=shapes):
            outputs = self._outputs(self._input(grey))
        layers = {
            name: (shape, _spatial_layout(shape, self.input_size)) for name, shape in shapes.items()
        }
        return layers, outputs

    def _find_default_layer(self) -> str:
        names = list(self._layers)
        spatial = [n for n in names if self._layers[n][1] in ("channels_first", "channels_last")]
        tokens = [n for n in names if self._layers[n][1] == "tokens"]
        after = spatial and tokens and names.index(tokens[-1]) > names.index(spatial[-1])
        if spatial and not after:
            return spatial[-1]
        if not tokens:
            raise ModelError(
                f"model {self.name!r} has no layer with a spatial output (N×C×h×w) or ViT "
                "tokens; CAM methods need one"
            )
        # Among token layers, a block's first normalisation (the input of its attention,
        # pytorch-grad-cam's advice for ViTs) is the CAM layer of choice.
        modules = dict(self.module.named_modules())
        norms = [n for n in tokens if isinstance(modules[n], torch.nn.LayerNorm)]
        return self._last_reaching_token_layer(norms + tokens[-1:] if norms else tokens)

    def _last_reaching_token_layer(self, tokens: list[str]) -> str:
        """The last token layer whose patch tokens reach what the head reads: the front
        (class) tokens of the last token layer, or all its tokens when it has none. After
        a ViT's last attention, patch tokens no longer reach the class token."""
        image = np.random.default_rng(0).uniform(0.3, 0.7, (1, *self.input_size, 3))
        generator = torch.Generator().manual_seed(0)
        with self._session(grad=True), _capture(self.module, tokens) as captured:
            self._outputs(self._input(image.astype(np.float32), grad=True))
            values = [captured[name] for name in tokens]
            front = token_grid(values[-1].shape[1], self.input_size)[0]
            readout = values[-1][:, :front] if front else values[-1]
            # A random projection: a LayerNorm's plain channel sum is constant.
            weights = torch.randn(readout.shape, generator=generator).to(readout.device)
            grads = torch.autograd.grad((readout * weights).sum(), values, allow_unused=True)
        for name, grad in zip(reversed(tokens), reversed(grads), strict=True):
            extra = token_grid(self._layers[name][0][1], self.input_size)[0]
            if grad is not None and grad[:, extra:].abs().max() > 0:
                return name
        raise ModelError(f"no token layer of model {self.name!r} reaches its output")

    def __repr__(self) -> str:
        return (
            f"TorchAdapter({self.name!r}, input_size={self.input_size}, "
            f"preprocess={self.preprocess!r}, classes={self.num_classes}, device={self.device})"
        )


@contextlib.contextmanager
def _capture(module, names: list[str], shapes: dict | None = None):
    """Forward hooks on the modules ``names``: their outputs (last call) in the yielded
    dict, or only their shapes in ``shapes`` (call order). Hooks are removed on exit."""
    captured: dict = {}
    modules = dict(module.named_modules())

    def hook(name):
        def record(_module, _inputs, output):
            if shapes is None:
                captured[name] = output
            elif torch.is_tensor(output):
                shapes.pop(name, None)
                shapes[name] = tuple(output.shape)

        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in names]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _effective_bias(module):
    """A layer's bias as FullGrad sees it (batch norm folded: beta - mean gamma / std)."""
    if isinstance(module, torch.nn.BatchNorm2d):
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        shift = module.bias if module.bias is not None else 0.0
        return (shift - module.running_mean * scale).detach()
    return module.bias.detach()


def _reinitialise(module, seed: int) -> None:
    """Fresh parameters from the module's own initialisation (Adebayo et al. 2018,
    §3.1), seeded; parameters of a module without ``reset_parameters`` are shuffled."""
    torch.manual_seed(seed)
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
        return
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters(recurse=False):
            order = torch.randperm(parameter.numel(), generator=generator)
            parameter.copy_(parameter.flatten()[order.to(parameter.device)].view_as(parameter))


def _gradients_at(outputs, tensors: list, weights=None, keep=False) -> list[np.ndarray]:
    """``d outputs / d tensor`` (weighted by ``weights``) for each tensor, as NumPy;
    zeros for a tensor the outputs do not depend on; ``keep``: the graph is kept."""
    if weights is None:
        weights = torch.ones_like(outputs)
    grads = torch.autograd.grad(outputs, tensors, weights, allow_unused=True, retain_graph=keep)
    return [
        _numpy(g) if g is not None else np.zeros(t.shape, np.float32)
        for g, t in zip(grads, tensors, strict=True)
    ]


def _gradient(values, inputs):
    """d sum(values) / d inputs (samples are independent in eval mode); zeros when the
    scores do not depend on the inputs (e.g. a box target that matched nothing)."""
    if not values.requires_grad:
        return torch.zeros_like(inputs)
    (grad,) = torch.autograd.grad(values.sum(), inputs, allow_unused=True)
    return torch.zeros_like(inputs) if grad is None else grad


def _total(outputs):
    """A scalar every floating-point output element reaches (for tracing which layers
    reach the outputs)."""
    if torch.is_tensor(outputs):
        return outputs.sum() if outputs.is_floating_point() else 0
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return sum(_total(value) for value in outputs)
    return 0


def _channels_last(tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().permute(0, 2, 3, 1).float().cpu().numpy())


def _numpy(tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().float().cpu().numpy())


def _to_numpy(outputs):
    """Tensors anywhere in a (nested) output as NumPy arrays."""
    if torch.is_tensor(outputs):
        return outputs.detach().cpu().numpy()
    if isinstance(outputs, dict):
        return {key: _to_numpy(value) for key, value in outputs.items()}
    if isinstance(outputs, list):
        return [_to_numpy(value) for value in outputs]
    if isinstance(outputs, tuple):
        return tuple(_to_numpy(value) for value in outputs)
    return outputs


def _module_device(module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _module_dtype(module) -> torch.dtype:
    """The floating-point type of the module's parameters (float16 models get float16)."""
    for tensor in module.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__

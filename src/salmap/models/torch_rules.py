"""Backward rules of the PyTorch adapter that compare with a reference input: DeepLIFT.

DeepLIFT's rescale rule replaces the derivative of every nonlinearity by the ratio of
differences from a reference, ``m = (f(z) - f(z_ref)) / (z - z_ref)`` (the plain
derivative where ``|z - z_ref|`` is tiny); affine operations (convolutions, linear
layers, batch normalisation in eval mode, average pooling, additions) keep their
gradients, which are already their multipliers. The chain rule of multipliers then
gives ``d (f(x) - f(ref)) / d x`` such that ``sum (x - ref) * m = f(x) - f(ref)``.

The images and their references run as one batch ``[x; ref]`` through the model, so
every nonlinearity sees both halves in the same call; a
:class:`torch.overrides.TorchFunctionMode` active for that call routes the element-wise
activations (ReLU, ReLU6, sigmoid, tanh, SiLU, GELU, ELU, leaky ReLU, softplus) and
max pooling through the rule — functional calls included, and a module called twice
(torchvision's ResNet blocks reuse one ReLU) is handled call by call. No hook is left
on the model. Other operations (softmax, products of two activations) keep their
gradients, as in Captum.

References
----------
A. Shrikumar, P. Greenside, A. Kundaje. Learning Important Features Through
Propagating Activation Differences. ICML 2017, Sec. 3.3 (rescale rule) and 3.5
(max pooling). S. M. Lundberg, S.-I. Lee. A Unified Approach to Interpreting Model
Predictions. NeurIPS 2017 (DeepLIFT averaged over a reference distribution).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the universal alias
from torch.overrides import TorchFunctionMode

from salmap.errors import ModelError, UsageError

__all__ = ["REFERENCE_RULES", "reference_gradients"]

#: Backward rules implemented here (they need reference images).
REFERENCE_RULES = ("deeplift",)

#: Below this difference from the reference, the plain derivative is used (Captum's eps).
EPSILON = 1e-10

_ELEMENTWISE = {
    F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
    F.relu6, F.hardtanh, F.sigmoid, torch.sigmoid, torch.Tensor.sigmoid, F.tanh,
    torch.tanh, torch.Tensor.tanh, F.silu, F.gelu, F.elu, F.leaky_relu, F.softplus,
    F.hardswish, F.mish,
}  # fmt: skip


class _Rescale(torch.autograd.Function):
    """``f(z)`` forward on ``[x; ref]``; backward ``(f(z) - f(z_ref)) / (z - z_ref)`` for
    both halves (the reference half gets the same multipliers)."""

    @staticmethod
    def forward(ctx, z, function, half):
        with torch.no_grad():
            y = function(z)
        ctx.function, ctx.half = function, half
        ctx.save_for_backward(z, y)
        return y

    @staticmethod
    def backward(ctx, upstream):
        z, y = ctx.saved_tensors
        half = ctx.half
        delta_in, delta_out = z[:half] - z[half:], y[:half] - y[half:]
        with torch.enable_grad():
            probe = z[:half].detach().requires_grad_(True)
            (derivative,) = torch.autograd.grad(ctx.function(probe).sum(), probe)
        small = delta_in.abs() < EPSILON
        ratio = torch.where(small, derivative, delta_out / torch.where(small, 1.0, delta_in))
        return upstream * torch.cat([ratio, ratio]), None, None


class _RescaleMaxPool(torch.autograd.Function):
    """Max pooling under the rescale rule: each window's ``y - y_ref`` goes to the
    argmax of the input (``max(y, y_ref) - y_ref``) and of the reference
    (``y - max(y, y_ref)``), then divided by the input's difference (Shrikumar et al.
    2017, Sec. 3.5; as Captum)."""

    @staticmethod
    def forward(ctx, z, pool, half):
        with torch.no_grad():
            y = pool(z)
        ctx.pool, ctx.half = pool, half
        ctx.save_for_backward(z, y)
        return y

    @staticmethod
    def backward(ctx, upstream):
        z, y = ctx.saved_tensors
        half, pool = ctx.half, ctx.pool
        y_in, y_ref = y[:half], y[half:]
        cross = torch.maximum(y_in, y_ref)
        g = upstream[:half]
        with torch.enable_grad():
            probe = z.detach().requires_grad_(True)
            pooled = pool(probe)
            weights = torch.cat([g * (cross - y_ref), g * (y_in - cross)])
            (placed,) = torch.autograd.grad(pooled, probe, weights)
            (plain,) = torch.autograd.grad(pool(probe), probe, upstream)
        contributions = placed[:half] + placed[half:]
        delta_in = z[:half] - z[half:]
        small = delta_in.abs() < EPSILON
        ratio = torch.where(small, plain[:half], contributions / torch.where(small, 1.0, delta_in))
        return torch.cat([ratio, plain[half:]]), None, None


class _DeepLiftMode(TorchFunctionMode):
    """Routes the element-wise activations and max pooling of one ``[x; ref]`` call
    through the rescale rule."""

    def __init__(self, half: int):
        super().__init__()
        self.half = half
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _ELEMENTWISE and args and torch.is_tensor(args[0]):
            kwargs.pop("inplace", None)
            rest = args[1:]
            self.count += 1
            return _Rescale.apply(args[0], lambda t: func(t, *rest, **kwargs), self.half)
        if func is F.max_pool2d and not kwargs.get("return_indices", False):
            rest = args[1:]
            self.count += 1
            return _RescaleMaxPool.apply(args[0], lambda t: func(t, *rest, **kwargs), self.half)
        return func(*args, **kwargs)


def reference_gradients(adapter, images: np.ndarray, targets, references: np.ndarray, rule: str):
    """``(multipliers N×H×W×3, scores N)`` under ``rule`` for a
    :class:`~salmap.models.torch_adapter.TorchAdapter`: the model runs once on
    ``[images; references]``; scores are the images' own."""
    if rule not in REFERENCE_RULES:
        raise UsageError(f"unknown reference rule {rule!r}")
    if references is None or np.shape(references) != np.shape(images):
        raise UsageError(f"the {rule} rule needs one reference image per image")
    count = len(images)
    both = np.concatenate([images, np.asarray(references, np.float32)])
    mode = _DeepLiftMode(count)
    with adapter._session(grad=True), mode:
        x = adapter._input(both, grad=True)
        outputs = adapter._outputs(x)
        if not torch.is_tensor(outputs):
            raise ModelError(f"the {rule} rule needs a model with one tensor output")
        values = adapter._target_scores(outputs[:count], targets)
        (grads,) = torch.autograd.grad(values.sum(), x)
    if mode.count == 0:
        raise ModelError(
            f"model {adapter.name!r} has no nonlinearity the {rule} rule knows; its "
            "multipliers are the gradients"
        )
    grads = grads[:count].detach().permute(0, 2, 3, 1).float().cpu().numpy()
    return np.ascontiguousarray(grads), values.detach().float().cpu().numpy()

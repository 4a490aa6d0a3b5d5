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

__all__ = ["REFERENCE_RULES", "reference_gradients", "LRP_RULES", "lrp_relevance"]

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


# -- Layer-wise relevance propagation --------------------------------------------------------
#: LRP rules (every convolution and linear layer), and composites: ``lrp-epsilon-plus``
#: (z+ on convolutions, epsilon on linear layers) and ``lrp-epsilon-gamma-box`` (z^B on
#: the first convolution, gamma on the other convolutions, epsilon on linear layers).
LRP_RULES = (
    "lrp-epsilon",
    "lrp-gamma",
    "lrp-alpha1beta0",
    "lrp-epsilon-plus",
    "lrp-epsilon-gamma-box",
)
#: The rules' constants (Montavon et al. 2019; zennit's defaults).
LRP_EPSILON, LRP_GAMMA, LRP_STABILIZER = 1e-6, 0.25, 1e-6


def _stabilized(values, epsilon):
    """``z + epsilon sign(z)``, with sign(0) = 1, so no division by zero."""
    return values + epsilon * torch.where(values >= 0, 1.0, -1.0)


def _modified(weight, bias, gamma: float, sign: int, keep_bias: bool):
    """``w + gamma w+`` (sign 1) or ``w + gamma w-`` (sign -1); bias alike or zero."""
    part = (lambda p: p.clamp(min=0)) if sign > 0 else (lambda p: p.clamp(max=0))
    w = weight + gamma * part(weight)
    b = None if bias is None or not keep_bias else bias + gamma * part(bias)
    return w, b


def _relevance(rule, op, x, weight, bias, relevance, bounds):
    """The input relevance of one linear layer ``z = op(x, weight, bias)`` under ``rule``
    (Montavon et al. 2019, Sec. 10.2: LRP-epsilon Eq. 10.2, LRP-gamma Eq. 10.3, LRP-alpha1beta0
    (z+) Eq. 10.4, z^B Eq. 10.6), extended to signed inputs by splitting them in their
    positive and negative parts."""
    x = x.detach().requires_grad_(True)

    def pulled(inputs_and_params, denominator, gate=None):
        """sum_i input_i * d op(input_i, w_i, b_i) / d input_i weighted by R / den."""
        share = relevance / _stabilized(denominator, LRP_STABILIZER)
        if gate is not None:
            share = share * gate
        total = 0
        for inp, w, b in inputs_and_params:
            inp = inp.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(op(inp, w, b), inp, share)
            total = total + inp * grad
        return total

    if rule == "epsilon":
        z = op(x, weight, bias)
        return x * torch.autograd.grad(z, x, relevance / _stabilized(z, LRP_EPSILON))[0]
    positive, negative = x.clamp(min=0), x.clamp(max=0)
    if rule == "alpha1beta0":
        w_plus, w_minus = weight.clamp(min=0), weight.clamp(max=0)
        b_plus = None if bias is None else bias.clamp(min=0)
        pairs = [(positive, w_plus, b_plus), (negative, w_minus, None)]
        return pulled(pairs, op(positive, w_plus, b_plus) + op(negative, w_minus, None))
    if rule == "gamma":
        z = op(x, weight, bias)
        up = [(positive, *_modified(weight, bias, LRP_GAMMA, 1, True))]
        up.append((negative, *_modified(weight, bias, LRP_GAMMA, -1, False)))
        down = [(positive, *_modified(weight, bias, LRP_GAMMA, -1, True))]
        down.append((negative, *_modified(weight, bias, LRP_GAMMA, 1, False)))
        up_z = sum(op(i, w, b) for i, w, b in up)
        down_z = sum(op(i, w, b) for i, w, b in down)
        return pulled(up, up_z, z > 0) + pulled(down, down_z, z < 0)
    low, high = bounds
    w_plus, w_minus = weight.clamp(min=0), weight.clamp(max=0)
    z = op(x, weight, bias) - op(low, w_plus, None) - op(high, w_minus, None)
    share = relevance / _stabilized(z, LRP_STABILIZER)
    total = 0
    for inp, w, b, sign in (
        (x, weight, bias, 1),
        (low, w_plus, None, -1),
        (high, w_minus, None, -1),
    ):
        inp = inp.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(op(inp, w, b), inp, share)
        total = total + sign * inp * grad
    return total


class _LrpLayer(torch.autograd.Function):
    """A convolution or linear layer whose backward turns the incoming gradient ``g``
    (relevance ``z g``) into ``R_in / x`` for the layer's rule, so that relevance is
    ``value × gradient`` at every tensor: ReLUs, max pooling, average pooling and
    reshapes then pass it on as LRP-0 does."""

    @staticmethod
    def forward(ctx, x, weight, bias, op, rule, bounds):
        with torch.no_grad():
            z = op(x, weight, bias)
        ctx.op, ctx.rule, ctx.bounds = op, rule, bounds
        # z is recomputed in backward: an in-place ReLU may overwrite the output.
        ctx.save_for_backward(x, weight, bias if bias is not None else torch.zeros(0))
        ctx.has_bias = bias is not None
        return z

    @staticmethod
    def backward(ctx, upstream):
        x, weight, bias = ctx.saved_tensors
        bias = bias if ctx.has_bias else None
        with torch.no_grad():
            z = ctx.op(x, weight, bias)
        with torch.enable_grad():
            relevance = _relevance(ctx.rule, ctx.op, x, weight, bias, z * upstream, ctx.bounds)
        safe = torch.where(x == 0, 1.0, x)
        return torch.where(x == 0, 0.0, relevance / safe), None, None, None, None, None


class _LrpMode(TorchFunctionMode):
    """Routes every ``conv2d`` and ``linear`` call through its layer's LRP rule."""

    def __init__(self, composite: str, bounds):
        super().__init__()
        self.composite, self.bounds, self.convolutions = composite, bounds, 0
        self.last = None

    def _rule(self, func) -> str:
        name = self.composite.removeprefix("lrp-")
        if func is F.linear:
            return "epsilon" if name in ("epsilon-plus", "epsilon-gamma-box") else name
        self.convolutions += 1
        if name == "epsilon-plus":
            return "alpha1beta0"
        if name == "epsilon-gamma-box":
            return "zb" if self.convolutions == 1 else "gamma"
        return name

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (F.conv2d, F.linear) and torch.is_tensor(args[0]):
            x, weight = args[0], args[1] if len(args) > 1 else kwargs.pop("weight")
            bias = args[2] if len(args) > 2 else kwargs.pop("bias", None)
            rest = args[3:]

            def op(inp, w, b, func=func, rest=rest, kwargs=kwargs):
                return func(inp, w, b, *rest, **kwargs)

            rule = self._rule(func)
            bounds = self.bounds if rule == "zb" else None
            output = _LrpLayer.apply(x, weight, bias, op, rule, bounds)
            self.last = (output, x, weight, bias, op, rule, bounds)
            return output
        if func is F.batch_norm and self.last is not None and args[0] is self.last[0]:
            return self._merged(*args, **kwargs)
        return func(*args, **kwargs)

    def _merged(self, values, mean, variance, weight=None, bias=None, training=False, *rest, **kw):
        """Batch normalisation right after a convolution, folded into it (canonisation:
        the rule sees one affine layer, Montavon et al. 2019, Sec. 10.3)."""
        if training:
            raise ModelError("LRP needs batch normalisation in eval mode")
        epsilon = kw.get("eps", rest[1] if len(rest) > 1 else 1e-5)
        _, x, conv_weight, conv_bias, op, rule, bounds = self.last
        scale = torch.rsqrt(variance + epsilon)
        scale = scale if weight is None else scale * weight
        shift = -mean * scale + (0.0 if bias is None else bias)
        merged_bias = shift if conv_bias is None else conv_bias * scale + shift
        shape = (-1,) + (1,) * (conv_weight.dim() - 1)
        return _LrpLayer.apply(x, conv_weight * scale.view(shape), merged_bias, op, rule, bounds)


def lrp_relevance(adapter, images: np.ndarray, targets, rule: str):
    """``(relevance N×H×W×3, scores N)`` under an LRP rule for a TorchAdapter: the
    relevance of each model input value (the score distributed over the preprocessed
    input, ``z^B`` bounded by the preprocessed black and white images), brought to the
    image's pixels (resized, total kept)."""
    if rule not in LRP_RULES:
        raise UsageError(f"unknown LRP rule {rule!r}")
    count, height, width = images.shape[:3]
    with adapter._session(grad=True):
        resized = adapter._resized(adapter._input(images))
        model_input = adapter._preprocess(resized).detach().requires_grad_(True)
        bounds = (
            adapter._preprocess(torch.zeros_like(resized)),
            adapter._preprocess(torch.ones_like(resized)),
        )
        mode = _LrpMode(rule, tuple(b.detach() for b in bounds))
        with mode:
            outputs = adapter._module_outputs(model_input)
        if not torch.is_tensor(outputs):
            raise ModelError(f"the {rule} rule needs a model with one tensor output")
        values = adapter._target_scores(outputs, targets)
        (grads,) = torch.autograd.grad(values.sum(), model_input)
        relevance = (model_input * grads).detach()
    if tuple(relevance.shape[2:]) != (height, width):
        factor = relevance.shape[2] * relevance.shape[3] / (height * width)
        relevance = F.interpolate(relevance, size=(height, width), mode="bilinear") * factor
    relevance = relevance.permute(0, 2, 3, 1).float().cpu().numpy()
    return np.ascontiguousarray(relevance), values.detach().float().cpu().numpy()

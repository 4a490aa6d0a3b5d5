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


_RECTIFIERS = {
    F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_
}  # fmt: skip


def _rectifier_derivative(z, y):
    return (z > 0).to(z.dtype)  # as autograd's ReLU: 0 at 0


def _sigmoid_derivative(z, y):
    return y * (1 - y)


def _tanh_derivative(z, y):
    return 1 - y * y


#: Derivatives known in closed form from ``z`` and ``f(z)``; others ask autograd.
_DERIVATIVES = (
    {function: _rectifier_derivative for function in _RECTIFIERS}
    | {
        function: _sigmoid_derivative
        for function in (F.sigmoid, torch.sigmoid, torch.Tensor.sigmoid)
    }
    | {function: _tanh_derivative for function in (F.tanh, torch.tanh, torch.Tensor.tanh)}
)


def _both_halves(upstream, ratio):
    """``upstream * [ratio; ratio]`` without building the concatenation."""
    half = ratio.shape[0]
    return (upstream.unflatten(0, (2, half)) * ratio).flatten(0, 1)


class _Rescale(torch.autograd.Function):
    """``f(z)`` forward on ``[x; ref]``; backward ``(f(z) - f(z_ref)) / (z - z_ref)`` for
    both halves (the reference half gets the same multipliers). The multipliers are
    computed in the forward, from its own values, so the backward is one product."""

    @staticmethod
    def forward(ctx, z, function, half, derivative):
        with torch.no_grad():
            y = function(z)
            delta_in = z[:half] - z[half:]
            ratio = (y[:half] - y[half:]).div_(delta_in)
            # One reduction pass (min |delta|) tells whether any value needs the
            # derivative; usually none does, and the fix-up passes are skipped.
            if delta_in.numel() and float(delta_in.abs_().amin()) < EPSILON:
                small = delta_in < EPSILON
                if derivative is not None:
                    plain = derivative(z[:half], y[:half])
                else:
                    with torch.enable_grad():
                        probe = z[:half].detach().requires_grad_(True)
                        (plain,) = torch.autograd.grad(function(probe).sum(), probe)
                ratio = torch.where(small, plain, ratio)
        ctx.save_for_backward(ratio)
        return y

    @staticmethod
    def backward(ctx, upstream):
        (ratio,) = ctx.saved_tensors
        return _both_halves(upstream, ratio), None, None, None


_POOL_OPTIONS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")


def _pairs(value):
    return [value] * 2 if isinstance(value, int) else list(value)


class _RescaleMaxPool(torch.autograd.Function):
    """Max pooling under the rescale rule: each window's ``y - y_ref`` goes to the
    argmax of the input (``max(y, y_ref) - y_ref``) and of the reference
    (``y - max(y, y_ref)``), then divided by the input's difference (Shrikumar et al.
    2017, Sec. 3.5; Captum's rule too, though Captum drops it where a ReLU feeds the
    pooling, as in ResNet's stem: tests/test_rules_torch.py). Contributions add up to
    ``f(x) - f(ref)``. The argmaxes come from the forward: the backward routes
    gradients with them, without pooling again."""

    @staticmethod
    def forward(ctx, z, options, half):
        with torch.no_grad():
            y, indices = F.max_pool2d(z, **options, return_indices=True)
            y_in, y_ref = y[:half], y[half:]
            cross = torch.maximum(y_in, y_ref)
            to_input, to_reference = cross - y_ref, y_in - cross
            delta_in = z[:half] - z[half:]
            small = None  # as in _Rescale: the mask only where some difference is tiny
            if delta_in.numel() and float(delta_in.abs().amin()) < EPSILON:
                small = delta_in.abs() < EPSILON
                delta_in = torch.where(small, 1.0, delta_in)
        kernel = _pairs(options["kernel_size"])
        stride = options.get("stride")
        ctx.pool = (
            kernel,
            _pairs(stride) if stride not in (None, [], ()) else kernel,
            _pairs(options.get("padding", 0)),
            _pairs(options.get("dilation", 1)),
            bool(options.get("ceil_mode", False)),
        )
        ctx.half, ctx.has_small = half, small is not None
        saved = (z, indices, to_input, to_reference, delta_in)
        ctx.save_for_backward(*saved, *((small,) if small is not None else ()))
        return y

    @staticmethod
    def backward(ctx, upstream):
        z, indices, to_input, to_reference, delta_in, *small = ctx.saved_tensors
        half = ctx.half

        def routed(gradient, rows):  # each window's gradient to its argmax, summed
            return torch.ops.aten.max_pool2d_with_indices_backward(
                gradient, z[rows], *ctx.pool, indices[rows]
            )

        inputs, references = slice(None, half), slice(half, None)
        g = upstream[inputs]
        contributions = routed(g * to_input, inputs).add_(routed(g * to_reference, references))
        if ctx.has_small:
            ratio = torch.where(small[0], routed(g, inputs), contributions.div_(delta_in))
        else:
            ratio = contributions.div_(delta_in)
        return torch.cat([ratio, routed(upstream[references], references)]), None, None


_HANDLED = _ELEMENTWISE | {F.max_pool2d}


class _DeepLiftMode(TorchFunctionMode):
    """Routes the element-wise activations and max pooling of one ``[x; ref]`` call
    through the rescale rule."""

    def __init__(self, half: int):
        super().__init__()
        self.half = half
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func not in _HANDLED or not args or not torch.is_tensor(args[0]):
            return func(*args, **(kwargs or {}))  # every other call: as little work as can be
        kwargs = dict(kwargs or {})
        if func in _ELEMENTWISE:
            # The rule keeps its input: in-place variants run out of place (the module
            # gets the result as its output either way).
            kwargs.pop("inplace", None)
            rest = tuple(arg for arg in args[1:] if not isinstance(arg, bool))  # inplace
            function = torch.relu if func in _RECTIFIERS else func
            self.count += 1
            return _Rescale.apply(
                args[0], lambda t: function(t, *rest, **kwargs), self.half, _DERIVATIVES.get(func)
            )
        if func is F.max_pool2d:
            options = dict(zip(_POOL_OPTIONS, args[1:6], strict=False)) | kwargs
            returns_indices = args[6] if len(args) > 6 else options.pop("return_indices", False)
            if not returns_indices:
                self.count += 1
                return _RescaleMaxPool.apply(args[0], options, self.half)
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
    with adapter._session(grad=True):
        with mode:
            x = adapter._input(both, grad=True)
            outputs = adapter._outputs(x)
            if not torch.is_tensor(outputs):
                raise ModelError(f"the {rule} rule needs a model with one tensor output")
            values = adapter._target_scores(outputs[:count], targets)
        (grads,) = torch.autograd.grad(values.sum(), x)  # outside the mode
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

_CONV_OPTIONS = ("stride", "padding", "dilation", "groups")
#: Calls that read a tensor's metadata only: they neither change nor consume its values.
_METADATA = {
    torch.Tensor.dim, torch.Tensor.size, torch.Tensor.numel, torch.Tensor.is_floating_point,
    torch.Tensor.__len__, torch.Tensor.shape.__get__, torch.Tensor.ndim.__get__,
    torch.Tensor.dtype.__get__, torch.Tensor.device.__get__, torch.Tensor.requires_grad.__get__,
}  # fmt: skip


def _stabilized(values, epsilon):
    """``z + epsilon sign(z)``, with sign(0) = 1, so no division by zero."""
    return values + epsilon * torch.where(values >= 0, 1.0, -1.0)


def _modified(weight, bias, gamma: float, sign: int, keep_bias: bool):
    """``w + gamma w+`` (sign 1) or ``w + gamma w-`` (sign -1); bias alike or zero."""
    part = (lambda p: p.clamp(min=0)) if sign > 0 else (lambda p: p.clamp(max=0))
    w = weight + gamma * part(weight)
    b = None if bias is None or not keep_bias else bias + gamma * part(bias)
    return w, b


class _Layer:
    """One convolution or linear layer ``z = op(x, weight, bias)`` under an LRP rule
    (Montavon et al. 2019, Sec. 10.2: LRP-epsilon Eq. 10.2, LRP-gamma Eq. 10.3,
    LRP-alpha1beta0 (z+) Eq. 10.4, z^B Eq. 10.6; signed inputs split in their positive
    and negative parts).

    Every rule has the form ``R_in = sum_k x_k * W_k^T (R_out * c_k)`` over parts ``k``
    (an input part ``x_k``: x, its positive or its negative values, or a bound; a
    weight ``W_k``), with ``c_k`` a ratio of forward values. :meth:`prepare` computes
    the ``c_k`` (times ``z``, since ``R_out = z * upstream``) and the modified weights
    once, from the forward's own ``z``; the backward is then one transposed
    convolution (or matrix product) per part, without recomputing any layer (the
    modified weights are made again: see :meth:`modified`).

    ``scale`` (per output channel, >= 0) is a folded batch normalisation kept out of the
    weights: ``(s w)+ = s w+`` for ``s >= 0``, so every modified weight is the
    convolution's own, modified, and ``s`` multiplies activations instead (cheaper than
    a pass over the weights at small batches).
    """

    def __init__(self, func, weight, bias, options: dict, rule: str, bounds, scale=None):
        self.func, self.weight, self.bias, self.options = func, weight, bias, options
        self.rule, self.bounds, self.scale = rule, bounds, scale
        self.merged = False  # a batch normalisation folded in
        self.output = None  # handed to _LrpLayer.forward, then dropped (no cycle)
        self.terms = None  # (which input values, which weight, index of the ratio)
        self.ratios = None

    def _channels(self, values):
        """A per-output-channel vector shaped to broadcast over this layer's outputs."""
        return values.view((-1,) + (1,) * (self.weight.dim() - 2))

    def op(self, x, weight, bias):
        """The layer with another weight and bias (the folded scale applied)."""
        if self.scale is None:
            return self.func(x, weight, bias, **self.options)
        values = self.func(x, weight, None, **self.options)
        scale = self._channels(self.scale)
        if bias is None:
            return values * scale
        return torch.addcmul(self._channels(bias), values, scale)

    def modified(self, name: str):
        """The layer's weight (``weight``), its positive or negative part (``plus``,
        ``minus``), or ``w + gamma w+`` / ``w + gamma w-`` (``more``, ``less``). Made
        again where the backward needs it rather than kept from the forward: a pass over
        the weights costs less than keeping every layer's copy alive until the
        backward (fresh memory for all of them on every call)."""
        weight = self.weight
        if name == "weight":
            return weight
        if name in ("plus", "minus"):
            return weight.clamp(min=0) if name == "plus" else weight.clamp(max=0)
        return _modified(weight, None, LRP_GAMMA, 1 if name == "more" else -1, False)[0]

    def prepare(self, x, z) -> None:
        """The ratios and weights of the backward, from the input ``x`` and the forward's
        output ``z`` (before anything changes it in place)."""
        self.terms, self.ratios = self._rule_terms(x, z)
        if self.scale is not None:  # W_k^T of the merged weight is W_k^T (s * signal)
            scale = self._channels(self.scale)
            self.ratios = [ratio.mul_(scale) for ratio in self.ratios]

    def _rule_terms(self, x, z):
        weight, bias, rule = self.weight, self.bias, self.rule
        if rule == "epsilon":
            return [("nonzero", "weight", 0)], [z / _stabilized(z, LRP_EPSILON)]
        if rule == "zb":
            low, high = self.bounds
            bounded = z - self.op(low, self.modified("plus"), None)
            bounded = bounded - self.op(high, self.modified("minus"), None)
            terms = [(x, "weight", 0), (low, "plus", 0), (high, "minus", 0)]
            return terms, [z / _stabilized(bounded, LRP_STABILIZER)]
        # Inputs after a rectifier have no negative part: its weights and its
        # convolutions are skipped.
        signed = bool(x.min() < 0) if x.numel() else False
        positive, negative = (x.clamp(min=0), x.clamp(max=0)) if signed else (x, None)
        if rule == "alpha1beta0":
            b_plus = None if bias is None else bias.clamp(min=0)
            denominator = self.op(positive, self.modified("plus"), b_plus)
            if not signed:  # x, w+, b+ >= 0: the denominator is >= 0, its sign is +
                return [("positive", "plus", 0)], [z / denominator.add_(LRP_STABILIZER)]
            denominator = denominator + self.op(negative, self.modified("minus"), None)
            terms = [("positive", "plus", 0), ("negative", "minus", 0)]
            return terms, [z / _stabilized(denominator, LRP_STABILIZER)]
        # gamma: z > 0 spread by w + gamma w+ on x+ (and w + gamma w- on x-); z < 0 the
        # other way round.
        more, more_bias = _modified(weight, bias, LRP_GAMMA, 1, True)
        less, less_bias = _modified(weight, bias, LRP_GAMMA, -1, True)
        up, down = self.op(positive, more, more_bias), self.op(positive, less, less_bias)
        terms = [("positive", "more", 0), ("positive", "less", 1)]
        if signed:
            up = up + self.op(negative, less, None)
            down = down + self.op(negative, more, None)
            terms += [("negative", "less", 0), ("negative", "more", 1)]
        ratios = [
            torch.where(z > 0, z / _stabilized(up, LRP_STABILIZER), 0.0),
            torch.where(z < 0, z / _stabilized(down, LRP_STABILIZER), 0.0),
        ]
        return terms, ratios

    def _transposed(self, signal, weight, x):
        """``W^T signal``: the gradient of ``op(x, weight)`` for the output gradient
        ``signal``, without building a graph."""
        if self.func is F.linear:
            return torch.matmul(signal, weight.to(signal.dtype))
        options = self.options
        padding = options.get("padding", 0)
        if isinstance(padding, str):  # "same" may pad unevenly: let autograd work it out
            with torch.enable_grad():
                probe = x.detach().requires_grad_(True)
                return torch.autograd.grad(self.op(probe, weight, None), probe, signal)[0]
        dims = x.dim() - 2

        def tuple_of(value):
            return [value] * dims if isinstance(value, int) else list(value)

        return torch.ops.aten.convolution_backward(
            signal, x, weight, None, tuple_of(options.get("stride", 1)), tuple_of(padding),
            tuple_of(options.get("dilation", 1)), False, [0] * dims, options.get("groups", 1),
            [True, False, False],
        )[0]  # fmt: skip

    def input_gradient(self, x, upstream):
        """``R_in / x`` (0 where ``x`` is 0) for the upstream gradient ``R_out / z``."""
        signals = [upstream * ratio for ratio in self.ratios]
        if self.rule == "zb":
            relevance = 0
            for sign, (values, name, index) in zip((1, -1, -1), self.terms, strict=True):
                gradient = self._transposed(signals[index], self.modified(name), x)
                relevance = relevance + sign * values * gradient
            safe = torch.where(x == 0, 1.0, x)
            return torch.where(x == 0, 0.0, relevance / safe)
        parts = {}
        for which, name, index in self.terms:
            gradient = self._transposed(signals[index], self.modified(name), x)
            parts[which] = gradient if which not in parts else parts[which] + gradient
        if "nonzero" in parts:
            return torch.where(x == 0, 0.0, parts["nonzero"])
        result = torch.where(x > 0, parts["positive"], 0.0)
        if "negative" in parts:
            result = torch.where(x < 0, parts["negative"], result)
        return result


class _LrpLayer(torch.autograd.Function):
    """A convolution or linear layer whose backward turns the incoming gradient ``g``
    (relevance ``z g``) into ``R_in / x`` for the layer's rule, so that relevance is
    ``value × gradient`` at every tensor: ReLUs, max pooling, average pooling and
    reshapes then pass it on as LRP-0 does. The forward's output is computed by
    :class:`_LrpMode` (``layer.output``)."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        ctx.save_for_backward(x)
        output, layer.output = layer.output, None
        return output

    @staticmethod
    def backward(ctx, upstream):
        (x,) = ctx.saved_tensors
        return ctx.layer.input_gradient(x, upstream), None


class _LrpMode(TorchFunctionMode):
    """Routes every ``conv2d`` and ``linear`` call through its layer's LRP rule.

    The rule's ratios need the layer's output as the forward computed it, and a batch
    normalisation right after a convolution changes the rule's weights: so the last
    layer stays pending until a call could change its output in place (or consume it
    otherwise than through that batch normalisation), or the forward ends
    (:meth:`finish`); then its ratios are computed once.
    """

    def __init__(self, composite: str, bounds):
        super().__init__()
        self.composite, self.bounds, self.convolutions = composite, bounds, 0
        self.pending = None  # (layer, its input, its output)

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

    def finish(self) -> None:
        """Prepare the pending layer's backward (its output is still the forward's)."""
        if self.pending is not None:
            layer, x, z = self.pending
            self.pending = None
            layer.prepare(x.detach(), z.detach())

    def _touches_pending(self, func, args, kwargs) -> bool:
        if self.pending is None or func in _METADATA:
            return False
        output = self.pending[2]
        for value in (*args, *kwargs.values()):
            for item in value if isinstance(value, (list, tuple)) else (value,):
                if torch.is_tensor(item) and (item is output or item._base is output):
                    return True
        return False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        pending = self.pending
        if (
            func is F.batch_norm
            and pending is not None
            and args
            and args[0] is pending[2]
            and not pending[0].merged  # one normalisation per layer, as zennit
            and (pending[0].func is F.conv2d or pending[2].dim() == 2)
        ):
            return self._merged(*args, **kwargs)
        if self._touches_pending(func, args, kwargs):
            self.finish()
        if func in (F.conv2d, F.linear) and args and torch.is_tensor(args[0]):
            x, weight = args[0], args[1] if len(args) > 1 else kwargs.pop("weight")
            bias = args[2] if len(args) > 2 else kwargs.pop("bias", None)
            options = dict(zip(_CONV_OPTIONS, args[3:], strict=False)) | kwargs
            rule = self._rule(func)
            layer = _Layer(func, weight, bias, options, rule, self.bounds if rule == "zb" else None)
            return self._apply(layer, x)
        return func(*args, **kwargs)

    def _apply(self, layer, x, output=None):
        self.finish()
        with torch.no_grad():
            layer.output = layer.op(x, layer.weight, layer.bias) if output is None else output
        output = _LrpLayer.apply(x, layer)
        self.pending = (layer, x, output)
        return output

    def _merged(self, values, mean, variance, weight=None, bias=None, training=False, *rest, **kw):
        """Batch normalisation right after a convolution, folded into it (canonisation:
        the rule sees one affine layer, Montavon et al. 2019, Sec. 10.3). The
        convolution's own rule is never prepared: the merged layer replaces it."""
        if training:
            raise ModelError("LRP needs batch normalisation in eval mode")
        epsilon = kw.get("eps", rest[1] if len(rest) > 1 else 1e-5)
        convolution, x, _ = self.pending
        self.pending = None
        with torch.no_grad():  # the model's own values, not a second convolution
            output = F.batch_norm(values.detach(), mean, variance, weight, bias, False, *rest, **kw)
        conv_weight, conv_bias = convolution.weight, convolution.bias
        scale = torch.rsqrt(variance + epsilon)
        scale = scale if weight is None else scale * weight
        shift = -mean * scale + (0.0 if bias is None else bias)
        merged_bias = shift if conv_bias is None else conv_bias * scale + shift
        if bool((scale < 0).any()):  # (s w)+ is not s w+ where s < 0: merge the weight
            shape = (-1,) + (1,) * (conv_weight.dim() - 1)
            conv_weight, scale = conv_weight * scale.view(shape), None
        layer = _Layer(
            convolution.func, conv_weight, merged_bias, convolution.options,
            convolution.rule, convolution.bounds, scale,
        )  # fmt: skip
        layer.merged = True
        return self._apply(layer, x, output)


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
            mode.finish()
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

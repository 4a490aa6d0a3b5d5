"""Attention maps of vision transformers, with their gradients and LRP relevances.

While a :class:`AttentionMode` is active, every self-attention call of a PyTorch model
(``F.scaled_dot_product_attention`` — timm, and torchvision's
``nn.MultiheadAttention`` through ``F.multi_head_attention_forward``) is computed in
the open, ``A = softmax(q kᵀ / sqrt(d)) ; out = A v``, so that the attention
probabilities ``A`` (N×heads×T×T) of every block are tensors of the graph: read, and
differentiated with respect to. No hook is left on the model.

With ``relevance=True`` the mode also builds the graph so that one forward pass serves
two backward passes: while :attr:`AttentionMode.relevance_phase` is off, its
operations differentiate as usual (the gradients of the attention maps); while it is
on, they follow the rules of Chefer et al. (2021), written as modified gradients (the
relevance of a tensor is its value times the gradient arriving at it):

- linear layers (``F.linear``) use LRP-α1β0 on signed inputs, biases left out;
- layer norms, GELU/SiLU/tanh/sigmoid and the attention softmax pass relevance on
  unchanged (``R_in = R_out``);
- the two products of activations in attention (``q kᵀ`` and ``A v``) give each
  operand half of the relevance (``R_a = ½ a ⊙ ∂(z ⊙ R/z)/∂a``);
- a residual addition ``a + b`` splits relevance by the z-rule, then rescales each
  branch so that the two carry ``|ΣR_a| : |ΣR_b|`` of the output's total (per image);
- reshapes, token selection, concatenation, scaling by constants and other linear
  operations keep their gradients, which is LRP-0 (``R_in = x ⊙ ∂(z ⊙ R/z)/∂x``).

References
----------
H. Chefer, S. Gur, L. Wolf. Transformer Interpretability Beyond Attention
Visualization. CVPR 2021, Sec. 3 (relevance propagation, Eq. 1-10: the non-parametric
layers, the two-operand products and the residual normalisation).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F  # noqa: N812 - the universal alias
from torch.overrides import TorchFunctionMode

from salmap.errors import ModelError

__all__ = ["AttentionMode"]

#: Element-wise and normalising nonlinearities through which relevance passes unchanged.
_PASS = {
    F.layer_norm, F.group_norm, F.rms_norm, F.gelu, F.silu, F.tanh, torch.tanh,
    torch.Tensor.tanh, F.sigmoid, torch.sigmoid, torch.Tensor.sigmoid, F.softmax,
    torch.softmax, torch.Tensor.softmax, F.hardswish, F.mish, F.elu,
}  # fmt: skip

_ADD = {torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__, torch.add}

_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)


def _safe_divide(numerator, denominator):
    """``numerator / denominator``, zero where the denominator is zero."""
    return (numerator / denominator).nan_to_num_(0.0, 0.0, 0.0)


class _Pass(torch.autograd.Function):
    """``y = f(x)``; relevance backward ``g y / x``, so that ``x ⊙ g_in = y ⊙ g``:
    relevance passes unchanged. The gradient backward recomputes ``f`` (element-wise or
    normalising: cheap beside the linear layers)."""

    @staticmethod
    def forward(ctx, x, function, mode):
        with torch.no_grad():
            y = function(x)
        ctx.function, ctx.mode = function, mode
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, upstream):
        x, y = ctx.saved_tensors
        if ctx.mode.relevance_phase:
            return _safe_divide(upstream * y, x), None, None
        with torch.enable_grad():
            probe = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(ctx.function(probe), probe, upstream)
        return grad, None, None


class _HalfProduct(torch.autograd.Function):
    """``a @ b`` of two activations; in the relevance phase each operand gets half the
    gradient, so half the relevance."""

    @staticmethod
    def forward(ctx, a, b, mode):
        ctx.mode = mode
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, upstream):
        a, b = ctx.saved_tensors
        if ctx.mode.relevance_phase:
            upstream = 0.5 * upstream
        return upstream @ b.transpose(-1, -2), a.transpose(-1, -2) @ upstream, None


class _AlphaBeta(torch.autograd.Function):
    """``F.linear(x, w, b)``; relevance backward by LRP-α1β0 on signed inputs without
    the bias: ``R_in = x⁺ ⊙ (S w⁺) + x⁻ ⊙ (S w⁻)``, ``S = R_out / (x⁺ w⁺ᵀ + x⁻ w⁻ᵀ)``."""

    @staticmethod
    def forward(ctx, x, weight, bias, mode):
        with torch.no_grad():
            z = F.linear(x, weight, bias)
        ctx.mode = mode
        ctx.save_for_backward(x, weight, z)
        return z

    @staticmethod
    def backward(ctx, upstream):
        x, weight, z = ctx.saved_tensors
        if not ctx.mode.relevance_phase:
            return upstream @ weight, None, None, None
        positive, negative = ctx.mode.signed_parts(weight)
        activations = F.linear(x.clamp(min=0), positive) + F.linear(x.clamp(max=0), negative)
        share = _safe_divide(z * upstream, activations)
        # R_in / x: (S w+) where x > 0, (S w-) where x < 0.
        return torch.where(x >= 0, share @ positive, share @ negative), None, None, None


class _Residual(torch.autograd.Function):
    """``a + b`` (same shape); relevance backward: the z-rule shares ``a ⊙ g`` and
    ``b ⊙ g``, each rescaled per image so that the branches hold ``|ΣR_a| : |ΣR_b|``
    of the output's relevance ``Σ (a + b) ⊙ g``."""

    @staticmethod
    def forward(ctx, a, b, mode):
        ctx.mode = mode
        ctx.save_for_backward(a, b)
        return a + b

    @staticmethod
    def backward(ctx, upstream):
        if not ctx.mode.relevance_phase:
            return upstream, upstream, None
        a, b = ctx.saved_tensors
        axes = tuple(range(1, a.dim()))
        sum_a, sum_b = (a * upstream).sum(axes), (b * upstream).sum(axes)
        total = sum_a + sum_b
        weights = sum_a.abs() + sum_b.abs()
        shape = (-1,) + (1,) * (a.dim() - 1)
        factor_a = _safe_divide(_safe_divide(sum_a.abs(), weights) * total, sum_a)
        factor_b = _safe_divide(_safe_divide(sum_b.abs(), weights) * total, sum_b)
        return upstream * factor_a.view(shape), upstream * factor_b.view(shape), None


class AttentionMode(TorchFunctionMode):
    """Computes every self-attention of one forward pass in the open and keeps its
    probabilities in :attr:`maps` (one N×heads×T×T tensor per call, in call order).

    ``relevance=True`` also lets the backward pass follow Chefer et al.'s relevance
    rules (see the module docstring) while :attr:`relevance_phase` is on, and plain
    differentiation while it is off; the forward values are unchanged either way."""

    def __init__(self, relevance: bool = False):
        super().__init__()
        self.relevance = relevance
        self.relevance_phase = False
        self.maps: list[torch.Tensor] = []
        self._parts: dict[int, tuple] = {}

    def signed_parts(self, weight) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w⁺, w⁻)`` of a (frozen) weight, once per weight and forward pass."""
        key = id(weight)
        if key not in self._parts:
            self._parts[key] = (weight, weight.clamp(min=0), weight.clamp(max=0))
        return self._parts[key][1:]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self._sdpa(*args, **kwargs)
        if func is F.multi_head_attention_forward:
            return self._multi_head(*args, **kwargs)
        if self.relevance:
            if func is F.linear:
                return self._linear(*args, **kwargs)
            if func in _PASS and args and torch.is_tensor(args[0]) and args[0].requires_grad:
                rest = args[1:]
                return _Pass.apply(args[0], lambda t: func(t, *rest, **kwargs), self)
            if func in _ADD and self._residual(args, kwargs):
                return _Residual.apply(args[0], args[1], self)
        return func(*args, **kwargs)

    # -- the operations ------------------------------------------------------------------
    @staticmethod
    def _residual(args, kwargs) -> bool:
        """Whether an addition joins two branches of the graph (same shapes, both
        carrying gradients, no ``alpha``)."""
        return (
            len(args) == 2
            and not kwargs
            and all(torch.is_tensor(a) and a.requires_grad for a in args)
            and args[0].shape == args[1].shape
        )

    def _linear(self, x, weight, bias=None):
        if self.relevance and x.requires_grad:
            return _AlphaBeta.apply(x, weight, bias, self)
        return F.linear(x, weight, bias)

    def _product(self, a, b):
        return _HalfProduct.apply(a, b, self) if self.relevance else a @ b

    def _attend(self, q, k, v, mask=None, causal=False, scale=None):
        """``softmax(q kᵀ scale + mask) v`` on N×heads×T×d tensors; ``A`` is kept."""
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        logits = self._product(q, k.transpose(-1, -2)) * scale
        if causal:
            upper = torch.ones(logits.shape[-2:], dtype=torch.bool, device=q.device).triu(1)
            logits = logits.masked_fill(upper, float("-inf"))
        if mask is not None:
            logits = (
                logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool
                else logits + mask
            )  # fmt: skip
        if self.relevance and logits.requires_grad:
            attention = _Pass.apply(logits, lambda t: t.softmax(-1), self)
        else:
            attention = logits.softmax(-1)
        self.maps.append(attention)
        return self._product(attention, v)

    def _sdpa(
        self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
        enable_gqa=False,
    ):  # fmt: skip
        if key.shape[-3] != query.shape[-3]:
            if not enable_gqa:
                raise ModelError("attention with different head counts needs enable_gqa")
            repeat = query.shape[-3] // key.shape[-3]
            key = key.repeat_interleave(repeat, -3)
            value = value.repeat_interleave(repeat, -3)
        return self._attend(query, key, value, attn_mask, is_causal, scale)

    def _multi_head(self, *args, **kwargs):
        """``F.multi_head_attention_forward`` in the open, for self-attention with one
        packed or three separate projections (inputs L×N×E, as ``nn.MultiheadAttention``
        passes them)."""
        call = _MHA_SIGNATURE.bind(*args, **kwargs)
        call.apply_defaults()
        p = call.arguments
        unsupported = [
            name
            for name in ("bias_k", "bias_v", "key_padding_mask", "static_k", "static_v")
            if p[name] is not None
        ] + [name for name in ("add_zero_attn",) if p[name]]
        if unsupported or p["query"].dim() != 3:
            raise ModelError(
                "attention maps are read from plain multi-head self-attention; this "
                f"nn.MultiheadAttention uses {', '.join(unsupported) or 'unbatched inputs'}"
            )
        query, key, value = p["query"], p["key"], p["value"]
        length, count, embed = query.shape
        heads = p["num_heads"]
        if p["use_separate_proj_weight"]:
            weights = (p["q_proj_weight"], p["k_proj_weight"], p["v_proj_weight"])
        else:
            weights = p["in_proj_weight"].chunk(3)
        biases = p["in_proj_bias"].chunk(3) if p["in_proj_bias"] is not None else (None,) * 3
        if query is key and key is value and not p["use_separate_proj_weight"]:
            q, k, v = self._linear(query, p["in_proj_weight"], p["in_proj_bias"]).chunk(3, -1)
        else:
            q, k, v = (
                self._linear(x, w, b)
                for x, w, b in zip((query, key, value), weights, biases, strict=True)
            )

        def split(t):  # L×N×E -> N×heads×L×d
            return t.reshape(t.shape[0], count, heads, embed // heads).permute(1, 2, 0, 3)

        mask = p["attn_mask"]
        if mask is not None and mask.dim() == 3:  # (N·heads)×L×S
            mask = mask.reshape(count, heads, *mask.shape[1:])
        out = self._attend(split(q), split(k), split(v), mask, p["is_causal"] and mask is None)
        out = out.permute(2, 0, 1, 3).reshape(length, count, embed)
        out = self._linear(out, p["out_proj_weight"], p["out_proj_bias"])
        if not p["need_weights"]:
            return out, None
        attention = self.maps[-1]
        return out, attention.mean(1) if p["average_attn_weights"] else attention

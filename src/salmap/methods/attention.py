"""Transformer methods: attention rollout and transformer attribution.

Both read every self-attention of a vision transformer through the adapter's
``attention_maps`` (capability ``attention``: PyTorch ViT, DeiT and their kin), fold
each block's N×heads×T×T maps into one token-to-token matrix with the residual path
added, multiply the blocks' matrices from the first to the last, and read the class
token's row over the patch tokens (the mean row where the model has no front
token) as an h×w map, resized to the image.
"""

from __future__ import annotations

import numpy as np

from salmap.errors import UsageError
from salmap.maps import resize_maps
from salmap.methods.engine import chunk_size, map_batches
from salmap.methods.registry import method
from salmap.models.base import require
from salmap.targets import as_targets

__all__ = ["attention_rollout", "transformer_attribution", "rolled_out"]

#: How attention rollout fuses heads (Abnar & Zuidema average them; the mean in
#: float64, without a float64 copy of every head).
HEAD_FUSIONS = {
    "mean": lambda values, axis: values.mean(axis=axis, dtype=np.float64),
    "max": np.max,
    "min": np.min,
}


def rolled_out(blocks: list[np.ndarray], front: int, grid: tuple[int, int]) -> np.ndarray:
    """The product ``M_L ··· M_1`` of per-block N×T×T matrices (block 1 first), read
    at the class token's row (the mean row when ``front`` is 0) over the patch tokens:
    N×h×w float64. Only that row is carried, from the last block down (vector times
    matrix: O(L·T²), not O(L·T³))."""
    count, tokens = blocks[0].shape[:2]
    row = np.zeros((count, tokens))
    if front:
        row[:, 0] = 1.0
    else:
        row[:] = 1.0 / tokens
    for matrix in reversed(blocks):
        row = np.einsum("nt,nts->ns", row, matrix)
    return row[:, front:].reshape(count, *grid)


@method(
    "attention-rollout",
    "attention multiplied through the blocks, residual path included (Abnar & Zuidema 2020)",
    family="transformers",
    output="map",
    signed=False,
    aliases=("rollout",),
)
def attention_rollout(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    batch_size: int | None = None,
) -> np.ndarray:
    """Attention rollout: how much each patch token flows into the class token through
    all blocks, counting the residual connections.

    Each block's attention ``A`` (heads fused) becomes ``Ã = 0.5 A + 0.5 I`` with rows
    renormalised to 1; the rollout is ``Ã_L ··· Ã_1`` and the map its class-token row
    over the patches. Class-agnostic: ``targets`` and ``score`` are accepted for a
    uniform call and not used. Forward passes only; PyTorch vision transformers.

    Parameters
    ----------
    head_fusion : {"mean", "max", "min"}
        How heads are fused (the paper averages them).
    discard_ratio : float in [0, 1)
        Fraction of each fused matrix's smallest entries set to zero before the
        residual is added (Gildenblat's vit-explain; 0 in the paper). The class token's
        own column is never discarded.

    Returns
    -------
    N×H×W float32, non-negative.

    References
    ----------
    S. Abnar, W. Zuidema. Quantifying Attention Flow in Transformers. ACL 2020, Sec. 3
    (attention rollout, Eq. 1-2).
    """
    if head_fusion not in HEAD_FUSIONS:
        raise UsageError(f"unknown head_fusion {head_fusion!r}; use {', '.join(HEAD_FUSIONS)}")
    if not 0 <= discard_ratio < 1:
        raise UsageError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    require(adapter, "attention", "attention rollout")
    images = np.asarray(images, np.float32)
    fuse = HEAD_FUSIONS[head_fusion]

    def call(start, stop):
        seen = adapter.attention_maps(images[start:stop])
        blocks = []
        for attention in seen.attention:
            fused = fuse(attention, axis=1).astype(np.float64)
            if discard_ratio > 0:
                fused = _discarded(fused, discard_ratio, seen.front)
            tokens = fused.shape[-1]
            matrix = 0.5 * fused + 0.5 * np.eye(tokens)
            blocks.append(matrix / matrix.sum(axis=-1, keepdims=True))
        return rolled_out(blocks, seen.front, seen.grid)

    maps = map_batches(call, len(images), chunk_size(adapter, batch_size))
    return resize_maps(np.maximum(maps, 0), *images.shape[1:3])


def _discarded(fused: np.ndarray, ratio: float, front: int) -> np.ndarray:
    """``fused`` (N×T×T) with the ``ratio`` smallest entries of each image set to zero,
    the class token's column kept."""
    flat = fused.reshape(len(fused), -1).copy()
    count = int(flat.shape[1] * ratio)
    lowest = np.argpartition(flat, count, axis=1)[:, :count]
    keep = np.ones_like(flat, dtype=bool)
    np.put_along_axis(keep, lowest, False, axis=1)
    keep = keep.reshape(fused.shape)
    if front:
        keep[:, :, 0] = True
    return np.where(keep, fused, 0.0)


@method(
    "transformer-attribution",
    "LRP relevance times gradient of each attention map, rolled out (Chefer et al. 2021)",
    family="transformers",
    output="map",
    signed=False,
    aliases=("chefer",),
)
def transformer_attribution(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    start_layer: int = 0,
    batch_size: int | None = None,
) -> np.ndarray:
    """Transformer attribution: class-specific relevance of each patch, from the
    attention maps' LRP relevance weighted by their gradients.

    For every block ``b`` with attention ``A_b``, ``Ā_b = I + E_h[(∇A_b ⊙ R_b)⁺]``:
    ``∇A_b`` the gradient of the target score, ``R_b`` the relevance of ``A_b`` when the
    score is propagated by LRP (α1β0 on linear layers, non-parametric layers passing
    relevance on, the attention products halving it, residual joins normalised; see
    :mod:`salmap.models.torch_attention`), heads averaged after the positive part. The
    map is the class-token row of ``Ā_L ··· Ā_start`` over the patches. One forward and
    backward pass for the gradients and one for the relevances; PyTorch vision
    transformers.

    Parameters
    ----------
    start_layer : int
        The first block in the product (0: all blocks, as the paper's Eq. 13).

    Returns
    -------
    N×H×W float32, non-negative.

    References
    ----------
    H. Chefer, S. Gur, L. Wolf. Transformer Interpretability Beyond Attention
    Visualization. CVPR 2021, Sec. 3.3, Eq. 13-14.
    """
    require(adapter, "attention", "transformer attribution")
    images = np.asarray(images, np.float32)
    targets = as_targets(targets, len(images), score)

    def call(start, stop):
        seen = adapter.attention_maps(
            images[start:stop], targets[start:stop], gradients=True, relevance=True
        )
        if not 0 <= start_layer < len(seen.attention):
            raise UsageError(
                f"start_layer {start_layer} out of range: the model has "
                f"{len(seen.attention)} attention blocks"
            )
        blocks = []
        for grads, relevance in zip(seen.gradients, seen.relevance, strict=True):
            weighted = np.maximum(grads * relevance, 0).mean(axis=1, dtype=np.float64)
            blocks.append(weighted + np.eye(weighted.shape[-1]))
        return rolled_out(blocks[start_layer:], seen.front, seen.grid)

    maps = map_batches(call, len(images), chunk_size(adapter, batch_size))
    return resize_maps(np.maximum(maps, 0), *images.shape[1:3])

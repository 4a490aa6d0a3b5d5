"""Attention rollout and transformer attribution equal a hand computation on 2-layer
ViTs (torchvision's, whose attention is ``nn.MultiheadAttention``, and timm's, whose
attention is ``F.scaled_dot_product_attention``), with seeded random weights.

The reference below writes the ViT out from its weights (patch embedding, layer norms,
multi-head attention, GELU MLP, residuals, class-token head) and propagates relevance
top-down with explicit formulas (Chefer et al. 2021): LRP-α1β0 on linear layers without
biases, layer norms, GELU and softmax passing relevance on, each operand of the two
attention products taking half, residual joins renormalised. Only the gradients of
the score with respect to the attention maps come from autograd, on that hand-written
forward pass."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from salmap.errors import ModelError  # noqa: E402
from salmap.methods import METHODS  # noqa: E402
from salmap.models.torch_adapter import TorchAdapter  # noqa: E402

SIZE, PATCH, WIDTH, HEADS, CLASSES = 32, 8, 16, 2, 5
TARGETS = np.array([1, 3, 4])


def _seeded(module, seed: int):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.4 * torch.randn(parameter.shape, generator=generator))
            if parameter.dim() == 1 and parameter.numel() == WIDTH:
                parameter.add_(1.0)  # layer-norm scales near 1, like trained models
    return module.eval()


def _torchvision_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    module = VisionTransformer(
        image_size=SIZE, patch_size=PATCH, num_layers=2, num_heads=HEADS,
        hidden_dim=WIDTH, mlp_dim=2 * WIDTH, num_classes=CLASSES,
    )  # fmt: skip
    return _seeded(module, 0)


def _timm_vit():
    timm = pytest.importorskip("timm")
    module = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=CLASSES, img_size=SIZE,
        patch_size=PATCH, depth=2, embed_dim=WIDTH, num_heads=HEADS, mlp_ratio=2.0,
    )  # fmt: skip
    return _seeded(module, 1)


def _parameters(module) -> dict:
    """The weights the hand computation needs, by role, as float64 tensors."""
    p = {k: v.detach().double() for k, v in module.state_dict().items()}
    if "conv_proj.weight" in p:  # torchvision
        blocks = []
        for i in range(2):
            b = f"encoder.layers.encoder_layer_{i}."
            a = b + "self_attention."
            blocks.append(
                dict(
                    ln1=(p[b + "ln_1.weight"], p[b + "ln_1.bias"]),
                    qkv=(p[a + "in_proj_weight"], p[a + "in_proj_bias"]),
                    proj=(p[a + "out_proj.weight"], p[a + "out_proj.bias"]),
                    ln2=(p[b + "ln_2.weight"], p[b + "ln_2.bias"]),
                    fc1=(p[b + "mlp.0.weight"], p[b + "mlp.0.bias"]),
                    fc2=(p[b + "mlp.3.weight"], p[b + "mlp.3.bias"]),
                )
            )  # fmt: skip
        return dict(
            patch=(p["conv_proj.weight"], p["conv_proj.bias"]), cls=p["class_token"],
            pos=p["encoder.pos_embedding"], blocks=blocks,
            norm=(p["encoder.ln.weight"], p["encoder.ln.bias"]),
            head=(p["heads.head.weight"], p["heads.head.bias"]),
        )  # fmt: skip
    blocks = [
        dict(
            ln1=(p[f"blocks.{i}.norm1.weight"], p[f"blocks.{i}.norm1.bias"]),
            qkv=(p[f"blocks.{i}.attn.qkv.weight"], p[f"blocks.{i}.attn.qkv.bias"]),
            proj=(p[f"blocks.{i}.attn.proj.weight"], p[f"blocks.{i}.attn.proj.bias"]),
            ln2=(p[f"blocks.{i}.norm2.weight"], p[f"blocks.{i}.norm2.bias"]),
            fc1=(p[f"blocks.{i}.mlp.fc1.weight"], p[f"blocks.{i}.mlp.fc1.bias"]),
            fc2=(p[f"blocks.{i}.mlp.fc2.weight"], p[f"blocks.{i}.mlp.fc2.bias"]),
        )
        for i in range(2)
    ]
    return dict(
        patch=(p["patch_embed.proj.weight"], p["patch_embed.proj.bias"]), cls=p["cls_token"],
        pos=p["pos_embed"], blocks=blocks, norm=(p["norm.weight"], p["norm.bias"]),
        head=(p["head.weight"], p["head.bias"]),
    )  # fmt: skip


def _layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + 1e-6) * weight + bias


def _forward(params, image: np.ndarray):
    """The ViT by hand on one H×W×3 image: logits and every intermediate value."""
    w, b = params["patch"]
    grid = SIZE // PATCH
    patches = torch.from_numpy(image.astype(np.float64)).permute(2, 0, 1)  # 3×H×W
    patches = patches.reshape(3, grid, PATCH, grid, PATCH).permute(1, 3, 0, 2, 4)
    tokens = patches.reshape(grid * grid, -1) @ w.reshape(WIDTH, -1).T + b
    x = torch.cat([params["cls"].reshape(1, WIDTH), tokens]) + params["pos"].reshape(-1, WIDTH)
    saved = []
    for block in params["blocks"]:
        s = {"x": x}
        s["ln1"] = _layer_norm(x, *block["ln1"])
        s["qkv"] = s["ln1"] @ block["qkv"][0].T + block["qkv"][1]
        q, k, v = (
            t.reshape(-1, HEADS, WIDTH // HEADS).transpose(0, 1) for t in s["qkv"].chunk(3, -1)
        )
        s["q"], s["k"], s["v"] = q, k, v
        s["product"] = q @ k.transpose(-1, -2)
        logits = s["product"] / (WIDTH // HEADS) ** 0.5
        attention = torch.exp(logits - logits.amax(-1, keepdim=True))
        s["A"] = (attention / attention.sum(-1, keepdim=True)).requires_grad_(True)
        s["context"] = s["A"] @ v  # heads×T×d
        s["merged"] = s["context"].transpose(0, 1).reshape(-1, WIDTH)
        s["attn"] = s["merged"] @ block["proj"][0].T + block["proj"][1]
        s["x1"] = x + s["attn"]
        s["ln2"] = _layer_norm(s["x1"], *block["ln2"])
        s["fc1"] = s["ln2"] @ block["fc1"][0].T + block["fc1"][1]
        s["gelu"] = 0.5 * s["fc1"] * (1 + torch.erf(s["fc1"] / 2**0.5))
        s["mlp"] = s["gelu"] @ block["fc2"][0].T + block["fc2"][1]
        x = s["x1"] + s["mlp"]
        s["out"] = x
        saved.append(s)
    pooled = _layer_norm(x, *params["norm"])[0]
    logits = pooled @ params["head"][0].T + params["head"][1]
    return logits, pooled, saved


def _divide(numerator, denominator):
    return np.where(denominator == 0, 0.0, numerator / np.where(denominator == 0, 1, denominator))


def _alpha1beta0(x, weight, relevance):
    """LRP-α1β0 of ``x @ weightᵀ`` on signed inputs, without the bias."""
    pos, neg = np.clip(weight, 0, None), np.clip(weight, None, 0)
    xp, xn = np.clip(x, 0, None), np.clip(x, None, 0)
    share = _divide(relevance, xp @ pos.T + xn @ neg.T)
    return xp * (share @ pos) + xn * (share @ neg)


def _residual(a, b, relevance):
    """z-rule split of ``a + b``, each branch rescaled to its share of the total."""
    share = _divide(relevance, a + b)
    ra, rb = a * share, b * share
    sa, sb = ra.sum(), rb.sum()
    total = relevance.sum()
    fa = _divide(_divide(abs(sa), abs(sa) + abs(sb)) * total, sa)
    fb = _divide(_divide(abs(sb), abs(sa) + abs(sb)) * total, sb)
    return ra * fa, rb * fb


def _relevances(params, pooled, saved, target: int) -> list[np.ndarray]:
    """The relevance of each block's attention maps, top-down, by hand."""
    n = lambda t: t.detach().numpy()  # noqa: E731
    start = np.zeros(CLASSES)
    start[target] = 1.0
    relevance = np.zeros_like(n(saved[-1]["out"]))
    relevance[0] = _alpha1beta0(n(pooled), n(params["head"][0]), start)  # the norm passes it on
    found = []
    for block, s in zip(reversed(params["blocks"]), reversed(saved), strict=True):
        r_x1, r_mlp = _residual(n(s["x1"]), n(s["mlp"]), relevance)
        r_gelu = _alpha1beta0(n(s["gelu"]), n(block["fc2"][0]), r_mlp)
        r_ln2 = _alpha1beta0(n(s["ln2"]), n(block["fc1"][0]), r_gelu)  # GELU passes
        r_x, r_attn = _residual(n(s["x"]), n(s["attn"]), r_x1 + r_ln2)  # layer norm passes
        r_merged = _alpha1beta0(n(s["merged"]), n(block["proj"][0]), r_attn)
        r_context = r_merged.reshape(-1, HEADS, WIDTH // HEADS).transpose(1, 0, 2)
        a, v, q, k = n(s["A"]), n(s["v"]), n(s["q"]), n(s["k"])
        share = _divide(r_context, n(s["context"]))
        r_a = 0.5 * a * (share @ v.transpose(0, 2, 1))
        r_v = 0.5 * v * (a.transpose(0, 2, 1) @ share)
        found.append(r_a)
        share = _divide(r_a, n(s["product"]))  # softmax passes, the scale too
        r_q = 0.5 * q * (share @ k)
        r_k = 0.5 * k * (share.transpose(0, 2, 1) @ q)
        merge = lambda t: t.transpose(1, 0, 2).reshape(-1, WIDTH)  # noqa: E731
        r_qkv = np.concatenate([merge(r_q), merge(r_k), merge(r_v)], axis=-1)
        r_ln1 = _alpha1beta0(n(s["ln1"]), n(block["qkv"][0]), r_qkv)
        relevance = r_x + r_ln1
    return found[::-1]


def _upsampled(grid_map: np.ndarray) -> np.ndarray:
    return cv2.resize(grid_map.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)


def _hand_rollout(params, image, fusion=np.mean) -> np.ndarray:
    _, _, saved = _forward(params, image)
    joint = np.eye(saved[0]["A"].shape[-1])
    for s in saved:
        fused = fusion(s["A"].detach().numpy(), axis=0)
        matrix = 0.5 * fused + 0.5 * np.eye(len(fused))
        joint = (matrix / matrix.sum(-1, keepdims=True)) @ joint
    grid = SIZE // PATCH
    return _upsampled(joint[0, 1:].reshape(grid, grid))


def _hand_attribution(params, image, target: int, start_layer: int = 0) -> np.ndarray:
    logits, pooled, saved = _forward(params, image)
    grads = torch.autograd.grad(logits[target], [s["A"] for s in saved])
    relevances = _relevances(params, pooled, saved, target)
    joint = np.eye(saved[0]["A"].shape[-1])
    for grad, relevance in list(zip(grads, relevances, strict=True))[start_layer:]:
        weighted = np.clip(grad.numpy() * relevance, 0, None).mean(axis=0)
        joint = (weighted + np.eye(len(weighted))) @ joint
    grid = SIZE // PATCH
    return _upsampled(joint[0, 1:].reshape(grid, grid))


@pytest.fixture(scope="module", params=["torchvision", "timm"])
def vit(request):
    module = _torchvision_vit() if request.param == "torchvision" else _timm_vit()
    return module, TorchAdapter(module, input_size=SIZE, preprocess="none", batch_size=2)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(7)
    smooth = [cv2.GaussianBlur(rng.random((SIZE, SIZE, 3)), (0, 0), 2) for _ in TARGETS]
    return np.stack([(s - s.min()) / np.ptp(s) for s in smooth]).astype(np.float32)


def test_the_hand_forward_is_the_model(vit, images):
    module, _ = vit
    params = _parameters(module)
    with torch.no_grad():
        expected = module(torch.from_numpy(images.transpose(0, 3, 1, 2))).double()
    for image, row in zip(images, expected, strict=True):
        logits, _, _ = _forward(params, image)
        np.testing.assert_allclose(logits.detach().numpy(), row.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_attention_rollout_equals_the_hand_computation(vit, images, fusion):
    module, adapter = vit
    params = _parameters(module)
    ours = METHODS["attention-rollout"].function(adapter, images, TARGETS, head_fusion=fusion)
    for image, got in zip(images, ours, strict=True):
        expected = _hand_rollout(params, image, getattr(np, fusion))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("start_layer", [0, 1])
def test_transformer_attribution_equals_the_hand_computation(vit, images, start_layer):
    module, adapter = vit
    params = _parameters(module)
    ours = METHODS["transformer-attribution"].function(
        adapter, images, TARGETS, start_layer=start_layer
    )
    for image, target, got in zip(images, TARGETS, ours, strict=True):
        expected = _hand_attribution(params, image, int(target), start_layer)
        assert np.ptp(expected) > 1e-3 * expected.max()  # the relevance does reach patches
        np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-4 * expected.max())


@pytest.mark.parametrize(
    "name, extra, front",
    [
        ("deit_tiny_distilled_patch16_224", {}, 2),  # class and distillation tokens
        ("vit_tiny_patch16_224", {"reg_tokens": 4}, 5),  # class and 4 registers
        ("vit_tiny_patch16_224", {"class_token": False, "global_pool": "avg"}, 0),
    ],
)
def test_front_tokens_are_found_and_the_map_reads_the_right_row(images, name, extra, front):
    timm = pytest.importorskip("timm")
    module = timm.create_model(
        name, pretrained=False, num_classes=CLASSES, img_size=SIZE, patch_size=PATCH,
        depth=2, embed_dim=WIDTH, num_heads=HEADS, **extra,
    ).eval()  # fmt: skip
    adapter = TorchAdapter(module, input_size=SIZE, preprocess="none")
    seen = adapter.attention_maps(images[:1])
    assert (seen.front, seen.grid) == (front, (SIZE // PATCH,) * 2)
    assert len(seen.attention) == 2 and seen.attention[0].shape == (
        1,
        HEADS,
        front + 16,
        front + 16,
    )
    np.testing.assert_allclose(seen.attention[0].sum(-1), 1, rtol=1e-5)
    joint = np.eye(front + 16)
    for attention in seen.attention:
        matrix = 0.5 * attention[0].astype(np.float64).mean(0) + 0.5 * np.eye(front + 16)
        joint = matrix @ joint  # rows already sum to 1
    row = joint[0] if front else joint.mean(axis=0)
    expected = _upsampled(row[front:].reshape(4, 4))
    ours = METHODS["attention-rollout"].function(adapter, images[:1], TARGETS[:1])[0]
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-7)


def test_a_model_without_readable_attention_is_a_one_line_error(images):
    torchvision = pytest.importorskip("torchvision")
    for module, size in [
        (torchvision.models.resnet18(num_classes=CLASSES), SIZE),
        (torchvision.models.swin_t(num_classes=CLASSES), 224),  # windowed, computed by hand
    ]:
        adapter = TorchAdapter(module.eval(), input_size=size, preprocess="none")
        for name in ("attention-rollout", "transformer-attribution"):
            with pytest.raises(ModelError, match="neither F.scaled_dot_product_attention") as error:
                METHODS[name].function(adapter, images[:1], TARGETS[:1])
            assert "\n" not in str(error.value)


def test_attention_parameters_are_checked(vit, images):
    from salmap.errors import UsageError

    _, adapter = vit
    with pytest.raises(UsageError, match="head_fusion"):
        METHODS["attention-rollout"].function(adapter, images, TARGETS, head_fusion="median")
    with pytest.raises(UsageError, match="discard_ratio"):
        METHODS["attention-rollout"].function(adapter, images, TARGETS, discard_ratio=1.0)
    with pytest.raises(UsageError, match="start_layer 2 out of range"):
        METHODS["transformer-attribution"].function(adapter, images, TARGETS, start_layer=2)


def test_discarding_keeps_the_class_column_and_zeroes_the_lowest(vit, images):
    _, adapter = vit
    full = METHODS["attention-rollout"].function(adapter, images, TARGETS)
    kept = METHODS["attention-rollout"].function(adapter, images, TARGETS, discard_ratio=0.9)
    assert kept.shape == full.shape and np.all(np.isfinite(kept))
    assert not np.allclose(kept, full)


def test_the_model_is_unchanged_and_its_forward_is_exact(vit, images):
    module, adapter = vit
    state = {k: v.clone() for k, v in module.state_dict().items()}
    x = torch.from_numpy(images.transpose(0, 3, 1, 2))
    with torch.no_grad():
        before = module(x)
    seen = adapter.attention_maps(images, TARGETS, gradients=True, relevance=True)
    np.testing.assert_allclose(seen.scores, before[np.arange(3), TARGETS].numpy(), rtol=1e-5)
    with torch.no_grad():
        after = module(x)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    for key, value in module.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    assert not module.training and all(p.requires_grad for p in module.parameters())


def test_explain_runs_them_by_name_with_a_class_target(vit, images):
    import salmap

    _, adapter = vit
    for name in ("rollout", "chefer"):
        result = salmap.explain(images[0], adapter, method=name, target=2)
        assert result.map.shape == (SIZE, SIZE) and result.map.min() >= 0
        assert result.target == 2, result.label
    one = salmap.explain(images[0], adapter, method="transformer-attribution", target=1).map
    other = salmap.explain(images[0], adapter, method="transformer-attribution", target=4).map
    assert not np.allclose(one, other)  # class-specific, unlike the rollout

"""CAMs on Vision Transformers without a user-written reshape: salmap's Grad-CAM equals a
hand-written reference (hook the token layer, drop the front tokens, reshape to the
patch grid, weight channels by mean gradients) on torchvision's ViT-B/16, timm's
distilled DeiT and a ViT with register tokens; Swin's channels-last maps are found."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import salmap  # noqa: E402
from salmap.models.torch_adapter import TorchAdapter  # noqa: E402

torch.set_num_threads(2)


def _reference_grad_cam(module, layer: str, image: np.ndarray, target: int, front: int):
    """Grad-CAM by hand: the layer's tokens minus ``front`` tokens, as a square grid."""
    captured = {}
    handle = dict(module.named_modules())[layer].register_forward_hook(
        lambda _m, _i, output: captured.setdefault("tokens", output)
    )
    try:
        x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy()).requires_grad_(True)
        logit = module(x)[0, target]
        tokens = captured["tokens"]
        (grads,) = torch.autograd.grad(logit, tokens)
    finally:
        handle.remove()
    side = int(round((tokens.shape[1] - front) ** 0.5))
    values = tokens[0, front:].reshape(side, side, -1).detach()
    grads = grads[0, front:].reshape(side, side, -1)
    cam = torch.relu((values * grads.mean(dim=(0, 1))).sum(dim=-1))
    cam = torch.nn.functional.interpolate(
        cam[None, None], size=image.shape[:2], mode="bilinear", align_corners=False
    )
    return cam[0, 0].numpy()


def _photo(size: int) -> np.ndarray:
    import cv2

    image = salmap.sample_image("chelsea")
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


def _check(module, size: int, layer: str, front: int, grid: int) -> None:
    module.eval()
    adapter = TorchAdapter(module, input_size=size, preprocess="none")
    assert adapter.cam_layer() == layer
    image = _photo(size)
    values, _, _ = adapter.layer_values_and_gradients(image[None], salmap.targets.Class([3]), layer)
    assert values.shape[:3] == (1, grid, grid)
    ours = salmap.explain(image, adapter, method="grad-cam", target=3).map
    expected = _reference_grad_cam(module, layer, image, 3, front)
    assert expected.max() > 0
    np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-4 * expected.max())


def test_vit_b_16_grad_cam_equals_the_reshape_reference():
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(image_size=112)
    torch.nn.init.normal_(vit.heads.head.weight, std=0.02)  # torchvision starts it at zero
    _check(vit, 112, "encoder.layers.encoder_layer_11.ln_1", front=1, grid=7)


@pytest.mark.parametrize("kind", ["distilled", "registers"])
def test_timm_vits_drop_their_front_tokens(kind):
    timm = pytest.importorskip("timm")
    torch.manual_seed(1)
    options = dict(img_size=64, patch_size=8, embed_dim=48, depth=2, num_heads=2, num_classes=10)
    if kind == "distilled":
        module = timm.models.deit.VisionTransformerDistilled(**options)
        front = 2
    else:
        module = timm.models.vision_transformer.VisionTransformer(reg_tokens=4, **options)
        front = 5
    _check(module, 64, "blocks.1.norm1", front=front, grid=8)


def test_swin_channels_last_maps():
    torch.manual_seed(2)
    swin = torchvision.models.swin_transformer.SwinTransformer(
        patch_size=[4, 4],
        embed_dim=24,
        depths=[2, 2],
        num_heads=[2, 2],
        window_size=[4, 4],
        num_classes=10,
    ).eval()
    adapter = TorchAdapter(swin, input_size=64, preprocess="none")
    images, target = _photo(64)[None], salmap.targets.Class([1])
    # the final norm is channels-last N×8×8×48, the permuted copy channels-first
    last, last_grads, _ = adapter.layer_values_and_gradients(images, target, "norm")
    first, first_grads, _ = adapter.layer_values_and_gradients(images, target, "permute")
    assert last.shape == first.shape == (1, 8, 8, 48)
    np.testing.assert_allclose(last, first, rtol=1e-6)
    np.testing.assert_allclose(last_grads, first_grads, rtol=1e-5, atol=1e-9)
    result = salmap.explain(images[0], adapter, method="grad-cam", target=1, layer="norm")
    assert result.map.shape == (64, 64) and result.map.max() > 0

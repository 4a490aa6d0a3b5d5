"""Seconds per image of salmap on PyTorch ÷ the torch floor, beside Captum and
pytorch-grad-cam, in one run.

On torchvision's ResNet50 (seeded random weights, ImageNet normalisation inside the
module so every library sees the same [0, 1] image) and chelsea resized to 224×224,
for vanilla gradients, SmoothGrad-50, IG-50 (Gauss–Legendre, as Captum), Grad-CAM,
occlusion (32-pixel windows, stride 16) and RISE, it prints the median seconds (and
min–max) over ``--repeats`` rounds of:

- the **floor**: plain torch doing the same model evaluations on a ready tensor —
  forward+backward to the image (gradient methods), to ``layer4`` (Grad-CAM), or
  forward only under ``no_grad`` (occlusion, RISE) — at the best batch size among
  ``--batch-sizes`` (chosen once per kind of evaluation; parameters frozen, as salmap
  runs them);
- **salmap**: the method as ``salmap.explain`` runs it on the adapter, at the floor's
  batch size;
- **Captum** at the same internal batch size (``internal_batch_size``,
  ``nt_samples_batch_size``, ``perturbations_per_eval``), where it has the method;
- **pytorch-grad-cam**'s GradCAM (``pip install --no-deps grad-cam ttach``: its
  opencv-python dependency would replace the contrib cv2).

Each round runs every library once, in turn, so a busy spell on a shared machine
slows all of them alike. ``--device cuda`` runs the same on a GPU.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
import torchvision

import salmap
from salmap.methods import METHODS
from salmap.models.torch_adapter import TorchAdapter
from salmap.targets import Class

#: The floor, salmap and the peers all get channels-last images (NHWC memory): on CPU
#: convolutions run 10-28 % faster that way (salmap's adapter picks it by itself).
CHANNELS_LAST = torch.channels_last

EVALUATIONS = {"vanilla": 1, "smoothgrad": 50, "integrated-gradients": 50, "grad-cam": 1}


class Normalised(torch.nn.Module):
    """ImageNet mean/std, then the network: a model of [0, 1] images."""

    def __init__(self, network):
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        return self.network((x - self.mean) / self.std)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(function, device) -> float:
    _sync(device)
    start = time.perf_counter()
    function()
    _sync(device)
    return time.perf_counter() - start


# -- the floor: plain torch, the same evaluations -------------------------------------------
def floor_gradients(module, x, target, count, batch, layer=None):
    """``count`` gradients of the target logit (to the image, or to ``layer``)."""
    captured = {}
    hook = None
    if layer is not None:
        hook = layer.register_forward_hook(lambda _m, _i, out: captured.setdefault("a", out))
    try:
        for start in range(0, count, batch):
            size = min(batch, count - start)
            inputs = x.expand(size, -1, -1, -1).clone(memory_format=CHANNELS_LAST)
            inputs.requires_grad_(True)
            captured.clear()
            logits = module(inputs)[:, target].sum()
            torch.autograd.grad(logits, captured["a"] if layer is not None else inputs)
    finally:
        if hook is not None:
            hook.remove()


def floor_forward(module, x, count, batch):
    with torch.no_grad():
        for start in range(0, count, batch):
            module(
                x.expand(min(batch, count - start), -1, -1, -1).clone(memory_format=CHANNELS_LAST)
            )


def best_batch(function, batches, device) -> int:
    function(batches[0])  # warm-up
    seconds = {b: _timed(lambda b=b: function(b), device) for b in batches}
    return min(seconds, key=seconds.get)


# -- the libraries ----------------------------------------------------------------------------
def salmap_runs(adapter, image, target, batch, args) -> dict:
    # The method itself, as explain() runs it (explain adds one forward pass for the
    # top-k predictions it reports).
    images, targets = image[None], Class(np.array([target]))

    def run(method, **params):
        function = METHODS[method].function
        return lambda: function(adapter, images, targets, batch_size=batch, **params)

    return {
        "vanilla": run("vanilla"),
        "smoothgrad": run("smoothgrad", samples=50, sigma=0.15),
        "integrated-gradients": run("integrated-gradients", steps=50, rule="gauss-legendre"),
        "grad-cam": run("grad-cam"),
        "occlusion": run("occlusion", window=32, stride=16, value=0.5),
        "rise": run("rise", masks=args.rise_masks, tolerance=None),  # all masks
    }


def captum_runs(module, x, target, batch) -> dict:
    try:
        from captum import attr
    except ImportError:
        return {}
    saliency = attr.Saliency(module)
    layer = attr.LayerGradCam(module, module.network.layer4)
    return {
        "vanilla": lambda: saliency.attribute(x, target=target, abs=False),
        "smoothgrad": lambda: attr.NoiseTunnel(saliency).attribute(
            x,
            target=target,
            nt_type="smoothgrad",
            nt_samples=50,
            stdevs=0.15,
            nt_samples_batch_size=batch,
            abs=False,
        ),
        "integrated-gradients": lambda: attr.IntegratedGradients(module).attribute(
            x, target=target, n_steps=50, internal_batch_size=batch
        ),
        "grad-cam": lambda: attr.LayerAttribution.interpolate(
            layer.attribute(x, target=target, relu_attributions=True), (224, 224), "bilinear"
        ),
        "occlusion": lambda: attr.Occlusion(module).attribute(
            x,
            target=target,
            sliding_window_shapes=(3, 32, 32),
            strides=(3, 16, 16),
            baselines=0.5,
            perturbations_per_eval=batch,
        ),
    }


def grad_cam_runs(module, x, target) -> dict:
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return {}
    # As its users run it: on a module whose parameters take gradients (its backward()
    # needs them), a copy here, since the others run on frozen parameters.
    module = copy.deepcopy(module).requires_grad_(True)
    cam = GradCAM(model=module, target_layers=[module.network.layer4])
    return {"grad-cam": lambda: cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])}


def floor_runs(module, x, target, args, device) -> tuple[dict, dict]:
    batches = [int(b) for b in args.batch_sizes.split(",")]
    occlusion = 1 + ((224 - 32) // 16 + 1) ** 2
    grad_batch = best_batch(lambda b: floor_gradients(module, x, target, 50, b), batches, device)
    forward_batch = best_batch(lambda b: floor_forward(module, x, occlusion, b), batches, device)
    layer4 = module.network.layer4
    runs = {
        name: (lambda n=count: floor_gradients(module, x, target, n, grad_batch))
        for name, count in EVALUATIONS.items()
        if name != "grad-cam"
    }
    runs["grad-cam"] = lambda: floor_gradients(module, x, target, 1, 1, layer4)
    runs["occlusion"] = lambda: floor_forward(module, x, occlusion, forward_batch)
    runs["rise"] = lambda: floor_forward(module, x, args.rise_masks + 1, forward_batch)
    batch = {name: grad_batch for name in runs}
    batch.update(occlusion=forward_batch, rise=forward_batch, **{"grad-cam": 1})
    return runs, batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,10,25,50")
    parser.add_argument("--rise-masks", type=int, default=200)
    parser.add_argument("--methods", default=",".join([*EVALUATIONS, "occlusion", "rise"]))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    module = Normalised(torchvision.models.resnet50()).eval().to(device)
    for parameter in module.parameters():
        parameter.requires_grad_(False)  # as salmap and the floor run it
    image = salmap.sample_image("chelsea")
    import cv2

    image = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy()).to(device)
    x = x.contiguous(memory_format=CHANNELS_LAST)  # every library gets the fast layout
    with torch.no_grad():
        target = int(module(x).argmax())
    adapter = TorchAdapter(module, name="resnet50", input_size=224, preprocess="none")
    floors, batches = floor_runs(module, x, target, args, device)
    print(
        f"torch {torch.__version__} on {device}, {torch.get_num_threads()} threads; "
        f"best floor batch: gradients {batches['vanilla']}, forward {batches['occlusion']}"
    )
    print(
        f"{'method':<22}{'floor s':>22}{'salmap s':>22}{'÷floor':>8}"
        f"{'Captum s':>22}{'grad-cam s':>22}"
    )
    for method in args.methods.split(","):
        libraries = {"floor": floors[method]}
        libraries["salmap"] = salmap_runs(adapter, image, target, batches[method], args)[method]
        captum = captum_runs(module, x, target, batches[method]).get(method)
        grad_cam = grad_cam_runs(module, x, target).get(method) if method == "grad-cam" else None
        libraries.update({k: v for k, v in (("captum", captum), ("grad-cam", grad_cam)) if v})
        times = {name: [] for name in libraries}
        if EVALUATIONS.get(method) == 1:
            for function in libraries.values():
                function()  # warm-up (allocator, Captum's and grad-cam's hooks)
        for _ in range(args.repeats):
            for name, function in libraries.items():
                times[name].append(_timed(function, device))
        print(_row(method, times), flush=True)


def _cell(values) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values):.3f} ({min(values):.2f}–{max(values):.2f})"


def _row(method: str, times: dict) -> str:
    ratio = statistics.median(times["salmap"]) / statistics.median(times["floor"])
    return (
        f"{method:<22}{_cell(times['floor']):>22}{_cell(times['salmap']):>22}{ratio:>8.3f}"
        f"{_cell(times.get('captum', [])):>22}{_cell(times.get('grad-cam', [])):>22}"
    )


if __name__ == "__main__":
    main()

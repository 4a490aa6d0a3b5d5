"""Seconds per image of salmap's transformer methods ÷ the torch floor, in one run.

On timm's ViT-S/16 (seeded random weights; no pretrained ViT is bundled) at 224×224
and ``--images`` copies of chelsea, it prints medians (and min–max) over ``--repeats``
rounds of:

- ``attention-rollout`` ÷ the model's own forward pass under ``no_grad`` (with its
  fused ``scaled_dot_product_attention``), the same images at the best batch size;
- ``transformer-attribution`` ÷ two forward+backward passes to the image (one for the
  gradients of the attention maps, one for their relevances), same batch size.

No peer library packages these methods (Chefer et al.'s and Gildenblat's code are
repositories with their own model copies), so the floor is the only comparison. Each
round runs the floor and salmap in turn, so a busy spell slows both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
import torch

import salmap
from salmap.methods import METHODS
from salmap.models.torch_adapter import TorchAdapter
from salmap.targets import Class


def floor_forward(module, x, batch):
    with torch.no_grad():
        for start in range(0, len(x), batch):
            module(x[start : start + batch])


def floor_backward(module, x, targets, batch, passes=2):
    for _ in range(passes):
        for start in range(0, len(x), batch):
            inputs = x[start : start + batch].clone().requires_grad_(True)
            logits = module(inputs)
            rows = torch.arange(len(inputs))
            torch.autograd.grad(logits[rows, targets[start : start + batch]].sum(), inputs)


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    import timm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_small_patch16_224")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch-sizes", default="1,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    module = timm.create_model(args.model, pretrained=False).eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)  # as salmap runs it
    image = cv2.resize(salmap.sample_image("chelsea"), (224, 224), interpolation=cv2.INTER_AREA)
    images = np.repeat(image[None].astype(np.float32), args.images, axis=0)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        targets = module(x).argmax(1)
    adapter = TorchAdapter(module, name=args.model, input_size=224, preprocess="none")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    floor_forward(module, x, batches[0])  # warm-up
    forward_batch = min(batches, key=lambda b: _seconds(lambda: floor_forward(module, x, b)))
    backward_batch = min(
        batches, key=lambda b: _seconds(lambda: floor_backward(module, x, targets, b, 1))
    )
    plans = {
        "attention-rollout": (lambda: floor_forward(module, x, forward_batch), forward_batch),
        "transformer-attribution": (
            lambda: floor_backward(module, x, targets, backward_batch),
            backward_batch,
        ),
    }
    print(
        f"{args.model}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.images} images; best floor batch: forward {forward_batch}, "
        f"forward+backward {backward_batch}"
    )
    print(f"{'method':<26}{'floor s/image':>22}{'salmap s/image':>22}{'÷floor':>8}")
    for name, (floor, batch) in plans.items():
        function = METHODS[name].function
        run = lambda f=function, b=batch: f(adapter, images, Class(targets.numpy()), batch_size=b)  # noqa: E731
        run()  # warm-up
        times = {"floor": [], "salmap": []}
        for _ in range(args.repeats):
            times["floor"].append(_seconds(floor) / args.images)
            times["salmap"].append(_seconds(run) / args.images)
        cells = {k: statistics.median(v) for k, v in times.items()}
        spread = {k: f"{min(v):.3f}–{max(v):.3f}" for k, v in times.items()}
        print(
            f"{name:<26}{cells['floor']:>8.3f} ({spread['floor']}){cells['salmap']:>8.3f} "
            f"({spread['salmap']}){cells['salmap'] / cells['floor']:>8.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Method suite II on PyTorch: salmap ÷ the framework floor ÷ Captum, lime, shap, zennit,
pytorch-grad-cam, in one run (``bench_methods.py --framework torch``).

One seeded random ResNet18 (torchvision, BN statistics randomised), one image (chelsea
resized to ``--size``). For every method: the number of model evaluations it makes,
the **floor** (the same number of forward — or forward+backward to the image or to a
layer — passes of the bare module in ``torch.no_grad``/autograd on a ready tensor, at
the batch size given), salmap's seconds, and each peer's seconds with the same
features (superpixels / feature mask), baselines and evaluation counts, all timed
alternately (medians of ``--repeats``). Captum runs with ``perturbations_per_eval`` =
the batch size (its best: one model call per batch), lime with ``batch_size``,
pytorch-grad-cam's AblationCAM with ``batch_size``; Captum's GradientShap evaluates all
its samples in one call (it has no internal batch size; the same batch salmap gets) and
its DeepLift one ``[x; black]`` call.

Floors: DeepLIFT's is forward+backward of the bare module on the ``[x; black]`` batch
that salmap and Captum both run (the image's score differentiated); LRP's is one
forward+backward, and beside zennit the row shows **z+ minimum**: that floor plus each
convolution run again with its positive weights (clamped on every call), the least a
z+ rule costs (its denominators need a second forward with other weights).
"""

from __future__ import annotations

import numpy as np
from timing import interleaved_medians


def _model(seed: int = 0):
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(0.2 * torch.rand(size, generator=generator) - 0.1)
            module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
    return model


class Floor:
    """The bare module's cost of n evaluations in batches of ``batch``, on channels-last
    images (NHWC memory: 10-28 % faster convolutions on CPU). Every library gets that
    layout: salmap's adapter picks it by itself, the peers get the channels-last tensor,
    and lime's and shap's callbacks below make it from their NumPy transposes."""

    def __init__(self, model, tensor, batch: int):
        self.model, self.tensor, self.batch = model, tensor, batch

    def run(self, kind: str, count: int, layer=None):
        import torch
        import torch.nn.functional as F  # noqa: N812

        if kind == "pair":  # [x; black]: the batch DeepLIFT (salmap and Captum) runs
            pair = torch.cat([self.tensor, self.tensor * 0])

            def call_pair():
                self.model(pair.clone(memory_format=torch.channels_last).requires_grad_(True))[
                    :1, 1
                ].sum().backward()

            return call_pair
        if kind == "z+":  # forward+backward, and each convolution again with w+ (z+'s minimum)
            convolutions = [m for m in self.model.modules() if isinstance(m, torch.nn.Conv2d)]

            def again(module, inputs, _output):
                with torch.no_grad():
                    F.conv2d(inputs[0], module.weight.clamp(min=0), None, module.stride,
                             module.padding, module.dilation, module.groups)  # fmt: skip

            def call_z_plus():
                handles = [m.register_forward_hook(again) for m in convolutions]
                try:
                    x = self.tensor.clone(memory_format=torch.channels_last).requires_grad_(True)
                    self.model(x)[:, 1].sum().backward()
                finally:
                    for handle in handles:
                        handle.remove()

            return call_z_plus

        def call():
            done = 0
            while done < count:
                size = min(self.batch, count - done)
                x = self.tensor.expand(size, -1, -1, -1).clone(memory_format=torch.channels_last)
                if kind == "forward":
                    with torch.no_grad():
                        self.model(x)
                else:
                    x.requires_grad_(True)
                    self.model(x)[:, 1].sum().backward()
                done += size

        return call


def bench_torch(args) -> None:
    import torch

    import salmap.methods as methods
    from salmap.methods.surrogate import image_features
    from salmap.models.torch_adapter import TorchAdapter

    size, batch = args.size, args.batch
    image = _image(size)
    model = _model()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    adapter = TorchAdapter(model, input_size=size, batch_size=batch)
    tensor = torch.from_numpy(image.transpose(2, 0, 1).copy())[None]
    tensor = tensor.contiguous(memory_format=torch.channels_last)  # every library's layout
    floor = Floor(model, tensor, batch)
    images, target = image[None], np.array([1])
    segments = image_features(image, "slic", args.features)
    features = int(segments.max()) + 1
    mask = torch.from_numpy(segments)[None, None].repeat(1, 3, 1, 1)
    peers = _peers(model, tensor, image, segments, mask, batch, args)
    rows = []
    print(
        f"torch {torch.__version__}; ResNet18 (seeded random), chelsea {size}x{size}, "
        f"batch {batch}, {features} SLIC superpixels; medians of {args.repeats}, timed in turn"
    )
    header = f"{'method':<32}{'evals':>6}{'floor s':>9}{'salmap s':>10}{'÷floor':>8}"
    print(header + "   peers (seconds, salmap ÷ peer)")

    wanted = [name for name in args.methods.split(",") if name] if args.methods else []

    def measure(label, kind, count, ours, peer_names=()):
        if wanted and not any(label.startswith(name) for name in wanted):
            return
        peer_names = [name for name in peer_names if name in peers]
        functions = [floor.run(kind, count), ours] + [peers[name] for name in peer_names]
        seconds = interleaved_medians(functions, args.repeats)
        peer_s = list(zip(peer_names, seconds[2:], strict=True))
        rows.append((label, count, seconds[0], seconds[1], peer_s))
        _print_row(rows[-1])

    common = {"segmentation": "slic", "features": args.features, "batch_size": batch}
    s = args.samples
    measure(
        f"lime ({s} samples)", "forward", s,
        lambda: methods.lime(adapter, images, target, samples=s, **common),
        ("captum Lime", "lime"),
    )  # fmt: skip
    measure(
        f"kernel-shap ({s})", "forward", s,
        lambda: methods.kernel_shap(adapter, images, target, samples=s, **common),
        ("captum KernelShap", "shap Kernel"),
    )  # fmt: skip
    p = args.permutations
    measure(
        f"shapley-sampling ({p} perms)", "forward", 1 + p * features,
        lambda: methods.shapley_sampling(adapter, images, target, permutations=p, **common),
        ("captum ShapleyValueSampling",),
    )  # fmt: skip
    measure(
        "feature-ablation", "forward", 1 + features,
        lambda: methods.feature_ablation(adapter, images, target, **common),
        ("captum FeatureAblation",),
    )  # fmt: skip
    measure(
        f"sobol (8x8, {args.designs} designs)", "forward", args.designs * 66,
        lambda: methods.sobol(adapter, images, target, designs=args.designs, batch_size=batch),
    )  # fmt: skip
    measure(
        f"hsic (8x8, {s} designs)", "forward", s,
        lambda: methods.hsic(adapter, images, target, designs=s, batch_size=batch),
    )  # fmt: skip
    g = args.gradient_samples
    measure(
        f"gradient-shap ({g} samples)", "backward", g,
        lambda: methods.gradient_shap(
            adapter, images, target, baseline="black", samples=g, batch_size=batch
        ),
        ("captum GradientShap",),
    )  # fmt: skip
    measure(
        "deeplift (black)", "pair", 2,
        lambda: methods.deeplift(adapter, images, target, batch_size=batch),
        ("captum DeepLift",),
    )  # fmt: skip
    measure(
        "lrp epsilon-plus", "backward", 1,
        lambda: methods.lrp(adapter, images, target, rule="epsilon-plus"),
        ("z+ minimum", "zennit EpsilonPlus"),
    )  # fmt: skip
    measure(
        "xgrad-cam (layer4)", "backward", 1,
        lambda: methods.xgrad_cam(adapter, images, target, layer="layer4"),
        ("grad-cam XGradCAM",),
    )  # fmt: skip
    measure(
        "eigengrad-cam (layer4)", "backward", 1,
        lambda: methods.eigengrad_cam(adapter, images, target, layer="layer4"),
        ("grad-cam EigenGradCAM",),
    )  # fmt: skip
    measure(
        "ablation-cam (layer4, 512 ch)", "forward", 512,
        lambda: methods.ablation_cam(adapter, images, target, layer="layer4", batch_size=batch),
        ("grad-cam AblationCAM",),
    )  # fmt: skip


def _print_row(row) -> None:
    label, count, floor_s, ours_s, peer_s = row
    text = ", ".join(f"{name} {sec:.3f} ({ours_s / sec:.2f})" for name, sec in peer_s)
    line = f"{label:<32}{count:>6}{floor_s:>9.3f}{ours_s:>10.3f}{ours_s / floor_s:>8.2f}   {text}"
    print(line, flush=True)


def _image(size: int) -> np.ndarray:
    import skimage.data
    from skimage.transform import resize

    return resize(skimage.data.chelsea(), (size, size), anti_aliasing=True).astype(np.float32)


def _peers(model, tensor, image, segments, mask, batch, args) -> dict:
    """Each peer as a no-argument call doing the same work as salmap's method."""
    import torch

    peers = {"z+ minimum": Floor(model, tensor, batch).run("z+", 1)}
    s, g = args.samples, args.gradient_samples
    try:
        import captum.attr as captum

        black = tensor * 0
        peers["captum Lime"] = lambda: captum.Lime(model).attribute(
            tensor, target=1, feature_mask=mask, n_samples=s, perturbations_per_eval=batch
        )
        peers["captum KernelShap"] = lambda: captum.KernelShap(model).attribute(
            tensor, target=1, baselines=black, feature_mask=mask, n_samples=s,
            perturbations_per_eval=batch,
        )  # fmt: skip
        peers["captum ShapleyValueSampling"] = lambda: captum.ShapleyValueSampling(
            model
        ).attribute(
            tensor, target=1, baselines=black, feature_mask=mask, n_samples=args.permutations,
            perturbations_per_eval=batch,
        )  # fmt: skip
        peers["captum FeatureAblation"] = lambda: captum.FeatureAblation(model).attribute(
            tensor, target=1, baselines=black, feature_mask=mask, perturbations_per_eval=batch
        )
        peers["captum GradientShap"] = lambda: captum.GradientShap(model).attribute(
            tensor, baselines=black, target=1, n_samples=g
        )
        reference = _one_relu_per_call(model)
        peers["captum DeepLift"] = lambda: captum.DeepLift(reference).attribute(
            tensor, baselines=black, target=1
        )
    except ImportError:
        pass
    try:
        from lime import lime_image

        def classify(batch_images):
            with torch.no_grad():
                x = torch.from_numpy(np.asarray(batch_images, np.float32).transpose(0, 3, 1, 2))
                return model(x).numpy()

        lime_explainer = lime_image.LimeImageExplainer(random_state=0)
        peers["lime"] = lambda: lime_explainer.explain_instance(
            image.astype(np.float64), classify, labels=(1,), top_labels=None, hide_color=None,
            num_samples=s, batch_size=batch, segmentation_fn=lambda _: segments,
        )  # fmt: skip
    except ImportError:
        pass
    try:
        import shap

        features = int(segments.max()) + 1

        def coalition_scores(coalitions):
            out = []
            for start in range(0, len(coalitions), batch):
                chunk = coalitions[start : start + batch]
                keep = np.take(chunk, segments, axis=1)[..., None]
                x = torch.from_numpy((keep * image).astype(np.float32).transpose(0, 3, 1, 2))
                with torch.no_grad():
                    out.append(model(x)[:, 1].numpy())
            return np.concatenate(out)

        shap_explainer = shap.KernelExplainer(coalition_scores, np.zeros((1, features)))
        peers["shap Kernel"] = lambda: shap_explainer.shap_values(
            np.ones((1, features)), nsamples=s, silent=True
        )
    except ImportError:
        pass
    try:
        from zennit.attribution import Gradient
        from zennit.composites import EpsilonPlus
        from zennit.torchvision import ResNetCanonizer

        def zennit_run():
            composite = EpsilonPlus(canonizers=[ResNetCanonizer()])
            with Gradient(model=model, composite=composite) as attributor:
                attributor(tensor, torch.eye(10)[[1]])

        peers["zennit EpsilonPlus"] = zennit_run
    except ImportError:
        pass
    try:
        import pytorch_grad_cam as cams
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        def grad_cam_run(kind, **options):
            def run():
                with kind(model=model, target_layers=[model.layer4], **options) as cam:
                    x = tensor.clone(memory_format=torch.channels_last).requires_grad_(
                        True
                    )  # frozen weights
                    cam(input_tensor=x, targets=[ClassifierOutputTarget(1)])

            return run

        peers["grad-cam XGradCAM"] = grad_cam_run(cams.XGradCAM)
        peers["grad-cam EigenGradCAM"] = grad_cam_run(cams.EigenGradCAM)
        peers["grad-cam AblationCAM"] = grad_cam_run(cams.AblationCAM, batch_size=batch)
    except ImportError:
        pass
    return peers


def _one_relu_per_call(model):
    """A copy whose ResNet blocks call two ReLU modules (Captum's hooks need it)."""
    import copy
    import types

    import torch
    import torchvision

    model = copy.deepcopy(model)

    def forward(block, x):
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.bn2(block.conv2(out))
        identity = x if block.downsample is None else block.downsample(x)
        return block.second_relu(out + identity)

    for block in model.modules():
        if isinstance(block, torchvision.models.resnet.BasicBlock):
            block.relu, block.second_relu = torch.nn.ReLU(), torch.nn.ReLU()
            block.forward = types.MethodType(forward, block)
    model.relu = torch.nn.ReLU()
    return model

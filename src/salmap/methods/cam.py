"""The class activation map (CAM) family, on one shared path.

Every variant reads one layer's activations ``A`` (N×h×w×C) and the gradient ``G`` of
the class score with respect to them, then only says how it weighs the channels;
the shared path forms ``ReLU(sum_c weight * A_c)`` and resizes it to the image
(bilinear). The layer is named by the user or chosen by the adapter: the last layer
with a spatial output, looking inside nested models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from salmap.maps import resize_map, resize_maps
from salmap.methods.engine import accumulate_scores, chunk_size, map_batches
from salmap.methods.gradients import guided_backprop
from salmap.methods.perturbation import bilinear_matrix, times_image
from salmap.methods.registry import method
from salmap.models.base import require
from salmap.targets import as_targets

__all__ = [
    "CAM_WEIGHTS",
    "class_activation_map",
    "grad_cam",
    "grad_cam_plus_plus",
    "layer_cam",
    "hires_cam",
    "eigen_cam",
    "xgrad_cam",
    "eigengrad_cam",
    "score_cam",
    "guided_grad_cam",
    "ablation_cam",
    "fullgrad",
    "layer_values_and_gradients",
]

_EPSILON = 1e-7


def _grad_cam_weights(values, grads):
    # Selvaraju et al. 2017, Eq. 1: global-average-pooled gradients.
    return grads.mean(axis=(1, 2), keepdims=True)


def _grad_cam_plus_plus_weights(values, grads):
    # Chattopadhay et al. 2018, Eq. 19 with the exponential-score closed form.
    squared = grads**2
    cubed = squared * grads
    sums = values.sum(axis=(1, 2), keepdims=True)
    denominator = 2 * squared + sums * cubed
    alphas = np.where(grads != 0, squared / np.where(denominator != 0, denominator, 1), 0)
    return (alphas * np.maximum(grads, 0)).sum(axis=(1, 2), keepdims=True)


def _layer_cam_weights(values, grads):
    # Jiang et al. 2021, Eq. 4: each location weighed by its own positive gradient.
    return np.maximum(grads, 0)


def _hires_cam_weights(values, grads):
    # Draelos & Carin 2020: the element-wise gradient, no averaging.
    return grads


def _xgrad_cam_weights(values, grads):
    # Fu et al. 2020, Sec. 3.3: gradients averaged with the activations as weights.
    sums = values.sum(axis=(1, 2), keepdims=True)
    return (grads * values / (sums + _EPSILON)).sum(axis=(1, 2), keepdims=True)


#: How each variant weighs the channels: ``(A, G) -> weights`` broadcastable to A.
CAM_WEIGHTS: dict[str, Callable] = {
    "grad-cam": _grad_cam_weights,
    "grad-cam++": _grad_cam_plus_plus_weights,
    "layer-cam": _layer_cam_weights,
    "hires-cam": _hires_cam_weights,
    "xgrad-cam": _xgrad_cam_weights,
}


def layer_values_and_gradients(adapter, images, targets, layer, score, batch_size):
    """The adapter's layer activations and gradients, through the engine's batches.

    Returns ``(images, targets, activations, gradients, scores)``: the images as
    float32 and the targets with one row per image, as the variants need them."""
    require(adapter, "layers", "CAM methods")
    images = np.asarray(images, np.float32)
    targets = as_targets(targets, len(images), score)
    layer = adapter.cam_layer(layer)
    values, grads, scores = map_batches(
        lambda a, b: adapter.layer_values_and_gradients(images[a:b], targets[a:b], layer),
        len(images),
        chunk_size(adapter, batch_size),
    )
    return images, targets, values, grads, scores


def _finish(cams: np.ndarray, images: np.ndarray, relu: bool = True) -> np.ndarray:
    """ReLU, then resize each h×w map to its image's H×W (bilinear)."""
    if relu:
        cams = np.maximum(cams, 0)
    return resize_maps(cams, *images.shape[1:3])


def class_activation_map(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    variant: str = "grad-cam",
    score: str = "logit",
    layer: str | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """The shared CAM path: ``ReLU(sum_c weights_c * A_c)``, resized to the image.

    Returns N×H×W float32, non-negative.
    """
    images, _, values, grads, _ = layer_values_and_gradients(
        adapter, images, targets, layer, score, batch_size
    )
    values = values.astype(np.float64)
    weights = CAM_WEIGHTS[variant](values, grads.astype(np.float64))
    return _finish((weights * values).sum(axis=-1), images)


def _cam_variant(
    variant: str, function_name: str, summary: str, reference: str, aliases=()
) -> Callable:
    """Register a weights-only CAM variant (an entry of :data:`CAM_WEIGHTS`) as a method."""

    def cam(
        adapter,
        images: np.ndarray,
        targets: np.ndarray,
        *,
        score: str = "logit",
        layer: str | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        return class_activation_map(
            adapter,
            images,
            targets,
            variant=variant,
            score=score,
            layer=layer,
            batch_size=batch_size,
        )

    cam.__doc__ = f"""{reference}

    Parameters
    ----------
    adapter, images, targets, score :
        As for every method (images N×H×W×3 in [0, 1]).
    layer : str, optional
        The layer to read (name or ``outer/inner`` path); default the adapter's choice,
        the last layer with a spatial output.
    batch_size : int, optional
        Images per model call.

    Returns
    -------
    N×H×W float32, non-negative, at the images' resolution.
    """
    cam.__name__ = cam.__qualname__ = function_name
    registered = method(variant, summary, family="cam", output="map", signed=False, aliases=aliases)
    return registered(cam)


grad_cam = _cam_variant(
    "grad-cam",
    "grad_cam",
    "layer activations weighed by pooled gradients (Selvaraju et al. 2017)",
    """Grad-CAM: channels weighed by their global-average-pooled gradients.

    References
    ----------
    R. R. Selvaraju, M. Cogswell, A. Das, R. Vedantam, D. Parikh, D. Batra. Grad-CAM:
    Visual Explanations from Deep Networks via Gradient-based Localization. ICCV
    2017, Eq. 1-2.""",
    aliases=("gradcam",),
)

grad_cam_plus_plus = _cam_variant(
    "grad-cam++",
    "grad_cam_plus_plus",
    "Grad-CAM with higher-order channel weights (Chattopadhay et al. 2018)",
    """Grad-CAM++: positive gradients weighed by second/third-order terms.

    References
    ----------
    A. Chattopadhay, A. Sarkar, P. Howlader, V. N. Balasubramanian. Grad-CAM++:
    Improved Visual Explanations for Deep Convolutional Networks. WACV 2018, Eq. 19
    (closed form for an exponential of the score).""",
    aliases=("gradcam++", "grad-cam-plus-plus"),
)

layer_cam = _cam_variant(
    "layer-cam",
    "layer_cam",
    "activations weighed by their own positive gradients (Jiang et al. 2021)",
    """LayerCAM: every location weighed by its own positive gradient.

    References
    ----------
    P.-T. Jiang, C.-B. Zhang, Q. Hou, M.-M. Cheng, Y. Wei. LayerCAM: Exploring
    Hierarchical Class Activation Maps for Localization. IEEE TIP 30, 2021, Eq. 4-5.""",
    aliases=("layercam",),
)

hires_cam = _cam_variant(
    "hires-cam",
    "hires_cam",
    "element-wise gradient × activation, summed over channels (Draelos & Carin 2020)",
    """HiResCAM: the element-wise product of gradients and activations, summed over
    channels (faithful to the score for models ending in global pooling + dense).

    References
    ----------
    R. L. Draelos, L. Carin. Use HiResCAM instead of Grad-CAM for faithful
    explanations of convolutional neural networks. arXiv:2011.08891, 2020, Eq. 4.""",
    aliases=("hirescam",),
)

xgrad_cam = _cam_variant(
    "xgrad-cam",
    "xgrad_cam",
    "gradients averaged with activation weights, axiom-based (Fu et al. 2020)",
    """XGrad-CAM: channels weighed by their gradients averaged with the normalised
    activations, ``w_c = sum_ij (A_c,ij / sum A_c) G_c,ij`` (sensitivity and
    conservation axioms).

    References
    ----------
    R. Fu, Q. Hu, X. Dong, Y. Guo, Y. Gao, B. Li. Axiom-based Grad-CAM: Towards Accurate
    Visualization and Explanation of CNNs. BMVC 2020, Sec. 3.3 (Eq. 13-14).""",
    aliases=("xgradcam",),
)


@method(
    "eigen-cam",
    "first principal component of the activations, class-agnostic (Muhammad 2020)",
    family="cam",
    output="map",
    signed=False,
    aliases=("eigencam",),
)
def eigen_cam(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    layer: str | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Eigen-CAM: the activations projected on their first principal direction.

    Class-agnostic (``targets`` are ignored but for reading the layer). The sign of
    the singular vector is chosen so the map correlates positively with the summed
    activations. Returns N×H×W float32, non-negative.

    References
    ----------
    M. B. Muhammad, M. Yeasin. Eigen-CAM: Class Activation Map using Principal
    Components. IJCNN 2020, Eq. 3-4 (projection of the activations on V_1).
    """
    images, _, values, _, _ = layer_values_and_gradients(
        adapter, images, targets, layer, score, batch_size
    )
    return _finish(principal_projections(values), images)


def principal_projections(values: np.ndarray, center: bool = False) -> np.ndarray:
    """Each N×h×w×C map projected on its first principal direction over the channels:
    N×h×w float64. The sign of the singular vector is chosen so that the projection
    correlates positively with the channel sum; ``center`` subtracts each channel's
    spatial mean first (pytorch-grad-cam's projection for Eigen-Grad-CAM)."""
    cams = []
    for activations in np.asarray(values, np.float64):
        flat = activations.reshape(-1, activations.shape[-1])
        if center:
            flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        projection = flat @ vt[0]
        if np.dot(projection, flat.sum(axis=1)) < 0:
            projection = -projection
        cams.append(projection.reshape(activations.shape[:2]))
    return np.stack(cams)


@method(
    "eigengrad-cam",
    "first principal component of gradient × activation (pytorch-grad-cam)",
    family="cam",
    output="map",
    signed=False,
    aliases=("eigengradcam", "eigen-grad-cam"),
)
def eigengrad_cam(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    layer: str | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Eigen-Grad-CAM: Eigen-CAM of the class-specific product gradient × activation.

    The element-wise product ``G * A`` (HiResCAM's terms, one per location and channel)
    is centred per channel and projected on its first principal direction, which makes
    Eigen-CAM class-discriminative. Returns N×H×W float32, non-negative.

    References
    ----------
    J. Gildenblat and contributors. PyTorch library for CAM methods (pytorch-grad-cam),
    2021, ``EigenGradCAM`` (no paper); after M. B. Muhammad, M. Yeasin. Eigen-CAM. IJCNN
    2020, and R. L. Draelos, L. Carin. HiResCAM. arXiv:2011.08891, 2020.
    """
    images, _, values, grads, _ = layer_values_and_gradients(
        adapter, images, targets, layer, score, batch_size
    )
    products = values.astype(np.float64) * grads.astype(np.float64)
    return _finish(principal_projections(products, center=True), images)


@dataclass(frozen=True)
class _ChannelMasks:
    """Score-CAM's points: each image times each of its channels' upsampled, min-max
    normalised activation maps."""

    values: np.ndarray  # N×h×w×C, the images' activations

    @property
    def count(self) -> int:
        return self.values.shape[-1]

    def prepare_at(self, index, image, rng, target):
        return image, self.values[index]

    def points(self, state, indices):
        image, values = state
        masks = _upsampled_channels(values[..., indices], *image.shape[:2])
        low = masks.min(axis=(1, 2), keepdims=True)
        span = masks.max(axis=(1, 2), keepdims=True) - low
        # In place: a constant map is 0 after the subtraction, whatever it is divided by.
        masks -= low
        masks /= np.where(span > 0, span, 1)
        return times_image(masks, image), None


def _upsampled_channels(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """h×w×K channels -> K×H×W float32, each resized as :func:`salmap.maps.resize_map`.

    Upsampling (the usual case, the layer is coarser than the image) is bilinear and
    separable: ``Y @ A_k @ X.T`` with OpenCV's interpolation matrices, all K channels in
    one batched product, written channel-first. Shrinking goes through OpenCV's area
    interpolation, which takes at most 4 channels per call."""
    values = np.asarray(values, np.float32)
    rows, columns = values.shape[:2]
    if height >= rows and width >= columns:
        channels = np.moveaxis(values, -1, 0)
        return (bilinear_matrix(rows, height) @ channels) @ bilinear_matrix(columns, width).T
    groups = [
        resize_map(values[..., i : i + 4], height, width).reshape(height, width, -1)
        for i in range(0, values.shape[-1], 4)
    ]
    return np.ascontiguousarray(np.moveaxis(np.concatenate(groups, axis=-1), -1, 0))


@method(
    "score-cam",
    "channels weighed by the score of the image they mask (Wang et al. 2020)",
    family="cam",
    output="map",
    signed=False,
    aliases=("scorecam",),
)
def score_cam(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    layer: str | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Score-CAM: channels weighed by the score of the image masked by each channel.

    One forward pass per channel (all in full batches). With ``score="logit"`` the
    channel weights are the softmax over channels of the masked images' logits (as
    pytorch-grad-cam); with ``"probability"``, the class probabilities themselves (as
    the paper's code). Returns N×H×W float32, non-negative.

    References
    ----------
    H. Wang, Z. Wang, M. Du, F. Yang, Z. Zhang, S. Ding, P. Mardziel, X. Hu.
    Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks.
    CVPR workshops 2020, Eq. 5-7.
    """
    images, targets, values, _, _ = layer_values_and_gradients(
        adapter, images, targets, layer, score, batch_size
    )
    # Every image's channel masks in one stream: full batches across images.
    all_scores = accumulate_scores(
        adapter,
        images,
        targets,
        _ChannelMasks(values),
        batch_size=batch_size,
        keep_scores=True,
    ).scores
    cams = []
    for activations, scores in zip(values, all_scores, strict=True):
        if score == "logit":
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
        else:
            weights = scores
        cams.append(activations.astype(np.float64) @ weights)
    return _finish(np.stack(cams), images)


@method(
    "guided-grad-cam",
    "guided backpropagation times Grad-CAM (Selvaraju et al. 2017)",
    family="cam",
    aliases=("guided-gradcam",),
)
def guided_grad_cam(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    layer: str | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Guided Grad-CAM: guided backpropagation times the (upsampled) Grad-CAM map.

    Returns N×H×W×3 float32, signed (the sign of guided backpropagation).

    References
    ----------
    Selvaraju et al. 2017 (see :func:`grad_cam`), Sec. 3.1.
    """
    cams = grad_cam(adapter, images, targets, score=score, layer=layer, batch_size=batch_size)
    guided = guided_backprop(adapter, images, targets, score=score, batch_size=batch_size)
    return guided * cams[..., None]


def _ablated_scores(adapter, images, targets, layer, channels, batch_size) -> np.ndarray:
    """N×channels scores, channel c of ``layer`` zeroed: all images × channels in full
    model batches."""

    def call(start, stop):
        rows = np.arange(start, stop)
        image_rows = rows // channels
        return adapter.layer_ablation_scores(
            images[image_rows], targets[image_rows], layer, rows % channels
        )

    scores = map_batches(call, len(images) * channels, chunk_size(adapter, batch_size))
    return np.asarray(scores, np.float64).reshape(len(images), channels)


@method(
    "ablation-cam",
    "channels weighed by the score drop when each is zeroed (Desai & Ramaswamy 2020)",
    family="cam",
    output="map",
    signed=False,
    aliases=("ablationcam",),
)
def ablation_cam(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    layer: str | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Ablation-CAM: channel ``k`` weighs ``(y - y_k) / y``, the relative score drop when
    the layer's channel ``k`` is zeroed; gradient-free.

    One forward pass per channel and image (all in full batches), through the adapter's
    ``layer_ablation_scores`` (capability ``ablation``: PyTorch and Keras models).
    Returns N×H×W float32, non-negative.

    References
    ----------
    S. Desai, H. G. Ramaswamy. Ablation-CAM: Visual Explanations for Deep Convolutional
    Network via Gradient-free Localization. WACV 2020, Eq. 3-4.
    """
    require(adapter, "ablation", "AblationCAM")
    layer = adapter.cam_layer(layer)
    images, targets, values, _, scores = layer_values_and_gradients(
        adapter, images, targets, layer, score, batch_size
    )
    ablated = _ablated_scores(adapter, images, targets, layer, values.shape[-1], batch_size)
    scores = scores.astype(np.float64)[:, None]
    safe = np.where(np.abs(scores) > _EPSILON, scores, _EPSILON)
    weights = (scores - ablated) / safe
    return _finish(np.einsum("nhwc,nc->nhw", values.astype(np.float64), weights), images)


def _normalised_sum(values: np.ndarray) -> np.ndarray:
    """|values| (N×h×w×C) min-max scaled per image and channel, summed over channels;
    ``1e-7`` is added to the range (as pytorch-grad-cam), so a map that is constant up
    to rounding stays near 0 instead of being blown up to [0, 1]."""
    values = np.abs(values.astype(np.float64))
    values -= values.min(axis=(1, 2), keepdims=True)
    return (values / (values.max(axis=(1, 2), keepdims=True) + _EPSILON)).sum(axis=-1)


@method(
    "fullgrad",
    "input gradient and every bias gradient, full-gradient decomposition (Srinivas & Fleuret 2019)",
    family="cam",
    output="map",
    signed=False,
    aliases=("full-grad",),
)
def fullgrad(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    batch_size: int | None = None,
) -> np.ndarray:
    """FullGrad: ``psi(|grad x * x|) + sum_layers sum_channels psi(|grad b * b|)``.

    The full-gradient decomposition writes the score as the input gradient's term plus
    one bias-gradient term per layer with a bias; each term's absolute value is min-max
    scaled per channel (``psi``), resized to the image and summed, and the sum is scaled
    to [0, 1] (as the authors' code and pytorch-grad-cam). Needs the adapter's bias
    gradients (capability ``biases``: PyTorch); elsewhere a clear error. Returns N×H×W
    float32 in [0, 1].

    References
    ----------
    S. Srinivas, F. Fleuret. Full-Gradient Representation for Neural Network
    Visualization. NeurIPS 2019, Eq. 3 and Sec. 4 (FullGrad saliency).
    """
    require(adapter, "biases", "FullGrad")
    images = np.asarray(images, np.float32)
    targets = as_targets(targets, len(images), score)
    height, width = images.shape[1:3]

    def call(start, stop):
        grads, products = adapter.bias_gradients(images[start:stop], targets[start:stop])
        total = _normalised_sum(grads * images[start:stop])
        for product in products:
            total += resize_maps(_normalised_sum(product), height, width)
        return total

    maps = map_batches(call, len(images), chunk_size(adapter, batch_size))
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return ((maps - low) / np.where(span > 0, span, 1.0)).astype(np.float32)

"""The Itti–Koch–Niebur (1998) saliency model, with its winner-take-all scan path.

Every stage is reachable: :func:`itti_koch_stages` returns the 42 feature maps, the
three conspicuity maps, the saliency map and the sequence of attended locations;
:func:`itti_koch` returns only the map. :func:`map_normalization` is the paper's N(·)
operator and :func:`iterative_normalization` the iterative one of Itti & Koch (2000,
2001); :func:`winner_take_all` turns any saliency map into a scan path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from skimage.measure import label
from skimage.morphology import local_maxima

from salmap.errors import UsageError
from salmap.static._features import (
    ORIENTATIONS,
    broadly_tuned_colours,
    check_rgb,
    gabor_energy,
    gaussian_pyramid,
    intensity,
    reduce_levels,
    upsample_to,
)

__all__ = [
    "itti_koch",
    "itti_koch_stages",
    "IttiKochStages",
    "map_normalization",
    "iterative_normalization",
    "winner_take_all",
    "NORMALIZATIONS",
    "COLOUR_OPPONENCIES",
]

NORMALIZATIONS = ("maxlocal", "iterative")
COLOUR_OPPONENCIES = ("paper", "split")

#: Maps whose range is below this are flat: filtering a uniform image leaves
#: rounding noise of about 1e-7, which normalising to [0, 1] would blow up.
FLAT = 1e-5


@dataclass
class IttiKochStages:
    """Everything the Itti–Koch model computes for one image.

    Attributes
    ----------
    saliency : numpy.ndarray
        H×W float32 saliency map at the input's resolution, in [0, 1] (the scale-4 map
        interpolated; its maximum is 1 unless the image is uniform).
    coarse_saliency : numpy.ndarray
        The saliency map S at pyramid scale 4 (1/16 of the input's width), where the
        winner-take-all runs.
    feature_maps : dict of str to numpy.ndarray
        The 42 centre–surround maps before normalisation, named as in the paper:
        ``I(c,s)``, ``RG(c,s)``, ``BY(c,s)`` and ``O(c,s,θ)`` with θ in degrees; each at
        its centre scale c. With ``colour_opponency="split"``, 54: ``RG``, ``GR``,
        ``BY`` and ``YB`` are the rectified polarities.
    conspicuity : dict of str to numpy.ndarray
        ``intensity``, ``colour`` and ``orientation`` conspicuity maps (Ī, C̄, Ō) at
        scale 4, before the final N(·).
    scan_path : numpy.ndarray
        K×2 float array of attended locations (x, y) in input pixels, in the order
        the winner-take-all selected them.
    scan_values : numpy.ndarray
        K saliency values (of ``coarse_saliency``) at the attended locations.
    foa_radius : float
        Radius of the focus of attention in input pixels.
    params : dict
        The parameters used.
    """

    saliency: np.ndarray
    coarse_saliency: np.ndarray
    feature_maps: dict[str, np.ndarray] = field(default_factory=dict)
    conspicuity: dict[str, np.ndarray] = field(default_factory=dict)
    scan_path: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    scan_values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    foa_radius: float = 0.0
    params: dict = field(default_factory=dict)


def map_normalization(feature: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """The map normalisation operator N(·) of Itti, Koch & Niebur (1998), Section 2.2.

    1. scale the map to the fixed range [0, M] with M = 1;
    2. find the global maximum M and the average m̄ of all its *other* local maxima;
    3. multiply the map by (M − m̄)².

    A map with one strong peak keeps it; a map with many comparable peaks is
    suppressed. Local maxima are plateau-aware (a flat top counts once) and only
    those at least ``threshold`` × M high count, so that noise ripples do not pull m̄
    towards zero (the paper does not say; 1/10 of the range is our choice).

    Parameters
    ----------
    feature : numpy.ndarray
        H×W map, any range.
    threshold : float
        Smallest local maximum, as a fraction of M, included in m̄.

    Returns
    -------
    numpy.ndarray
        H×W float32 in [0, 1]; all zeros for a flat map (range below 10⁻⁵).

    References
    ----------
    L. Itti, C. Koch, E. Niebur. A model of saliency-based visual attention for rapid
    scene analysis. IEEE TPAMI 20(11):1254–1259, 1998. Section 2.2, Fig. 2.
    """
    values = np.asarray(feature, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    if not high - low > FLAT:
        return np.zeros_like(values)
    values = (values - low) / (high - low)
    peaks = local_maxima(values, connectivity=2, allow_borders=True)
    regions, count = label(peaks, connectivity=2, return_num=True)
    if count <= 1:
        return values
    # One value per plateau region (all its pixels are equal).
    flat = regions.ravel()
    first = np.zeros(count + 1, dtype=np.int64)
    first[flat[::-1]] = np.arange(flat.size)[::-1]
    heights = values.ravel()[first[1:]]
    heights = np.sort(heights)[:-1]  # drop the global maximum (one region)
    others = heights[heights >= threshold]
    mean_others = float(others.mean()) if others.size else 0.0
    return (values * (1.0 - mean_others) ** 2).astype(np.float32)


def iterative_normalization(
    feature: np.ndarray,
    iterations: int = 10,
    excitation_sigma: float = 0.02,
    inhibition_sigma: float = 0.25,
    excitation: float = 0.5,
    inhibition: float = 1.5,
    global_inhibition: float = 0.02,
) -> np.ndarray:
    """Iterative, spatially competitive normalisation (Itti & Koch 2000, 2001).

    The map is scaled to [0, 1], then repeatedly convolved with a large
    difference-of-Gaussians (short-range excitation, long-range inhibition) and
    rectified: M ← |M + M * DoG − C_inh|≥0, with
    DoG(x, y) = c_ex²/(2πσ_ex²) e^{−(x²+y²)/2σ_ex²} − c_inh²/(2πσ_inh²) e^{−(x²+y²)/2σ_inh²}.
    Isolated peaks survive, crowds of comparable peaks inhibit each other away.

    Parameters
    ----------
    feature : numpy.ndarray
        H×W map, any range.
    iterations : int
        Number of iterations (the papers vary it; more iterations, sparser maps).
    excitation_sigma, inhibition_sigma : float
        σ_ex and σ_inh as fractions of the map's width (the papers': 2 % and 25 % of
        the input width, which is the same fraction at every pyramid scale).
    excitation, inhibition : float
        c_ex = 0.5 and c_inh = 1.5.
    global_inhibition : float
        C_inh = 0.02, a constant inhibitory bias that removes weak noise.

    Returns
    -------
    numpy.ndarray
        H×W float32, non-negative.

    References
    ----------
    L. Itti, C. Koch. A saliency-based search mechanism for overt and covert shifts
    of visual attention. Vision Research 40:1489–1506, 2000. L. Itti, C. Koch. Feature
    combination strategies for saliency-based visual attention systems. Journal of
    Electronic Imaging 10(1):161–169, 2001, Section 2.3, eq. (2).
    """
    if iterations < 0:
        raise UsageError(f"iterations must be >= 0, got {iterations}")
    values = np.asarray(feature, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    if not high - low > FLAT:
        return np.zeros_like(values)
    values = (values - low) / (high - low)
    width = values.shape[1]
    sigma_ex = max(excitation_sigma * width, 1e-3)
    sigma_in = max(inhibition_sigma * width, 1e-3)
    for _ in range(iterations):
        # cv2's Gaussian kernels sum to 1, so c² scales each lobe to the paper's DoG.
        excited = cv2.GaussianBlur(values, (0, 0), sigma_ex)
        inhibited = cv2.GaussianBlur(values, (0, 0), sigma_in)
        values = values + excitation**2 * excited - inhibition**2 * inhibited - global_inhibition
        np.maximum(values, 0.0, out=values)
    return values


def _normalizer(normalization: str, iterations: int):
    if normalization == "maxlocal":
        return map_normalization
    if normalization == "iterative":
        return lambda feature: iterative_normalization(feature, iterations=iterations)
    raise UsageError(
        f"unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}"
    )


def _centre_surround(
    centre: list[np.ndarray], surround: list[np.ndarray], c: int, s: int
) -> np.ndarray:
    """|centre(c) ⊖ surround(s)|: interpolate the coarse level to the fine one and
    subtract point by point."""
    return np.abs(centre[c] - upsample_to(surround[s], centre[c].shape[:2]))


def itti_koch_stages(
    image: np.ndarray,
    *,
    centers: tuple[int, ...] = (2, 3, 4),
    deltas: tuple[int, ...] = (3, 4),
    saliency_scale: int = 4,
    normalization: str = "maxlocal",
    iterations: int = 10,
    fixations: int = 5,
    foa_fraction: float = 1.0 / 6.0,
    proximity: float = 0.05,
    luminance_cutoff: float = 0.1,
    colour_opponency: str = "paper",
) -> IttiKochStages:
    """Run the Itti–Koch–Niebur model and keep every stage.

    1. Nine-level dyadic Gaussian pyramids (scales 0–8) of the intensity I, the
       broadly tuned colours R, G, B, Y, and Gabor orientation energy O(σ, θ) at
       θ ∈ {0°, 45°, 90°, 135°} (Section 2.1).
    2. Centre–surround differences between a centre scale c ∈ {2, 3, 4} and a
       surround scale s = c + δ, δ ∈ {3, 4}: I(c,s) = |I(c) ⊖ I(s)| (eq. 1),
       RG(c,s) and BY(c,s) (eqs. 2–3), O(c,s,θ) = |O(c,θ) ⊖ O(s,θ)| (eq. 4):
       6 + 12 + 24 = 42 feature maps.
    3. Conspicuity maps at scale 4 by across-scale addition ⊕ of normalised maps:
       Ī = ⊕ N(I(c,s)) (eq. 5), C̄ = ⊕ [N(RG(c,s)) + N(BY(c,s))] (eq. 6),
       Ō = Σ_θ N(⊕ N(O(c,s,θ))) (eq. 7); then S = (N(Ī) + N(C̄) + N(Ō)) / 3 (eq. 8).
    4. A winner-take-all over S selects the focus of attention (FOA); inhibition of
       return suppresses a disk the size of the FOA there, and a small transient
       excitation near the FOA biases the next shift towards nearby locations (the
       "proximity preference", Section 2.3). Repeating yields the scan path.

    The paper's eq. (2) prints RG(c,s) = |(R(c) − G(c)) ⊖ (G(s) − R(s))|, which taken
    literally *adds* the centre and surround opponent signals. Its text describes
    double-opponent cells (centre excited by red and inhibited by green, surround the
    converse), whose response is the difference |(R−G)(c) ⊖ (R−G)(s)|; that is what
    is computed here, and likewise for BY.

    The winner-take-all network of integrate-and-fire neurons in the paper fires
    first at the neuron with the strongest input, so with the map held fixed it
    selects the maximum of S; that is what is computed (no simulated time).

    Parameters
    ----------
    image : numpy.ndarray
        H×W×3 float32 RGB in [0, 1] (see :func:`salmap.load_image`).
    centers, deltas : tuple of int
        Centre scales c and surround offsets δ (paper: {2, 3, 4} and {3, 4}).
    saliency_scale : int
        Pyramid scale of the conspicuity and saliency maps (paper: 4).
    normalization : {"maxlocal", "iterative"}
        N(·) of the 1998 paper (:func:`map_normalization`) or the iterative
        normalisation of Itti & Koch 2000 (:func:`iterative_normalization`).
    iterations : int
        Iterations of the iterative normalisation.
    fixations : int
        Number of attended locations to compute (0 for none).
    foa_fraction : float
        FOA radius as a fraction of the smaller image side (paper: 1/6).
    proximity : float
        Strength of the transient excitation near the last FOA, as a fraction of
        the saliency there (the paper says "small"; ours 0.05). 0 disables it.
    luminance_cutoff : float
        Colour channels are zero where I is below this fraction of its maximum
        (paper: 1/10).
    colour_opponency : {"paper", "split"}
        ``paper``: one map per opponent pair, |RG(c) ⊖ RG(s)|, which "simultaneously
        accounts for red/green and green/red double opponency" (Section 2.1) — and
        so responds alike to a red and a green bar on a neutral background.
        ``split``: the rectified polarities as separate maps (red/green, green/red,
        blue/yellow, yellow/blue; 54 feature maps), so that a lone red bar among
        green ones is unique in its own map and wins the normalisation. See
        "Notes".

    Returns
    -------
    IttiKochStages

    Notes
    -----
    With ``colour_opponency="paper"`` a red bar among green bars on black is told
    apart only by its surround (green neighbours make the surround's R−G negative,
    which raises the red centre's difference and lowers the green ones'). In sparse
    arrays that margin is smaller than the aliasing of thin bars at the coarse
    scales, so the red bar wins only in dense arrays; ``split`` makes colour
    pop-out independent of the set size, as in people.

    References
    ----------
    L. Itti, C. Koch, E. Niebur. A model of saliency-based visual attention for rapid
    scene analysis. IEEE TPAMI 20(11):1254–1259, 1998.
    """
    image = check_rgb(image)
    height, width = image.shape[:2]
    levels = max(max(centers) + max(deltas), saliency_scale) + 1
    if min(centers) < 0 or min(deltas) < 1:
        raise UsageError("centre scales must be >= 0 and surround offsets >= 1")
    normalize = _normalizer(normalization, iterations)
    if colour_opponency not in COLOUR_OPPONENCIES:
        raise UsageError(
            f"unknown colour_opponency {colour_opponency!r}; "
            f"use one of {', '.join(COLOUR_OPPONENCIES)}"
        )

    luminance = intensity(image)
    intensity_pyramid = gaussian_pyramid(luminance, levels)
    colours = {
        name: gaussian_pyramid(channel, levels)
        for name, channel in broadly_tuned_colours(image, luminance_cutoff).items()
    }
    red_green = [r - g for r, g in zip(colours["R"], colours["G"], strict=True)]
    blue_yellow = [b - y for b, y in zip(colours["B"], colours["Y"], strict=True)]
    # O(σ, θ) is only needed at the centre and surround scales.
    needed = sorted({c for c in centers} | {c + d for c in centers for d in deltas})
    orientation_pyramids = {
        theta: {level: gabor_energy(intensity_pyramid[level], theta) for level in needed}
        for theta in ORIENTATIONS
    }

    feature_maps: dict[str, np.ndarray] = {}
    target_shape = intensity_pyramid[saliency_scale].shape[:2]

    def to_saliency_scale(feature: np.ndarray, c: int) -> np.ndarray:
        if c <= saliency_scale:
            return reduce_levels(feature, saliency_scale - c)
        return upsample_to(feature, target_shape)

    intensity_sum = np.zeros(target_shape, np.float32)
    colour_sum = np.zeros(target_shape, np.float32)
    orientation_sums = {theta: np.zeros(target_shape, np.float32) for theta in ORIENTATIONS}
    for c in centers:
        for delta in deltas:
            s = c + delta
            feature = _centre_surround(intensity_pyramid, intensity_pyramid, c, s)
            feature_maps[f"I({c},{s})"] = feature
            intensity_sum += to_saliency_scale(normalize(feature), c)

            colour = np.zeros_like(feature)
            for name, opponent in (("RG", red_green), ("BY", blue_yellow)):
                surround = upsample_to(opponent[s], opponent[c].shape[:2])
                difference = opponent[c] - surround
                if colour_opponency == "paper":
                    feature_maps[f"{name}({c},{s})"] = np.abs(difference)
                    colour += normalize(np.abs(difference))
                else:
                    reverse = name[::-1]
                    feature_maps[f"{name}({c},{s})"] = np.maximum(difference, 0.0)
                    feature_maps[f"{reverse}({c},{s})"] = np.maximum(-difference, 0.0)
                    colour += normalize(np.maximum(difference, 0.0))
                    colour += normalize(np.maximum(-difference, 0.0))
            colour_sum += to_saliency_scale(colour, c)

            for theta in ORIENTATIONS:
                pyramid = orientation_pyramids[theta]
                feature = np.abs(pyramid[c] - upsample_to(pyramid[s], pyramid[c].shape[:2]))
                feature_maps[f"O({c},{s},{theta})"] = feature
                orientation_sums[theta] += to_saliency_scale(normalize(feature), c)

    orientation_sum = np.zeros(target_shape, np.float32)
    for theta in ORIENTATIONS:
        orientation_sum += normalize(orientation_sums[theta])
    conspicuity = {
        "intensity": intensity_sum,
        "colour": colour_sum,
        "orientation": orientation_sum,
    }
    coarse = (normalize(intensity_sum) + normalize(colour_sum) + normalize(orientation_sum)) / 3
    coarse = coarse.astype(np.float32)

    saliency = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    peak = float(saliency.max())
    if peak > 0:
        saliency = saliency / peak
    foa_radius = foa_fraction * min(height, width)
    path, values = winner_take_all(
        coarse, fixations, foa_radius=foa_radius, image_shape=(height, width), proximity=proximity
    )
    params = {
        "centers": tuple(centers),
        "deltas": tuple(deltas),
        "saliency_scale": saliency_scale,
        "normalization": normalization,
        "fixations": fixations,
        "foa_fraction": foa_fraction,
        "proximity": proximity,
        "luminance_cutoff": luminance_cutoff,
        "colour_opponency": colour_opponency,
    }
    if normalization == "iterative":
        params["iterations"] = iterations
    return IttiKochStages(
        saliency=saliency.astype(np.float32),
        coarse_saliency=coarse,
        feature_maps=feature_maps,
        conspicuity=conspicuity,
        scan_path=path,
        scan_values=values,
        foa_radius=float(foa_radius),
        params=params,
    )


def itti_koch(
    image: np.ndarray,
    *,
    centers: tuple[int, ...] = (2, 3, 4),
    deltas: tuple[int, ...] = (3, 4),
    saliency_scale: int = 4,
    normalization: str = "maxlocal",
    iterations: int = 10,
    luminance_cutoff: float = 0.1,
    colour_opponency: str = "paper",
) -> np.ndarray:
    """Itti–Koch–Niebur saliency map of an RGB image.

    See :func:`itti_koch_stages` for the algorithm, the parameters and the feature,
    conspicuity maps and scan path.

    Parameters
    ----------
    image : numpy.ndarray
        H×W×3 float32 RGB in [0, 1].

    Returns
    -------
    numpy.ndarray
        H×W float32 in [0, 1] at the image's resolution.

    References
    ----------
    L. Itti, C. Koch, E. Niebur. A model of saliency-based visual attention for rapid
    scene analysis. IEEE TPAMI 20(11):1254–1259, 1998.

    Examples
    --------
    >>> import salmap
    >>> from salmap.static import itti_koch
    >>> saliency = itti_koch(salmap.load_image("chelsea"))
    >>> saliency.shape
    (300, 451)
    """
    return itti_koch_stages(
        image,
        centers=centers,
        deltas=deltas,
        saliency_scale=saliency_scale,
        normalization=normalization,
        iterations=iterations,
        fixations=0,
        luminance_cutoff=luminance_cutoff,
        colour_opponency=colour_opponency,
    ).saliency


def winner_take_all(
    saliency: np.ndarray,
    count: int,
    *,
    foa_radius: float,
    image_shape: tuple[int, int] | None = None,
    proximity: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Sequence of attended locations: winner-take-all with inhibition of return.

    The winner is the most salient location; a disk of radius ``foa_radius`` around
    it is then inhibited (set to zero) so attention moves on, and for the next
    choice only, locations within two FOA radii are excited by ``proximity`` (the
    "proximity preference" of Koch & Ullman 1985, Itti et al. 1998 Section 2.3).
    Stops early when nothing salient is left.

    Parameters
    ----------
    saliency : numpy.ndarray
        h×w saliency map (e.g. at pyramid scale 4).
    count : int
        Number of locations to attend.
    foa_radius : float
        FOA radius in pixels of ``image_shape``.
    image_shape : (height, width), optional
        Shape of the image the map describes; locations and the radius are in its
        pixels. Default: the map's own shape.
    proximity : float
        Relative excitation near the last FOA for the next choice.

    Returns
    -------
    path : numpy.ndarray
        K×2 float32 (x, y) locations in image pixels, K <= count.
    values : numpy.ndarray
        K float32 saliency values at the winners.
    """
    remaining = np.array(saliency, dtype=np.float64)
    map_h, map_w = remaining.shape
    image_h, image_w = image_shape if image_shape is not None else (map_h, map_w)
    scale_x, scale_y = image_w / map_w, image_h / map_h
    rows, cols = np.mgrid[0:map_h, 0:map_w]
    # Distances in image pixels, so the FOA stays a disk on the photo.
    centres_x = (cols + 0.5) * scale_x - 0.5
    centres_y = (rows + 0.5) * scale_y - 0.5
    path, values = [], []
    excitation = np.ones_like(remaining)
    for _ in range(max(int(count), 0)):
        candidates = remaining * excitation
        winner = int(np.argmax(candidates))
        if not candidates.flat[winner] > 0:
            break
        row, col = divmod(winner, map_w)
        x, y = centres_x[row, col], centres_y[row, col]
        path.append((x, y))
        values.append(remaining[row, col])
        distance = np.hypot(centres_x - x, centres_y - y)
        remaining[distance <= foa_radius] = 0.0
        excitation = 1.0 + proximity * (distance <= 2 * foa_radius)
    return (
        np.asarray(path, dtype=np.float32).reshape(-1, 2),
        np.asarray(values, dtype=np.float32),
    )

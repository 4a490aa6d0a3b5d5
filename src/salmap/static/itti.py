"""The Itti–Koch–Niebur (1998) saliency model, with its winner-take-all scan path.

Every stage is reachable: :func:`itti_koch_stages` returns the 54 feature maps, the
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
    PAD,
    broadly_tuned_colours,
    check_rgb,
    gabor_energy,
    gaussian_pyramid,
    intensity,
    pad_for_pyramid,
    pyramid_shapes,
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
    "ORIENTATION_OPPONENCIES",
    "MAP_RANGES",
]

NORMALIZATIONS = ("maxlocal", "iterative")
COLOUR_OPPONENCIES = ("split", "paper")
ORIENTATION_OPPONENCIES = ("orthogonal", "paper")
MAP_RANGES = ("channel", "map")

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
        The 54 (or 42) centre–surround maps before normalisation, named as in the paper:
        ``I(c,s)``, ``RG(c,s)``, ``BY(c,s)`` and ``O(c,s,θ)`` with θ in degrees; each at
        its centre scale c. With ``colour_opponency="split"`` (54 maps) ``RG``, ``GR``,
        ``BY`` and ``YB`` are the rectified polarities (the default).
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


def _scaled(feature: np.ndarray, maximum: float | None) -> tuple[np.ndarray, float] | None:
    """The map scaled so that ``maximum`` (default: its own range) becomes 1, and its
    top; None for a flat map (range below 10⁻⁵)."""
    values = np.asarray(feature, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    if not high - low > FLAT:
        return None
    scale = high - low if maximum is None else max(float(maximum), high - low)
    return (values - low) / scale, (high - low) / scale


def map_normalization(
    feature: np.ndarray, threshold: float = 0.1, *, maximum: float | None = None
) -> np.ndarray:
    """The map normalisation operator N(·) of Itti, Koch & Niebur (1998), Section 2.2.

    1. scale the map to a fixed range [0, M], M = 1;
    2. find the map's global maximum M and the average m̄ of all its *other* local
       maxima;
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
    maximum : float, optional
        The value scaled to 1. Default: the map's own range (the paper's), which
        lifts a map of rounding ripples to the level of a real one. Passing the
        largest value over all the maps of one feature (they share its unit) keeps a
        weak map weak: its M stays below 1 and its weight (M − m̄)² falls with it.

    Returns
    -------
    numpy.ndarray
        H×W float32 in [0, 1]; all zeros for a flat map (range below 10⁻⁵).

    References
    ----------
    L. Itti, C. Koch, E. Niebur. A model of saliency-based visual attention for rapid
    scene analysis. IEEE TPAMI 20(11):1254–1259, 1998. Section 2.2, Fig. 2.
    """
    scaled = _scaled(feature, maximum)
    if scaled is None:
        return np.zeros(np.shape(feature), np.float32)
    values, top = scaled
    peaks = local_maxima(values, connectivity=2, allow_borders=True)
    regions, count = label(peaks, connectivity=2, return_num=True)
    if count <= 1:
        return (values * top**2).astype(np.float32)
    # One value per plateau region (all its pixels are equal).
    flat = regions.ravel()
    first = np.zeros(count + 1, dtype=np.int64)
    first[flat[::-1]] = np.arange(flat.size)[::-1]
    heights = np.sort(values.ravel()[first[1:]])[:-1]  # drop the global maximum
    others = heights[heights >= threshold * top]
    mean_others = float(others.mean()) if others.size else 0.0
    return (values * (top - mean_others) ** 2).astype(np.float32)


def iterative_normalization(
    feature: np.ndarray,
    iterations: int = 10,
    excitation_sigma: float = 0.02,
    inhibition_sigma: float = 0.25,
    excitation: float = 0.5,
    inhibition: float = 1.5,
    global_inhibition: float = 0.02,
    *,
    maximum: float | None = None,
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
    maximum : float, optional
        The value scaled to 1 (default: the map's own range); see
        :func:`map_normalization`.

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
    scaled = _scaled(feature, maximum)
    if scaled is None:
        return np.zeros(np.shape(feature), np.float32)
    values = scaled[0]
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
        return lambda feature, maximum=None: iterative_normalization(
            feature, iterations=iterations, maximum=maximum
        )
    raise UsageError(
        f"unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}"
    )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}; use one of {', '.join(choices)}")


def _across(pyramid, c: int, s: int, shape: tuple[int, int]) -> np.ndarray:
    """centre(c) ⊖ surround(s): the surround level brought to the centre's and
    subtracted point by point (signed), cropped to the image's part of level c
    (``shape``, after the frame of :func:`pad_for_pyramid`)."""
    difference = pyramid[c] - upsample_to(pyramid[s], pyramid[c].shape[:2])
    offset = PAD >> c
    return difference[offset : offset + shape[0], offset : offset + shape[1]]


def _to_shape(feature: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bring a pyramid-level map to another level's shape: ``pyrDown`` to a coarser
    one (the across-scale addition ⊕), ``pyrUp`` to a finer one."""
    while feature.shape[0] > shape[0] or feature.shape[1] > shape[1]:
        feature = cv2.pyrDown(feature)
    return upsample_to(feature, shape)


def _opponent_pyramids(image: np.ndarray, levels: int, cutoff: float) -> dict[str, list]:
    """Pyramids of the opponent signals R − G and B − Y (Section 2.1), framed."""
    colours = broadly_tuned_colours(image, cutoff)
    return {
        "RG": gaussian_pyramid(pad_for_pyramid(colours["R"] - colours["G"], levels), levels),
        "BY": gaussian_pyramid(pad_for_pyramid(colours["B"] - colours["Y"], levels), levels),
    }


def _orientation_pyramids(intensity_pyramid: list, levels, opponency: str) -> dict[int, dict]:
    """O(σ, θ) at the given levels: Gabor energy, or with ``orthogonal`` opponency
    the energy at θ minus that at θ + 90°, rectified (a vertical bar excites 45° and
    135° alike, so the difference cancels it there)."""
    energy = {
        theta: {level: gabor_energy(intensity_pyramid[level], theta) for level in levels}
        for theta in ORIENTATIONS
    }
    if opponency == "paper":
        return energy
    return {
        theta: {
            level: np.maximum(energy[theta][level] - energy[(theta + 90) % 180][level], 0.0)
            for level in levels
        }
        for theta in ORIENTATIONS
    }


def _feature_maps(intensity_pyramid, opponents, orientations, pairs, colour_opponency, shapes):
    """The centre–surround feature maps by channel, named as in the paper, each
    cropped to the image's part of its level (``shapes``)."""
    maps: dict[str, dict[str, np.ndarray]] = {"intensity": {}, "colour": {}, "orientation": {}}
    for c, s in pairs:
        crop = shapes[c]
        maps["intensity"][f"I({c},{s})"] = np.abs(_across(intensity_pyramid, c, s, crop))
        for name, pyramid in opponents.items():
            difference = _across(pyramid, c, s, crop)
            if colour_opponency == "paper":
                maps["colour"][f"{name}({c},{s})"] = np.abs(difference)
            else:
                maps["colour"][f"{name}({c},{s})"] = np.maximum(difference, 0.0)
                maps["colour"][f"{name[::-1]}({c},{s})"] = np.maximum(-difference, 0.0)
        for theta, pyramid in orientations.items():
            maps["orientation"][f"O({c},{s},{theta})"] = np.abs(_across(pyramid, c, s, crop))
    return maps


def _conspicuity(maps: dict, normalize, map_range: str, shape) -> dict[str, np.ndarray]:
    """Ī, C̄ and Ō at the saliency scale (eqs. 5–7); with ``channel`` range every
    map of one channel is scaled by the channel's largest value before N(·)."""

    def normalise_all(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        top = max(float(m.max()) for m in group.values()) if map_range == "channel" else None
        return {name: normalize(feature, maximum=top) for name, feature in group.items()}

    def across_scales(group: dict[str, np.ndarray]) -> np.ndarray:
        return sum((_to_shape(f, shape) for f in group.values()), np.zeros(shape, np.float32))

    orientations = normalise_all(maps["orientation"])
    per_angle = {
        theta: across_scales({n: f for n, f in orientations.items() if n.endswith(f",{theta})")})
        for theta in ORIENTATIONS
    }
    return {
        "intensity": across_scales(normalise_all(maps["intensity"])),
        "colour": across_scales(normalise_all(maps["colour"])),
        "orientation": across_scales(normalise_all(per_angle)),
    }


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
    colour_opponency: str = "split",
    orientation_opponency: str = "orthogonal",
    map_range: str = "channel",
) -> IttiKochStages:
    """Run the Itti–Koch–Niebur model and keep every stage.

    1. Nine-level dyadic Gaussian pyramids (scales 0–8) of the intensity I, the
       opponent colour signals R − G and B − Y of the broadly tuned colours R, G, B,
       Y, and Gabor orientation energy O(σ, θ) at θ ∈ {0°, 45°, 90°, 135°} (Section
       2.1).
    2. Centre–surround differences between a centre scale c ∈ {2, 3, 4} and a
       surround scale s = c + δ, δ ∈ {3, 4}: I(c,s) = |I(c) ⊖ I(s)| (eq. 1),
       RG(c,s) and BY(c,s) (eqs. 2–3), O(c,s,θ) = |O(c,θ) ⊖ O(s,θ)| (eq. 4).
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
    converse), whose response is the difference (R−G)(c) ⊖ (R−G)(s); that is what
    is computed here, and likewise for BY.

    Levels are registered as ``pyrDown`` samples them (pixel i of level k+1 on pixel
    2i of level k), through :func:`~salmap.static._features.upsample_to`; the
    winner-take-all of the paper's integrate-and-fire network fires first at the
    strongest input, so with the map held fixed it selects the maximum of S.

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
    colour_opponency : {"split", "paper"}
        ``split`` (default): the rectified polarities as separate maps (red/green,
        green/red, blue/yellow, yellow/blue; 54 feature maps), so a lone red bar
        among green ones is alone in its map. ``paper``: one map per opponent pair,
        |RG(c) ⊖ RG(s)|, which "simultaneously accounts for red/green and green/red
        double opponency" (Section 2.1) — and so answers a red and a green bar alike.
    orientation_opponency : {"orthogonal", "paper"}
        ``orthogonal`` (default): O(σ, θ) is the Gabor energy at θ minus that at
        θ + 90°, rectified, so a vertical bar leaves nothing in the 45° and 135° maps
        (it excites both alike) and a 45° bar is alone in the 45° map. ``paper``:
        the Gabor energy itself, whose broad tuning leaves every vertical bar in the
        45° map at about half the tilted bar's response; it also answers the
        repeated border of a bar that touches the image edge, so that among
        identical bars those at the border win (see Notes).
    map_range : {"channel", "map"}
        ``channel`` (default): all the maps of one channel (intensity, colour,
        orientation) are scaled by the channel's largest value before N(·), so that
        maps where the feature is weak (coarse scales where thin bars vanish) stay
        weak. ``map``: each map to its own range, as the paper does.

    Returns
    -------
    IttiKochStages

    Notes
    -----
    The defaults are not all the paper's; they were chosen by measurement on
    random search arrays (``benchmarks/bench_static.py --popout 60``: 480×480 and
    640×400 images, set sizes 4–64, black, grey and white backgrounds, contrast
    0.4–1, half the targets touching the image edge). A colour singleton, an
    orientation singleton and a conjunction target are the map's maximum in:

    - the paper's choices (``paper``, ``paper``, ``map``): 55 %, 72 %, 18 %;
    - the defaults: 100 %, 100 %, 12 % (chance 9 %), and the first attended
      location 100 % of the singletons;
    - the defaults with ``colour_opponency="paper"``: 20 %, 100 %, 13 %;
      ``map_range="map"``: 100 %, 75 %, 13 %; ``orientation_opponency="paper"``:
      100 %, 100 %, 8 %, but among the conjunction arrays' identical bars those
      near the border won 60 % of the time for 35 % of the bars (orthogonal: 38 %).

    Border handling: the pyramids are built on the image framed by its repeated
    border pixels (:func:`~salmap.static._features.pad_for_pyramid`), to a size
    at which every level is exactly half the one below, and levels are registered
    as ``pyrDown`` samples them. A uniform frame 32 or 56 pixels wide around a
    photo then never holds the map's maximum (64 framed photos; README).

    References
    ----------
    L. Itti, C. Koch, E. Niebur. A model of saliency-based visual attention for rapid
    scene analysis. IEEE TPAMI 20(11):1254–1259, 1998.
    """
    image = check_rgb(image)
    _check_options(centers, deltas, colour_opponency, orientation_opponency, map_range)
    pairs = [(c, c + delta) for c in centers for delta in deltas]
    normalize = _normalizer(normalization, iterations)
    options = (luminance_cutoff, colour_opponency, orientation_opponency, map_range)
    grouped, conspicuity, coarse = _coarse_saliency(
        image, pairs, saliency_scale, normalize, *options
    )
    saliency, path, values, foa_radius = _attend(
        coarse, image.shape[:2], fixations, foa_fraction, proximity, 2.0**saliency_scale
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
        "orientation_opponency": orientation_opponency,
        "map_range": map_range,
    }
    if normalization == "iterative":
        params["iterations"] = iterations
    return IttiKochStages(
        saliency=saliency,
        coarse_saliency=coarse,
        feature_maps={name: m for group in grouped.values() for name, m in group.items()},
        conspicuity=conspicuity,
        scan_path=path,
        scan_values=values,
        foa_radius=foa_radius,
        params=params,
    )


def _check_options(centers, deltas, colour_opponency, orientation_opponency, map_range) -> None:
    if min(centers) < 0 or min(deltas) < 1:
        raise UsageError("centre scales must be >= 0 and surround offsets >= 1")
    _check_choice("colour_opponency", colour_opponency, COLOUR_OPPONENCIES)
    _check_choice("orientation_opponency", orientation_opponency, ORIENTATION_OPPONENCIES)
    _check_choice("map_range", map_range, MAP_RANGES)


def _coarse_saliency(
    image,
    pairs,
    saliency_scale,
    normalize,
    cutoff,
    colour_opponency,
    orientation_opponency,
    map_range,
):
    """Feature maps by channel, conspicuity maps and S at the saliency scale."""
    height, width = image.shape[:2]
    levels = max(max(s for _, s in pairs), saliency_scale) + 1
    # The channels are framed, not the RGB image, so that colours are computed from
    # the image's own pixels with its own intensity maximum.
    intensity_pyramid = gaussian_pyramid(pad_for_pyramid(intensity(image), levels), levels)
    opponents = _opponent_pyramids(image, levels, cutoff)
    needed = sorted({level for pair in pairs for level in pair})
    orientations = _orientation_pyramids(intensity_pyramid, needed, orientation_opponency)
    shapes = pyramid_shapes(height, width, levels)
    grouped = _feature_maps(
        intensity_pyramid, opponents, orientations, pairs, colour_opponency, shapes
    )
    conspicuity = _conspicuity(grouped, normalize, map_range, shapes[saliency_scale])
    # The channels have different units: each conspicuity map to its own range.
    coarse = (sum(normalize(m) for m in conspicuity.values()) / 3).astype(np.float32)
    return grouped, conspicuity, coarse


def _attend(coarse, shape, fixations, foa_fraction, proximity, spacing):
    """The saliency map at the image's resolution, in [0, 1], and the scan path."""
    saliency = upsample_to(coarse, shape)
    peak = float(saliency.max())
    saliency = saliency / peak if peak > 0 else saliency
    foa_radius = foa_fraction * min(shape)
    path, values = winner_take_all(
        coarse,
        fixations,
        foa_radius=foa_radius,
        image_shape=shape,
        proximity=proximity,
        spacing=spacing,
    )
    return saliency.astype(np.float32), path, values, float(foa_radius)


def itti_koch(
    image: np.ndarray,
    *,
    centers: tuple[int, ...] = (2, 3, 4),
    deltas: tuple[int, ...] = (3, 4),
    saliency_scale: int = 4,
    normalization: str = "maxlocal",
    iterations: int = 10,
    luminance_cutoff: float = 0.1,
    colour_opponency: str = "split",
    orientation_opponency: str = "orthogonal",
    map_range: str = "channel",
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
        orientation_opponency=orientation_opponency,
        map_range=map_range,
    ).saliency


def winner_take_all(
    saliency: np.ndarray,
    count: int,
    *,
    foa_radius: float,
    image_shape: tuple[int, int] | None = None,
    proximity: float = 0.05,
    spacing: float | None = None,
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
    spacing : float, optional
        Pyramid geometry: map pixel (row, col) lies on image pixel (spacing · col,
        spacing · row), as on a level of :func:`cv2.pyrDown` (spacing 2^k). Default:
        the map's pixels tile the image, each at its tile's centre.

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
    if spacing is None:
        centres_x = (cols + 0.5) * scale_x - 0.5
        centres_y = (rows + 0.5) * scale_y - 0.5
    else:
        centres_x, centres_y = cols * float(spacing), rows * float(spacing)
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

"""Synthetic videos with known moving objects, for tests, benchmarks and demos.

Textured disks move over a textured scene filmed by a camera that may pan, zoom,
rotate, shake and cut to another shot; frames may carry sensor noise and brightness
flicker. Every frame comes with the exact mask of the objects that move relative to
the scene, so motion saliency can be scored against ground truth
(:func:`top_k_iou`). Frames are generated one at a time from fixed-size periodic
textures, so a long video costs no more memory than a short one.

The camera is a similarity map from scene to screen, ``screen = s·R(θ)·(scene − c) +
centre``: a pan moves ``c``, a zoom scales ``s``, a rotation turns ``θ``, a shake adds
random jitter to ``c`` and ``θ`` around that path. Disks live in the scene: a zoom
enlarges them, and their speed relative to the scene is ``speed`` screen pixels per
frame. A disk about to leave the view turns towards its centre (or is carried along
at the edge, as a camera follows a subject, when the camera outruns it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np

__all__ = [
    "synthetic_video",
    "CONDITIONS",
    "condition",
    "top_k_iou",
    "lit_fraction",
    "score_maps",
]

#: Test and benchmark conditions at 640×480: what each changes from a still camera
#: (keyword arguments of :func:`synthetic_video`; see :func:`condition`).
CONDITIONS: dict[str, dict] = {
    "still": {},
    "pan": {"pan": (3.0, 0.0)},
    "zoom in": {"zoom": 0.004},
    "zoom out": {"zoom": -0.004},
    "rotation": {"rotation": 0.3},
    "shake": {"shake": 3.0},
    "cut": {"pan": (3.0, 0.0), "cuts": "half"},
    "noise": {"noise": 10.0},
    "flicker": {"flicker": 0.08},
    "small fast": {"objects": 4, "radius": (6.0, 10.0), "speed": (8.0, 14.0)},
    "small slow": {"objects": 4, "radius": (8.0, 14.0), "speed": (0.7, 1.5)},
}


def condition(name: str, seed: int, size: tuple[int, int] = (640, 480)) -> dict:
    """Keyword arguments of :func:`synthetic_video` for one of :data:`CONDITIONS`.

    The seed also draws the scene: 1 to 3 disks of radius 16 to 40 pixels moving at 1
    to 3 pixels per frame (ranges of the condition's own where it sets them; radii
    scale with the frame height, given for 480).
    """
    changes = dict(CONDITIONS[name])
    rng = np.random.default_rng([seed, 15])
    radius = changes.pop("radius", (16.0, 40.0))
    speed = changes.pop("speed", (1.0, 3.0))
    return {
        "size": size,
        "objects": int(changes.pop("objects", rng.integers(1, 4))),
        "radius": float(rng.uniform(*radius)) * size[1] / 480,
        "speed": float(rng.uniform(*speed)),
        "seed": seed,
        **changes,
    }


def _periodic_texture(
    rng: np.random.Generator, height: int, width: int, scales=(1.5, 4.0, 10.0)
) -> np.ndarray:
    """H×W×3 float32 texture in [0, 1] that tiles seamlessly (filtered in Fourier space).

    Several blur scales mixed: fine grain for the optical flow to lock on, coarse
    blotches for a natural look. Periodicity lets the camera pan forever.
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius2 = fx**2 + fy**2
    # Fourier transform of a mix of Gaussian blurs of standard deviation sigma pixels.
    gain = sum(np.exp(-2 * np.pi**2 * s**2 * radius2) * s for s in scales)
    noise = rng.standard_normal((3, height, width)).astype(np.float32)
    texture = np.fft.irfft2(np.fft.rfft2(noise) * gain, s=(height, width))
    texture = (texture - texture.mean(axis=(1, 2), keepdims=True)) / (
        texture.std(axis=(1, 2), keepdims=True) + 1e-9
    )
    texture = 0.5 + 0.17 * np.moveaxis(texture, 0, -1)
    return np.clip(texture, 0.0, 1.0).astype(np.float32)


class _Shot:
    """One shot: a scene texture and the disks moving over it, in scene coordinates."""

    def __init__(self, rng, size, objects, radius, speed, view) -> None:
        width, height = size
        self.background = _periodic_texture(rng, height, width)
        self.radius = radius
        self.speed = speed
        self.patch_side = int(np.ceil(2 * radius)) + 4
        self.patches, self.centres, self.velocities = [], [], []
        for _ in range(objects):
            patch = _periodic_texture(rng, 2 * self.patch_side, 2 * self.patch_side, (1.0, 2.5))
            # Objects are brighter/darker and more contrasted than the scene, as people are.
            patch = np.clip(0.5 + 1.6 * (patch - 0.5) + rng.uniform(-0.25, 0.25, 3), 0, 1)
            self.patches.append(patch.astype(np.float32))
            screen = rng.uniform(
                [radius + 1, radius + 1], [width - radius - 1, height - radius - 1]
            )
            self.centres.append(_apply(view, screen, inverse=True))
            angle = rng.uniform(0, 2 * np.pi)
            self.velocities.append(np.array([np.cos(angle), np.sin(angle)]))

    def render(self, view: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
        """Frame (H×W×3 float32) and mask through the scene-to-screen map ``view``."""
        width, height = size
        to_scene = cv2.invertAffineTransform(view)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        # Shifting by whole periods changes nothing and keeps coordinates small.
        wrapped = to_scene.copy()
        wrapped[:, 2] %= (self.background.shape[1], self.background.shape[0])
        frame = cv2.warpAffine(
            self.background, wrapped, size, flags=flags, borderMode=cv2.BORDER_WRAP
        )
        mask = np.zeros((height, width), bool)
        xs = np.arange(width, dtype=np.float32)[None, :]
        ys = np.arange(height, dtype=np.float32)[:, None]
        scene_x = to_scene[0, 0] * xs + to_scene[0, 1] * ys + to_scene[0, 2]
        scene_y = to_scene[1, 0] * xs + to_scene[1, 1] * ys + to_scene[1, 2]
        for patch, centre in zip(self.patches, self.centres, strict=True):
            disk = (scene_x - centre[0]) ** 2 + (scene_y - centre[1]) ** 2 <= self.radius**2
            # The disk's texture moves with it: sample its patch at (scene − centre).
            local = to_scene.copy()
            local[:, 2] += self.patch_side - centre
            texture = cv2.warpAffine(patch, local, size, flags=flags, borderMode=cv2.BORDER_WRAP)
            frame[disk] = texture[disk]
            mask |= disk
        return frame, mask

    def move(self, next_view: np.ndarray, size) -> None:
        """Advance the disks one frame, keeping them in the next view."""
        width, height = size
        scale = np.sqrt(abs(np.linalg.det(next_view[:, :2])))
        margin = self.radius * scale + 1
        low, high = np.array([margin, margin]), np.array([width - margin, height - margin])
        centre_of_view = _apply(next_view, np.array([width / 2, height / 2]), inverse=True)
        for k, centre in enumerate(self.centres):
            step = self.speed / scale * self.velocities[k]
            screen = _apply(next_view, centre + step)
            if np.any(screen < low) or np.any(screen > high):
                towards = centre_of_view - centre
                self.velocities[k] = towards / (np.linalg.norm(towards) + 1e-9)
                step = self.speed / scale * self.velocities[k]
                screen = np.clip(_apply(next_view, centre + step), low, high)
            self.centres[k] = _apply(next_view, screen, inverse=True)


def _apply(view: np.ndarray, point: np.ndarray, inverse: bool = False) -> np.ndarray:
    matrix = cv2.invertAffineTransform(view) if inverse else view
    return matrix[:, :2] @ point + matrix[:, 2]


def _views(n_frames, size, pan, zoom, rotation, shake, rng) -> list[np.ndarray]:
    """Scene-to-screen 2×3 similarity maps, one per frame."""
    width, height = size
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    views = []
    for index in range(n_frames):
        look = centre + np.asarray(pan, float) * index
        angle = np.deg2rad(rotation * index)
        if shake > 0:
            look = look + rng.normal(0.0, shake, 2)
            angle += np.deg2rad(rng.normal(0.0, 0.05 * shake))
        scale = (1.0 + zoom) ** index
        turn = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        views.append(np.hstack([turn, (centre - turn @ look)[:, None]]))
    return views


def synthetic_video(
    n_frames: int = 60,
    size: tuple[int, int] = (160, 120),
    *,
    objects: int = 2,
    speed: float = 2.0,
    pan: tuple[float, float] = (0.0, 0.0),
    zoom: float = 0.0,
    rotation: float = 0.0,
    shake: float = 0.0,
    cuts: Sequence[int] | str = (),
    radius: float | None = None,
    noise: float = 2.0,
    flicker: float = 0.0,
    seed: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Generate ``(frame, mask)`` pairs: textured disks moving over a textured scene.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    size : (width, height)
        Frame size in pixels.
    objects : int
        Number of moving disks (0 gives a scene where only the camera may move).
    speed : float
        Speed of each disk relative to the scene, in screen pixels per frame.
    pan : (dx, dy)
        Camera motion in pixels per frame: the scene moves by ``(-dx, -dy)`` on screen.
    zoom : float
        Relative change of the camera's magnification per frame (0.004: zooming in by
        0.4 % a frame; negative: zooming out).
    rotation : float
        Camera roll in degrees per frame.
    shake : float
        Standard deviation of a random jitter of the camera, in pixels per frame (and
        ``0.05·shake`` degrees of roll), around its pan/zoom/rotation path.
    cuts : sequence of int, or "half"
        Frames that start a new shot: another scene texture and other disks (``"half"``:
        one cut at ``n_frames // 2``).
    radius : float, optional
        Disk radius in pixels at the first frame; default one eighth of the height.
    noise : float
        Standard deviation of the sensor noise added to each frame, in 8-bit levels.
    flicker : float
        Standard deviation of a random brightness gain per frame (0.08: ±8 %).
    seed : int
        Seed for textures, directions, start positions, shake, flicker and noise.

    Yields
    ------
    frame : numpy.ndarray
        H×W×3 uint8 RGB.
    mask : numpy.ndarray
        H×W bool, True on the disks (the pixels that move relative to the scene).
    """
    size = (int(size[0]), int(size[1]))
    rng = np.random.default_rng(seed)
    radius = float(radius if radius is not None else size[1] / 8)
    cuts = {n_frames // 2} if cuts == "half" else {int(c) for c in cuts}
    views = _views(n_frames, size, pan, zoom, rotation, shake, rng)
    shot = None
    for index in range(n_frames):
        if shot is None or index in cuts:
            shot = _Shot(rng, size, objects, radius, speed, views[index])
        scene, mask = shot.render(views[index], size)
        gain = 1.0 + flicker * rng.standard_normal() if flicker > 0 else 1.0
        frame = scene * np.float32(255.0 * gain)
        frame += rng.normal(0.0, noise, frame.shape).astype(np.float32) if noise > 0 else 0
        yield np.clip(frame + 0.5, 0, 255).astype(np.uint8), mask
        if index + 1 < n_frames:
            shot.move(views[index + 1], size)


def top_k_iou(saliency: np.ndarray, mask: np.ndarray) -> float:
    """IoU of the map's ``k`` highest pixels with ``mask``, ``k`` = the mask's area.

    Free of any threshold: a map scores 1 when the true moving pixels are exactly its
    top ``k``. An empty mask scores 1 when nothing is asked for.
    """
    k = int(mask.sum())
    if k == 0:
        return 1.0
    top = np.zeros(mask.size, bool)
    top[np.argpartition(saliency.ravel(), -k)[-k:]] = True
    top = top.reshape(mask.shape)
    return float(np.logical_and(top, mask).sum() / np.logical_or(top, mask).sum())


def lit_fraction(saliency: np.ndarray, level: float) -> float:
    """Fraction of the frame at or above ``level`` (e.g. half a video's 99th percentile)."""
    return float(np.mean(saliency >= level))


def score_maps(
    maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], cuts: Sequence[int] = ()
) -> dict[str, float]:
    """How a video's maps find its moving objects, as the issue measured it.

    Returns ``iou``: the mean :func:`top_k_iou` over the frames, leaving out each cut
    frame and the 3 after it; ``lit``: the largest :func:`lit_fraction` in those
    frames at half the video's 99th-percentile map value (NaN without cuts).
    """
    after_cut = {cut + k for cut in cuts for k in range(4)}
    ious = [
        top_k_iou(m, mask)
        for i, (m, mask) in enumerate(zip(maps, masks, strict=True))
        if i not in after_cut
    ]
    level = 0.5 * float(np.percentile(np.stack(maps)[:, ::4, ::4], 99))
    lit = [
        lit_fraction(maps[i], level) for cut in cuts for i in range(cut, min(cut + 3, len(maps)))
    ]
    return {"iou": float(np.mean(ious)), "lit": max(lit) if lit else float("nan")}

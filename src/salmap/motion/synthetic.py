"""Synthetic videos with known moving objects, for tests, benchmarks and demos.

Textured disks move over a textured background; the camera may pan. Every frame
comes with the exact mask of the moving objects, so thresholded motion saliency
can be scored (IoU) against ground truth. Frames are generated one at a time from
a fixed-size periodic texture, so a long video costs no more memory than a short one.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

__all__ = ["synthetic_video"]


def _periodic_texture(
    rng: np.random.Generator, height: int, width: int, scales=(1.5, 4.0, 10.0)
) -> np.ndarray:
    """H×W×3 float32 texture in [0, 1] that tiles seamlessly (filtered in Fourier space).

    Several blur scales mixed: fine grain for the optical flow to lock on, coarse
    blotches for a natural look. Periodicity lets the camera pan forever.
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    radius2 = fx**2 + fy**2
    channels = []
    for _ in range(3):
        spectrum = np.zeros((height, width), np.complex128)
        for sigma in scales:
            noise = np.fft.fft2(rng.standard_normal((height, width)))
            # Fourier transform of a Gaussian blur of standard deviation sigma pixels.
            spectrum += noise * np.exp(-2 * np.pi**2 * sigma**2 * radius2) * sigma
        channel = np.real(np.fft.ifft2(spectrum))
        channel = (channel - channel.mean()) / (channel.std() + 1e-9)
        channels.append(channel)
    texture = np.stack(channels, axis=-1)
    texture = 0.5 + 0.17 * texture
    return np.clip(texture, 0.0, 1.0).astype(np.float32)


def synthetic_video(
    n_frames: int = 60,
    size: tuple[int, int] = (160, 120),
    *,
    objects: int = 2,
    speed: float = 2.0,
    pan: tuple[float, float] = (0.0, 0.0),
    radius: float | None = None,
    noise: float = 2.0,
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
        Speed of each disk relative to the scene, in pixels per frame (directions are
        random; disks bounce off the frame edges).
    pan : (dx, dy)
        Camera motion in pixels per frame: the scene moves by ``(-dx, -dy)`` on screen
        each frame (sub-pixel values are rendered with bilinear interpolation).
    radius : float, optional
        Disk radius in pixels; default one eighth of the height.
    noise : float
        Standard deviation of the sensor noise added to each frame, in 8-bit levels.
    seed : int
        Seed for textures, directions, start positions and noise.

    Yields
    ------
    frame : numpy.ndarray
        H×W×3 uint8 RGB.
    mask : numpy.ndarray
        H×W bool, True on the disks (the pixels that move relative to the scene).
    """
    width, height = int(size[0]), int(size[1])
    rng = np.random.default_rng(seed)
    radius = float(radius if radius is not None else height / 8)
    background = _periodic_texture(rng, 2 * height, 2 * width)
    # Objects are brighter/darker and more contrasted than the scene, as people are.
    patch_side = int(np.ceil(2 * radius)) + 4
    centres, velocities, patches = [], [], []
    for _ in range(objects):
        patch = _periodic_texture(rng, patch_side * 2, patch_side * 2, scales=(1.0, 2.5))
        patch = np.clip(0.5 + 1.6 * (patch - 0.5) + rng.uniform(-0.25, 0.25, 3), 0, 1)
        patches.append(patch.astype(np.float32))
        centres.append(
            rng.uniform([radius + 1, radius + 1], [width - radius - 1, height - radius - 1])
        )
        angle = rng.uniform(0, 2 * np.pi)
        velocities.append(np.array([np.cos(angle), np.sin(angle)]))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    pan_x, pan_y = float(pan[0]), float(pan[1])
    for index in range(n_frames):
        # The scene moves by -pan per frame; BORDER_WRAP makes the texture endless.
        shift = np.float32([[1, 0, -pan_x * index], [0, 1, -pan_y * index]])
        scene = cv2.warpAffine(
            background,
            shift,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_WRAP,
        )
        mask = np.zeros((height, width), bool)
        for k in range(objects):
            cx, cy = centres[k]
            disk = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
            # The disk's texture moves with it: sample its patch at (x - cx, y - cy).
            move = np.float32([[1, 0, -(cx - patch_side)], [0, 1, -(cy - patch_side)]])
            texture = cv2.warpAffine(
                patches[k],
                move,
                (width, height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_WRAP,
            )
            scene[disk] = texture[disk]
            mask |= disk
        frame = scene * 255.0 + rng.normal(0.0, noise, scene.shape).astype(np.float32)
        yield np.clip(frame + 0.5, 0, 255).astype(np.uint8), mask
        for k in range(objects):
            # Screen velocity = velocity relative to the scene + the scene's own motion.
            step = speed * velocities[k] - np.array([pan_x, pan_y])
            nxt = centres[k] + step
            for axis, limit in ((0, width), (1, height)):
                if nxt[axis] < radius + 1 or nxt[axis] > limit - radius - 1:
                    velocities[k][axis] = -velocities[k][axis]
            centres[k] = centres[k] + speed * velocities[k] - np.array([pan_x, pan_y])
            centres[k] = np.clip(centres[k], radius + 1, [width - radius - 1, height - radius - 1])

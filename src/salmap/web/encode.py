"""Maps and images as the page draws them: small PNGs and colour tables.

The page recolours and blends in the browser, so the server sends each map once, as
an 8-bit grey PNG of display values, and the colormaps as 256-entry tables; changing
the colormap or the opacity then never asks the server again.
"""

from __future__ import annotations

import base64
import io

import cv2
import matplotlib
import numpy as np
from PIL import Image

from salmap.maps import SaliencyMap, normalize_map

__all__ = ["COLORMAPS", "colormap_tables", "display_values", "png_data_url", "encode_result"]

#: Colormaps offered by the page (sequential first, then diverging ones).
COLORMAPS = ("inferno", "viridis", "magma", "jet", "turbo", "ocean", "gray", "RdBu_r", "bwr")
DIVERGING = ("RdBu_r", "bwr")
#: Longest side of the map PNG sent to the page (the NPY download keeps full size).
DISPLAY_SIDE = 1024


def colormap_tables() -> dict[str, str]:
    """Each colormap as base64 of 256×3 uint8 RGB."""
    levels = np.linspace(0.0, 1.0, 256)
    return {
        name: base64.b64encode(
            np.round(matplotlib.colormaps[name](levels)[:, :3] * 255).astype(np.uint8).tobytes()
        ).decode("ascii")
        for name in COLORMAPS
    }


def display_values(saliency: np.ndarray, signed: bool, normalize: str) -> np.ndarray:
    """H×W values in [0, 1] to colour: magnitudes scaled by ``normalize``, or, for a
    signed map, 0.5 + 0.5 · map / max |map| (0.5 is no evidence)."""
    values = np.asarray(saliency, np.float32)
    if signed:
        scale = float(np.percentile(np.abs(values), 99.5)) or float(np.abs(values).max())
        if scale <= 0:
            return np.full(values.shape, 0.5, np.float32)
        return np.clip(0.5 + 0.5 * values / scale, 0.0, 1.0)
    return normalize_map(values, normalize, 99.5)


def shrink(array: np.ndarray) -> np.ndarray:
    height, width = array.shape[:2]
    factor = DISPLAY_SIDE / max(height, width)
    if factor >= 1:
        return array
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)


def png_data_url(pixels: np.ndarray) -> str:
    """An H×W or H×W×3 array in [0, 1] as a ``data:image/png`` URL (at most
    :data:`DISPLAY_SIDE` pixels on its longest side)."""
    data = np.round(shrink(np.asarray(pixels, np.float32)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(data).save(buffer, format="PNG", compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def encode_result(result: SaliencyMap, result_id: str, normalize: str) -> dict:
    """The JSON the API answers for one map: the summary, the map as a grey PNG data
    URL, whether it is signed (drawn diverging), and URLs of the downloads."""
    signed = result.signed
    summary = result.to_dict()
    summary.update(
        id=result_id,
        signed=signed,
        normalize="signed" if signed else normalize,
        map=png_data_url(display_values(result.map, signed, normalize)),
        image=f"/api/results/{result_id}/image.png",
        npy=f"/api/results/{result_id}/map.npy",
        json=f"/api/results/{result_id}/result.json",
    )
    scan_path = result.extras.get("scan_path")
    if scan_path is not None:
        summary["scan_path"] = np.asarray(scan_path, float).round(1).tolist()
        summary["foa_radius"] = float(result.extras.get("foa_radius") or 0)
    return summary


def png_bytes(pixels: np.ndarray) -> bytes:
    """An H×W×3 [0, 1] image as PNG bytes (full size)."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(
        buffer, format="PNG", compress_level=3
    )
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return buffer.getvalue()

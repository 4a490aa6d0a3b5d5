"""salmap — saliency maps: which pixels matter to a model, to the eye, in a video.

>>> import salmap
>>> model = salmap.load_model()                      # EfficientNet-Lite0, offline
>>> result = salmap.explain("chelsea", model=model)  # bundled photo of a cat
>>> salmap.plot_maps(result, "figure.png")           # map, input, overlay
"""

from salmap import targets
from salmap.api import explain, explain_video
from salmap.errors import InputError, ModelError, SalmapError, UsageError
from salmap.io import load_image, sample_image
from salmap.maps import SaliencyMap, normalize_map, reduce_channels, resize_map
from salmap.models import available_models, load_model
from salmap.motion import motion_saliency
from salmap.report import evaluate, write_report
from salmap.static import static_saliency
from salmap.viz import overlay, plot_grid, plot_maps, save_heatmap

__all__ = [
    "explain",
    "explain_video",
    "load_model",
    "targets",
    "available_models",
    "static_saliency",
    "motion_saliency",
    "evaluate",
    "write_report",
    "SalmapError",
    "UsageError",
    "InputError",
    "ModelError",
    "SaliencyMap",
    "load_image",
    "sample_image",
    "normalize_map",
    "reduce_channels",
    "resize_map",
    "overlay",
    "plot_maps",
    "plot_grid",
    "save_heatmap",
]

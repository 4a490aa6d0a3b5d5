"""Motion saliency: what moves in a video, with the camera's own motion removed."""

from salmap.motion.flow import (
    CAMERA_MODELS,
    DIS_PRESETS,
    FLOW_METHODS,
    CameraMotion,
    OpticalFlow,
    camera_flow,
    estimate_camera_motion,
    optical_flow,
)
from salmap.motion.saliency import DEFAULT_MAX_WIDTH, motion_saliency
from salmap.motion.synthetic import synthetic_video

__all__ = [
    "motion_saliency",
    "OpticalFlow",
    "optical_flow",
    "CameraMotion",
    "estimate_camera_motion",
    "camera_flow",
    "synthetic_video",
    "FLOW_METHODS",
    "DIS_PRESETS",
    "CAMERA_MODELS",
    "DEFAULT_MAX_WIDTH",
]

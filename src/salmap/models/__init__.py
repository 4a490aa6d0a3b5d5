"""Models: the adapter protocol, the Keras adapter, and the registry of named models."""

from salmap.models.base import SCORES, ModelAdapter
from salmap.models.classes import imagenet_classes, resolve_target
from salmap.models.keras_adapter import KerasAdapter
from salmap.models.preprocessing import PREPROCESS_MODES, make_preprocess
from salmap.models.zoo import DEFAULT_MODEL, MODELS, available_models, load_model

__all__ = [
    "SCORES",
    "ModelAdapter",
    "KerasAdapter",
    "imagenet_classes",
    "resolve_target",
    "PREPROCESS_MODES",
    "make_preprocess",
    "DEFAULT_MODEL",
    "MODELS",
    "available_models",
    "load_model",
]

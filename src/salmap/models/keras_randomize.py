"""Randomised copies of a Keras model, for the sanity cascade (Adebayo et al. 2018).

The user's model is cloned once (``keras.models.clone_model``, weights copied) and only
the clone's layers are re-initialised, top (logits) down, from their own initialisers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from salmap.errors import ModelError
from salmap.models.base import cut_points

__all__ = ["weighted_layers", "cascade"]


def weighted_layers(model) -> list:
    """A Keras model's layers that own weights, in topological order, looking inside
    nested models (a nested model's own layers, not the model as one block)."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(weighted_layers(layer))
        elif layer.weights:
            found.append(layer)
    return found


_INITIALIZER_NAMES = {
    "kernel": ("kernel_initializer", "depthwise_initializer"),
    "depthwise_kernel": ("depthwise_initializer",),
    "pointwise_kernel": ("pointwise_initializer",),
    "recurrent_kernel": ("recurrent_initializer",),
}


def _initializer_for(layer, variable):
    name = variable.name.split("/")[-1].split(":")[0]
    for attribute in _INITIALIZER_NAMES.get(name, (f"{name}_initializer",)):
        initializer = getattr(layer, attribute, None)
        if initializer is not None:
            return initializer
    return None


def _reinitialise(layer, seed: int) -> None:
    """Give ``layer`` fresh weights from its own initialisers (Adebayo et al. §3.1:
    "re-initialise ... with the original initialisation"), seeded; a weight without a
    known initialiser is drawn Glorot-uniform (matrices) or shuffled (vectors)."""
    import keras

    rng = np.random.default_rng(seed)
    for index, variable in enumerate(layer.weights):
        shape = tuple(variable.shape)
        initializer = _initializer_for(layer, variable)
        if initializer is not None:
            config = initializer.get_config()
            if "seed" in config:
                initializer = type(initializer).from_config({**config, "seed": seed + index})
            value = keras.ops.convert_to_numpy(initializer(shape, dtype=variable.dtype))
        elif len(shape) >= 2:
            value = keras.ops.convert_to_numpy(
                keras.initializers.GlorotUniform(seed=seed + index)(shape, dtype=variable.dtype)
            )
        else:
            value = rng.permutation(keras.ops.convert_to_numpy(variable))
        variable.assign(value)


def cascade(adapter, layers, seed: int) -> Iterator[tuple[str, int, object]]:
    """Clone the adapter's Keras model once, then re-initialise the clone's weighted
    layers from the top down, yielding after each cut point. The clone is changed in
    place, so one adapter (compiled once) serves every step."""
    import keras

    from salmap.models.keras_adapter import KerasAdapter

    model = adapter.model
    try:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    except Exception as error:  # noqa: BLE001 - Keras raises many types for unclonable models
        raise ModelError(
            f"cannot copy model {adapter.name!r} for the randomisation test ({error}); "
            "subclassed models cannot be cloned — build the model with the functional API"
        ) from None
    copy = KerasAdapter(
        clone,
        name=adapter.name,
        input_size=adapter.input_size,
        preprocess=adapter.preprocess,
        class_names=adapter.class_names,
        synonyms=adapter.synonyms,
        batch_size=adapter.batch_size,
        output=adapter.output,
    )
    top_down = weighted_layers(clone)[::-1]
    names = [layer.name for layer in top_down]
    done = 0
    for position in cut_points(len(top_down), layers, names):
        for index in range(done, position + 1):
            _reinitialise(top_down[index], seed + 1000 * index)
        done = position + 1
        yield names[position], done, copy

"""The TensorFlow / Keras 3 model adapter."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import numpy as np

from salmap.errors import ModelError
from salmap.models.base import BACKWARD_RULES, as_image_batch, select_output
from salmap.models.preprocessing import make_preprocess
from salmap.targets import Class, Target, as_targets

__all__ = ["KerasAdapter", "TensorFlowOps", "quiet_import_tensorflow"]


def quiet_import_tensorflow(debug: bool = False) -> None:
    """Import TensorFlow with its native start-up chatter (CUDA probing, oneDNN notes)
    kept off the terminal: those lines come from C++ before any Python logging switch
    applies, so stderr's file descriptor is pointed at /dev/null for the import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if debug or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _is_softmax(activation) -> bool:
    return getattr(activation, "__name__", "") == "softmax"


def _logit_view(model):
    """A function ``x -> logits`` that shares ``model``'s layers without changing them.

    Models that end in a softmax (a Dense layer with ``activation="softmax"``, or a
    Softmax/Activation layer) are read just before it: gradients of a saturated
    softmax vanish, the logit's do not. Nothing is cloned or mutated: the view is a
    functional model over the existing layers, and the last Dense layer's own
    kernel and bias are applied by hand.
    """
    import keras

    last = model.layers[-1] if model.layers else None
    if last is None:
        return model
    activation = getattr(last, "activation", None)
    ends_in_softmax = isinstance(last, keras.layers.Softmax) or _is_softmax(activation)
    if not ends_in_softmax:
        return model
    try:
        features = keras.Model(model.inputs, last.input)
    except (ValueError, AttributeError, TypeError) as error:
        raise ModelError(
            f"model {model.name!r} ends in a softmax but its logits cannot be reached "
            f"({error}); use score='probability' or pass a model that outputs logits"
        ) from None
    if isinstance(last, keras.layers.Dense):
        kernel, bias = last.kernel, last.bias

        def dense_logits(x, training=False):
            hidden = features(x, training=training)
            out = keras.ops.matmul(hidden, kernel)
            return out if bias is None else out + bias

        return dense_logits
    if isinstance(last, (keras.layers.Softmax, keras.layers.Activation)):
        return features
    raise ModelError(
        f"model {model.name!r} ends in a {type(last).__name__} with a softmax activation; "
        "salmap can read logits before Dense, Softmax and Activation layers only"
    )


class TensorFlowOps:
    """The tensor operations targets use (:class:`salmap.targets.TensorOps`), in TF."""

    @staticmethod
    def tensor(array):
        import tensorflow as tf

        return tf.constant(np.asarray(array, dtype=np.float32))

    @staticmethod
    def softmax(values):
        import tensorflow as tf

        return tf.nn.softmax(values, axis=-1)

    @staticmethod
    def take_columns(values, columns):
        import tensorflow as tf

        return tf.gather(values, np.asarray(columns, dtype=np.int32), batch_dims=1)

    @staticmethod
    def class_planes(values, index: int):
        return values[..., int(index)]

    @staticmethod
    def spatial_sum(values):
        import tensorflow as tf

        return tf.reduce_sum(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)

    @staticmethod
    def stack(values):
        import tensorflow as tf

        return tf.stack(values)

    @staticmethod
    def to_numpy(values):
        return values.numpy() if hasattr(values, "numpy") else np.asarray(values)


class KerasAdapter:
    """Wrap a ``keras.Model`` (TensorFlow backend) for salmap's methods.

    Parameters
    ----------
    model : keras.Model
        A single-input model taking N×H×W×3 channels-last images. It is never
        modified.
    input_size : (height, width), optional
        The size images are resized to inside the differentiable path; read from the
        model's input shape when it is fixed.
    preprocess : str, dict or callable
        How [0, 1] RGB becomes the model's input (see
        :func:`salmap.models.preprocessing.make_preprocess`).
    class_names, synonyms : sequences, optional
        Class names in output order (and alternative names each) for labels and for
        targets given by name.
    batch_size : int
        Images per model call when the engine is not told otherwise. Each call runs
        exactly the batch it is given.
    output : int, str or callable, optional
        Which of several outputs targets score (see
        :func:`salmap.models.base.select_output`); default the first.

    Class targets run through functions compiled once per score kind and backward
    rule (``tf.function``); other targets are scored eagerly on the compiled forward
    pass, under the same tape.
    """

    framework = "keras"
    #: DeepLIFT and LRP are rules of the PyTorch adapter only, for now.
    backward_rules = BACKWARD_RULES[:3]
    capabilities = frozenset({"layers", "randomize", "ablation"})
    ops = TensorFlowOps()

    def __init__(
        self,
        model,
        *,
        name: str | None = None,
        input_size: tuple[int, int] | None = None,
        preprocess="none",
        class_names: Sequence[str] | None = None,
        synonyms: Sequence[Sequence[str]] | None = None,
        batch_size: int = 32,
        output=None,
    ):
        if len(model.inputs or []) != 1:
            raise ModelError(
                f"model {model.name!r} has {len(model.inputs or [])} inputs; "
                "salmap explains single-input image models"
            )
        shape = tuple(model.inputs[0].shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise ModelError(
                f"model {model.name!r} takes inputs of shape {shape}; salmap needs "
                "N×H×W×3 RGB images (channels last)"
            )
        if input_size is None:
            if shape[1] is None or shape[2] is None:
                raise ModelError(
                    f"model {model.name!r} accepts any image size; say which to use with "
                    "input_size=(H, W) (CLI: --input-size 224)"
                )
            input_size = (int(shape[1]), int(shape[2]))
        self.model = model
        self.name = name or model.name
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.preprocess = preprocess
        self.batch_size = int(batch_size)
        self.output = output
        self._preprocess = make_preprocess(preprocess)
        self._logits = _logit_view(model)
        selected = select_output(list(model.outputs), output if output is not None else 0)
        self.num_classes = int(selected.shape[-1]) if len(selected.shape) == 2 else None
        if class_names is not None and len(class_names) != self.num_classes:
            raise ModelError(
                f"{len(class_names)} class names given for a model with {self.num_classes} outputs"
            )
        self.class_names = list(class_names) if class_names is not None else None
        self.synonyms = synonyms
        self._functions: dict = {}

    # -- the differentiable path ------------------------------------------------
    def _model_input(self, images):
        """[0, 1] images of any size -> the network's input (resized, preprocessed)."""
        import tensorflow as tf

        size = tf.constant(self.input_size, tf.int32)
        # Images already at the model's size skip the (antialiased, hence costly) resize.
        resized = tf.cond(
            tf.reduce_all(tf.shape(images)[1:3] == size),
            lambda: tf.ensure_shape(images, [None, *self.input_size, 3]),
            lambda: tf.image.resize(images, size, method="bilinear", antialias=True),
        )
        return self._preprocess(resized)

    def _outputs(self, images, backward: str = "standard", layer: str | None = None):
        """``(selected outputs, layer activations or None)`` of [0, 1] images."""
        if backward == "standard" and layer is None:
            outputs, activations = self._logits(self._model_input(images), training=False), None
        else:
            outputs, activations = self._view(backward, layer)(self._model_input(images))
        return select_output(outputs, self.output), activations

    def _view(self, backward: str, layer: str | None):
        from salmap.models.keras_views import graph_view

        key = ("view", backward, layer)
        if key not in self._functions:
            self._functions[key] = graph_view(self.model, layer=layer, backward=backward)
        return self._functions[key]

    def _compiled(self, kind: str, score: str | None, backward: str, layer: str | None):
        """One ``tf.function`` per (kind, score, backward rule, layer), traced once:
        ``forward`` -> outputs; ``scores`` / ``gradients`` / ``layer`` for class targets."""
        key = (kind, score, backward, layer)
        if key not in self._functions:
            self._functions[key] = _compile(self, kind, score, backward, layer)
        return self._functions[key]

    # -- the protocol -------------------------------------------------------------
    def predict(self, images: np.ndarray):
        """The model's (selected) outputs for a batch of [0, 1] RGB images, as NumPy."""
        return _numpy(self._compiled("forward", None, "standard", None)(as_image_batch(images)))

    def scores(self, images: np.ndarray, targets: Target) -> np.ndarray:
        """Each image's target score, N float32, forward only."""
        images = as_image_batch(images)
        targets = as_targets(targets, len(images))
        if isinstance(targets, Class):
            function = self._compiled("scores", targets.score, "standard", None)
            return function(images, _columns(targets)).numpy()
        outputs = self._compiled("forward", None, "standard", None)(images)
        return np.asarray(self.ops.to_numpy(targets.scores(outputs, self.ops)), np.float32)

    def gradients(
        self, images: np.ndarray, targets: Target, backward: str = "standard"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of each image's target score w.r.t. the [0, 1] image.

        Returns ``(gradients N×H×W×3 float32, scores N float32)``. ``backward`` is
        ``"standard"``, or ``"guided"`` / ``"deconv"`` for guided backpropagation and
        deconvnet backward rules through the ReLUs (the forward pass is unchanged).
        """
        images = as_image_batch(images)
        targets = as_targets(targets, len(images))
        if isinstance(targets, Class):
            function = self._compiled("gradients", targets.score, backward, None)
            grads, scores = function(images, _columns(targets))
            return grads.numpy(), scores.numpy()
        return self._eager(images, targets, backward, None)[1:]

    def cam_layer(self, layer: str | None = None) -> str:
        """The layer CAM methods read: ``layer`` checked, or the last layer with a spatial
        output (N×H×W×C, H, W > 1), looking inside nested models; a ``/`` path."""
        from salmap.models.keras_views import default_cam_layer, find_layer

        if layer is None:
            return default_cam_layer(self.model)
        return "/".join(item.name for item in find_layer(self.model, layer))

    def layer_values_and_gradients(
        self, images: np.ndarray, targets: Target, layer: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A layer's activations and the gradient of each image's target score w.r.t. them.

        Returns ``(activations N×h×w×C, gradients N×h×w×C, scores N)`` float32, for
        ``layer`` (name or ``outer/inner`` path; default :meth:`cam_layer`).
        """
        layer = self.cam_layer(layer)
        images = as_image_batch(images)
        targets = as_targets(targets, len(images))
        if isinstance(targets, Class):
            function = self._compiled("layer", targets.score, "standard", layer)
            values, grads, scores = (t.numpy() for t in function(images, _columns(targets)))
        else:
            values, grads, scores = self._eager(images, targets, "standard", layer)
        if values.ndim != 4:
            raise ModelError(
                f"layer {layer!r} outputs shape {values.shape[1:]}; CAM methods need N×H×W×C"
            )
        return values, grads, scores

    def layer_ablation_scores(
        self, images: np.ndarray, targets: Target, layer: str | None, channels
    ) -> np.ndarray:
        """Each image's target score (N float32, forward only) with channel
        ``channels[i]`` of ``layer`` zeroed in image ``i`` (``-1``: none)."""
        import tensorflow as tf

        from salmap.models.keras_views import graph_view

        layer = self.cam_layer(layer)
        images = as_image_batch(images)
        targets = as_targets(targets, len(images))
        key = ("ablation", layer)
        if key not in self._functions:
            view = graph_view(self.model, layer=layer, ablate=True)
            self._functions[key] = tf.function(
                lambda x, c: select_output(view(self._model_input(x), c)[0], self.output),
                input_signature=[
                    tf.TensorSpec([None, None, None, 3], tf.float32),
                    tf.TensorSpec([None], tf.int32),
                ],
            )
        outputs = self._functions[key](images, np.asarray(channels, np.int32))
        return np.asarray(self.ops.to_numpy(targets.scores(outputs, self.ops)), np.float32)

    def _eager(self, images, targets: Target, backward: str, layer: str | None):
        """Any target on the compiled path: ``(activations or None, gradients, scores)``
        with gradients w.r.t. the layer (when given) or the image."""
        import tensorflow as tf

        images = tf.constant(images)
        forward = self._compiled("outputs", None, backward, layer)
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs, activations = forward(images)
            scores = targets.scores(outputs, self.ops)
        source = images if layer is None else activations
        grads = tape.gradient(scores, source)
        values = None if layer is None else activations.numpy()
        return values, grads.numpy(), np.asarray(scores.numpy(), np.float32)

    # -- the sanity cascade -----------------------------------------------------------
    def cascade_layers(self) -> list[str]:
        """Names of the layers with weights, output first (nested models looked into)."""
        from salmap.models.keras_randomize import weighted_layers

        return [layer.name for layer in weighted_layers(self.model)[::-1]]

    def randomization_cascade(self, layers, seed: int):
        """Randomise a clone of the model top-down (see
        :func:`salmap.models.keras_randomize.cascade`); the user's model is untouched."""
        from salmap.models.keras_randomize import cascade

        return cascade(self, layers, seed)

    def __repr__(self) -> str:
        return (
            f"KerasAdapter({self.name!r}, input_size={self.input_size}, "
            f"preprocess={self.preprocess!r}, classes={self.num_classes})"
        )


def _compile(adapter: KerasAdapter, kind: str, score, backward: str, layer):
    import tensorflow as tf

    images_spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    columns_spec = tf.TensorSpec([None], tf.int32)

    def class_scores(outputs, columns):
        values = tf.nn.softmax(outputs) if score == "probability" else outputs
        return tf.gather(values, columns, batch_dims=1)

    if kind == "forward":
        return tf.function(lambda x: adapter._outputs(x)[0], input_signature=[images_spec])
    if kind == "outputs":
        return tf.function(
            lambda x: adapter._outputs(x, backward, layer), input_signature=[images_spec]
        )
    if kind == "scores":

        def scores(images, columns):
            return class_scores(adapter._outputs(images)[0], columns)

        return tf.function(scores, input_signature=[images_spec, columns_spec])

    def gradients(images, columns):
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs, activations = adapter._outputs(images, backward, layer)
            values = class_scores(outputs, columns)
        if layer is None:
            return tape.gradient(values, images), values
        return activations, tape.gradient(values, activations), values

    return tf.function(gradients, input_signature=[images_spec, columns_spec])


def _columns(targets: Class) -> np.ndarray:
    return np.asarray(targets.index, dtype=np.int32)


def _numpy(outputs):
    """Model outputs (a tensor, or a structure of them) as NumPy."""
    if hasattr(outputs, "numpy"):
        return outputs.numpy()
    if isinstance(outputs, dict):
        return {key: _numpy(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_numpy(value) for value in outputs)
    return np.asarray(outputs)

"""The TensorFlow / Keras 3 model adapter."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from salmap.errors import ModelError, UsageError
from salmap.models.base import SCORES
from salmap.models.preprocessing import make_preprocess

__all__ = ["KerasAdapter"]


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


class KerasAdapter:
    """Wrap a ``keras.Model`` (TensorFlow backend) for salmap's methods.

    Parameters
    ----------
    model : keras.Model
        A single-input classifier taking N×H×W×3 channels-last images. It is never
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
        Largest batch sent through the model at once; bigger requests are chunked
        so memory stays bounded.
    """

    framework = "keras"

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
    ):
        import tensorflow as tf

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
        self._preprocess = make_preprocess(preprocess)
        self._logits = _logit_view(model)
        self.num_classes = int(model.outputs[0].shape[-1])
        if class_names is not None and len(class_names) != self.num_classes:
            raise ModelError(
                f"{len(class_names)} class names given for a model with {self.num_classes} outputs"
            )
        self.class_names = list(class_names) if class_names is not None else None
        self.synonyms = synonyms
        images = tf.TensorSpec([None, None, None, 3], tf.float32)
        targets = tf.TensorSpec([None], tf.int32)
        self._predict_fn = tf.function(self._forward, input_signature=[images])
        self._gradient_fns = {
            score: tf.function(
                lambda x, t, s=score: self._score_gradients(x, t, s),
                input_signature=[images, targets],
            )
            for score in SCORES
        }

    # -- the differentiable path ------------------------------------------------
    def _forward(self, images):
        return self._logits(self._model_input(images), training=False)

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

    def _score_gradients(self, images, targets, score):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = self._forward(images)
            values = tf.nn.softmax(logits) if score == "probability" else logits
            scores = tf.gather(values, targets, batch_dims=1)
        # Samples are independent (inference mode), so the gradient of the sum is
        # each image's own gradient.
        return tape.gradient(scores, images), scores

    # -- the protocol -------------------------------------------------------------
    def predict(self, images: np.ndarray) -> np.ndarray:
        """Logits for a batch of [0, 1] RGB images (N×H×W×3) -> N×classes float32."""
        images = _as_batch(images)
        chunks = [
            self._predict_fn(images[i : i + self.batch_size]).numpy()
            for i in range(0, len(images), self.batch_size)
        ]
        return _joined(chunks)

    def gradients(
        self, images: np.ndarray, targets, score: str = "logit", backward: str = "standard"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of each image's target score w.r.t. the [0, 1] image.

        Returns ``(gradients N×H×W×3 float32, scores N float32)``; ``score`` is
        ``"logit"`` (pre-softmax, default) or ``"probability"``. ``backward`` is
        ``"standard"``, or ``"guided"`` / ``"deconv"`` for guided backpropagation and
        deconvnet backward rules through the ReLUs (the forward pass is unchanged).
        """
        if score not in SCORES:
            raise UsageError(f"unknown score {score!r}; use 'logit' or 'probability'")
        images = _as_batch(images)
        targets = np.broadcast_to(np.asarray(targets, dtype=np.int32), (len(images),))
        function = (
            self._gradient_fns[score]
            if backward == "standard"
            else self._modified_gradient_fn(score, backward)
        )
        grads, scores = [], []
        for i in range(0, len(images), self.batch_size):
            g, s = function(images[i : i + self.batch_size], targets[i : i + self.batch_size])
            grads.append(g.numpy())
            scores.append(s.numpy())
        return _joined(grads), _joined(scores)

    # -- inner layers and modified backward rules (CAMs, guided backpropagation) ----
    def _view_fn(self, key, build):
        views = self.__dict__.setdefault("_view_fns", {})
        if key not in views:
            views[key] = build()
        return views[key]

    def _modified_gradient_fn(self, score: str, backward: str):
        import tensorflow as tf

        from salmap.models.keras_views import graph_view

        def build():
            view = graph_view(self.model, backward=backward)

            def function(images, targets):
                with tf.GradientTape() as tape:
                    tape.watch(images)
                    logits, _ = view(self._model_input(images))
                    values = tf.nn.softmax(logits) if score == "probability" else logits
                    scores = tf.gather(values, targets, batch_dims=1)
                return tape.gradient(scores, images), scores

            return tf.function(function, input_signature=_SIGNATURE())

        return self._view_fn(("gradients", score, backward), build)

    def cam_layer(self, layer: str | None = None) -> str:
        """The layer CAM methods read: ``layer`` checked, or the last layer with a spatial
        output (N×H×W×C, H, W > 1), looking inside nested models; a ``/`` path."""
        from salmap.models.keras_views import default_cam_layer, find_layer

        if layer is None:
            return default_cam_layer(self.model)
        return "/".join(item.name for item in find_layer(self.model, layer))

    def layer_values_and_gradients(
        self, images: np.ndarray, targets, layer: str | None = None, score: str = "logit"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A layer's activations and the gradient of each image's target score w.r.t. them.

        Returns ``(activations N×h×w×C, gradients N×h×w×C, scores N)`` float32, for
        ``layer`` (name or ``outer/inner`` path; default :meth:`cam_layer`).
        """
        import tensorflow as tf

        from salmap.models.keras_views import graph_view

        if score not in SCORES:
            raise UsageError(f"unknown score {score!r}; use 'logit' or 'probability'")
        layer = self.cam_layer(layer)

        def build():
            view = graph_view(self.model, layer=layer)

            def function(images, targets):
                with tf.GradientTape() as tape:
                    logits, activations = view(self._model_input(images))
                    values = tf.nn.softmax(logits) if score == "probability" else logits
                    scores = tf.gather(values, targets, batch_dims=1)
                return activations, tape.gradient(scores, activations), scores

            return tf.function(function, input_signature=_SIGNATURE())

        function = self._view_fn(("layer", layer, score), build)
        images = _as_batch(images)
        targets = np.broadcast_to(np.asarray(targets, dtype=np.int32), (len(images),))
        parts = [
            [
                t.numpy()
                for t in function(images[i : i + self.batch_size], targets[i : i + self.batch_size])
            ]
            for i in range(0, len(images), self.batch_size)
        ]
        values, grads, scores = (
            np.concatenate(column, axis=0) for column in zip(*parts, strict=True)
        )
        if values.ndim != 4:
            raise ModelError(
                f"layer {layer!r} outputs shape {values.shape[1:]}; CAM methods need N×H×W×C"
            )
        return values, grads, scores

    def __repr__(self) -> str:
        return (
            f"KerasAdapter({self.name!r}, input_size={self.input_size}, "
            f"preprocess={self.preprocess!r}, classes={self.num_classes})"
        )


def _SIGNATURE():  # noqa: N802 - a constant built lazily (TensorFlow imports late)
    import tensorflow as tf

    return [tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None], tf.int32)]


def _joined(chunks: list) -> np.ndarray:
    """The chunks as one array (no copy for a single chunk, the common case)."""
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=0)


def _as_batch(images) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise UsageError(f"expected a batch of RGB images N×H×W×3, got shape {images.shape}")
    return images

"""Functional views of a Keras model: inner activations, logits, modified backward rules.

Everything here re-runs the *existing* layers of the user's model through Keras'
functional graph, replacing some calls on the way (a layer's output is recorded, a
ReLU gets a guided backward rule, a final softmax is skipped). No layer is cloned,
no weight copied, no attribute of the model changed.
"""

from __future__ import annotations

from collections.abc import Callable

from salmap.errors import ModelError, UsageError

__all__ = ["BACKWARD_RULES", "find_layer", "default_cam_layer", "graph_view"]

#: Backward rules for ReLU units: ordinary autodiff, guided backpropagation
#: (Springenberg et al. 2015) and deconvnet (Zeiler & Fergus 2014).
BACKWARD_RULES = ("standard", "guided", "deconv")

_SEPARATOR = "/"


def _keras():
    import keras

    return keras


def _functional_of(model):
    """The Functional graph behind a model (Sequential keeps one inside), or None."""
    from keras.src.models.functional import Functional

    if isinstance(model, Functional):
        return model
    inner = getattr(model, "_functional", None)
    return inner if isinstance(inner, Functional) else None


def _is_model(layer) -> bool:
    return isinstance(layer, _keras().Model)


def _spatial_output(layer) -> bool:
    """Whether a layer's output is N×H×W×C with H and W larger than 1."""
    try:
        shape = tuple(layer.output.shape)
    except (AttributeError, ValueError, RuntimeError):
        return False
    return len(shape) == 4 and all(s is not None and s > 1 for s in shape[1:3])


def default_cam_layer(model) -> str:
    """The last layer whose output is 4-D with height and width > 1, inside nested models.

    Topological order of ``model.layers`` is followed from the end; a nested model
    is searched inside rather than taken whole, so the answer is an actual layer
    (e.g. ``resnet50/conv5_block3_out``, after the last residual addition and ReLU,
    not the last Conv2D before them). Returned as a ``/``-separated path.
    """
    path = _last_spatial(model)
    if path is None:
        raise ModelError(
            f"model {model.name!r} has no layer with a spatial (N×H×W×C, H, W > 1) output; "
            "CAM methods need a convolutional layer"
        )
    return _SEPARATOR.join(path)


def _last_spatial(model) -> list[str] | None:
    for layer in reversed(model.layers):
        if _is_model(layer) and _functional_of(layer) is not None:
            inner = _last_spatial(layer)
            if inner is not None:
                return [layer.name, *inner]
            continue
        if _spatial_output(layer):
            return [layer.name]
    return None


def find_layer(model, name: str) -> list:
    """Resolve a layer name (or ``outer/inner`` path) to the chain of layers reaching it.

    A bare name is searched at the top level first, then inside nested models.
    Returns ``[nested_model, ..., layer]``.
    """
    parts = [p for p in str(name).split(_SEPARATOR) if p]
    if not parts:
        raise UsageError("empty layer name")
    chain = _walk(model, parts)
    if chain is None and len(parts) == 1:
        chain = _search(model, parts[0])
    if chain is None:
        raise UsageError(
            f"model {model.name!r} has no layer {name!r}; spatial layers near the end: "
            f"{', '.join(_spatial_names(model)[-5:])}"
        )
    return chain


def _walk(model, parts):
    try:
        layer = model.get_layer(parts[0])
    except ValueError:
        return None
    if len(parts) == 1:
        return [layer]
    if not _is_model(layer):
        return None
    rest = _walk(layer, parts[1:])
    return None if rest is None else [layer, *rest]


def _search(model, name):
    for layer in model.layers:
        if layer.name == name:
            return [layer]
    for layer in model.layers:
        if _is_model(layer):
            found = _search(layer, name)
            if found is not None:
                return [layer, *found]
    return None


def _spatial_names(model, prefix: str = "") -> list[str]:
    names = []
    for layer in model.layers:
        if _is_model(layer):
            names.extend(_spatial_names(layer, prefix + layer.name + _SEPARATOR))
        elif _spatial_output(layer):
            names.append(prefix + layer.name)
    return names


# -- the graph runner ---------------------------------------------------------------
def _inference(op) -> Callable:
    def call(*args, **kwargs):
        if "training" in getattr(op, "_call_context_args", {}):
            kwargs["training"] = False
        return op(*args, **kwargs)

    return call


def _run(model, inputs, rewrite: Callable):
    """Run ``model`` on ``inputs`` with each operation ``op`` called as ``rewrite(op)``
    when that returns a callable, recursing into nested functional models."""
    functional = _functional_of(model)
    if functional is None:
        raise ModelError(
            f"model {model.name!r} is a subclassed keras.Model; salmap reads inner layers "
            "and changes backward rules only in functional or Sequential models"
        )

    def operation_fn(op):
        replaced = rewrite(op)
        if replaced is not None:
            return replaced
        if _is_model(op) and _functional_of(op) is not None:
            return lambda x, *args, **kwargs: _run(op, x, rewrite)
        return _inference(op)

    outputs = functional._run_through_graph(inputs, operation_fn)
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


# -- ReLU backward rules -------------------------------------------------------------
def _relu_kind(op) -> bool:
    """Whether ``op`` is (or ends in) a rectifier whose backward rule may change."""
    keras = _keras()
    if isinstance(op, keras.layers.ReLU):
        slope = float(getattr(op, "negative_slope", 0.0) or 0.0)
        return slope == 0.0 and float(getattr(op, "threshold", 0.0) or 0.0) == 0.0
    activation = getattr(op, "activation", None)
    return getattr(activation, "__name__", "") in ("relu", "relu6")


class _Linear:
    """Attribute proxy of a layer with ``activation=None``: calling the layer's class
    ``call`` on it gives the pre-activation without touching the layer itself."""

    activation = None

    def __init__(self, layer):
        object.__setattr__(self, "_layer", layer)

    def __getattr__(self, name):
        return getattr(self._layer, name)


def _rectifier(rule: str, activation: Callable) -> Callable:
    """``activation`` forward; guided or deconvnet backward."""
    import tensorflow as tf

    @tf.custom_gradient
    def rectify(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            y = activation(z)

        def backward(upstream):
            positive = upstream * tf.cast(upstream > 0, upstream.dtype)
            if rule == "deconv":
                # Zeiler & Fergus 2014: the backward ReLU gates on the signal only.
                return positive
            # Springenberg et al. 2015, Eq. 6: gate on the forward input and the signal.
            return tape.gradient(y, z, output_gradients=positive)

        return y, backward

    return rectify


def _guided_call(op, rule: str) -> Callable:
    keras = _keras()
    if isinstance(op, keras.layers.ReLU):
        return lambda x, *a, **k: _rectifier(rule, op)(x)
    activation = op.activation
    if isinstance(op, keras.layers.Activation):
        return lambda x, *a, **k: _rectifier(rule, activation)(x)

    def call(x, *args, **kwargs):
        kwargs.pop("training", None)
        pre_activation = type(op).call(_Linear(op), x, *args, **kwargs)
        return _rectifier(rule, activation)(pre_activation)

    return call


# -- the view ------------------------------------------------------------------------
def _softmax_skip(model) -> dict:
    """Replacement for a final softmax so the view returns logits (as the adapter does)."""
    keras = _keras()
    last = model.layers[-1] if model.layers else None
    if last is None:
        return {}
    if isinstance(last, keras.layers.Softmax):
        return {id(last): lambda x, *a, **k: x}
    if getattr(getattr(last, "activation", None), "__name__", "") != "softmax":
        return {}
    if isinstance(last, keras.layers.Activation):
        return {id(last): lambda x, *a, **k: x}
    if isinstance(last, keras.layers.Dense):

        def dense_logits(x, *a, **k):
            out = keras.ops.matmul(x, last.kernel)
            return out if last.bias is None else out + last.bias

        return {id(last): dense_logits}
    raise ModelError(
        f"model {model.name!r} ends in a {type(last).__name__} with a softmax; salmap reads "
        "logits before Dense, Softmax and Activation layers only"
    )


def graph_view(
    model, *, layer: str | None = None, backward: str = "standard", ablate: bool = False
) -> Callable:
    """A function ``x -> (logits, activations or None)`` over the model's own layers.

    Parameters
    ----------
    model : keras.Model
        Functional or Sequential (nested models inside are fine). Not modified.
    layer : str, optional
        Layer whose output is returned as well (path as in :func:`find_layer`).
    backward : {"standard", "guided", "deconv"}
        Backward rule of the ReLU units (ReLU layers, ``relu``/``relu6`` activations
        inside Conv/Dense layers); the forward pass is unchanged.
    ablate : bool
        The view takes ``(x, channels)`` and zeroes channel ``channels[i]`` (last axis)
        of ``layer``'s output for sample ``i`` (``-1``: none), for Ablation-CAM.
    """
    if backward not in BACKWARD_RULES:
        raise UsageError(f"unknown backward rule {backward!r}; use {', '.join(BACKWARD_RULES)}")
    captured_layer = find_layer(model, layer)[-1] if layer is not None else None
    replacements = _softmax_skip(model)

    def view(x, channels=None):
        captured = []

        def rewrite(op):
            call = replacements.get(id(op))
            if call is None and backward != "standard" and _relu_kind(op):
                call = _guided_call(op, backward)
            if op is captured_layer:
                inner = call or _inference(op)

                def capture(*args, **kwargs):
                    out = inner(*args, **kwargs)
                    if ablate:
                        out = _zero_channels(out, channels)
                    captured.append(out)
                    return out

                return capture
            return call

        logits = _run(model, x, rewrite)
        if captured_layer is not None and not captured:
            raise ModelError(f"layer {layer!r} is not on the path from input to output")
        return logits, (captured[-1] if captured else None)

    return view


def _zero_channels(values, channels):
    """``values`` (N×...×C) with channel ``channels[i]`` of sample ``i`` set to zero."""
    import tensorflow as tf

    keep = 1.0 - tf.one_hot(channels, values.shape[-1], dtype=values.dtype)
    shape = tf.concat([tf.shape(keep)[:1], tf.ones([len(values.shape) - 2], tf.int32), [-1]], 0)
    return values * tf.reshape(keep, shape)

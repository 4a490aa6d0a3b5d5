"""The Ray Data engine: the same per-batch functions as the local engine, scaled out.

Inputs become a Ray dataset; ``map_batches(decode)`` runs as CPU tasks (decoding,
hashing, resizing — Ray's streaming executor keeps them ahead of the model, with its
object store as the bounded buffer); ``map_batches(Explainer)`` runs one model per
actor (``concurrency`` actors, ``num_gpus`` each), writes the map files from the actor
(``OUT`` must be a folder every node sees) and returns manifest rows only, which the
driver appends to the manifest in committed parts exactly as the local engine does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import numpy as np

from salmap.batch.decode import Sample, decode_many
from salmap.batch.inputs import Input
from salmap.batch.pipeline import Explained, Settings, explain_batch, write_outputs
from salmap.batch.run import _all_done, had_error

__all__ = ["ray_batches", "Explainer", "decode_rows", "start_ray", "require_ray"]

_EMPTY = np.zeros((0, 0, 3), np.float32)


def require_ray() -> None:
    """Fail with one line, before any work, where Ray Data is not installed."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        from salmap.errors import UsageError

        raise UsageError(
            'the Ray engine needs Ray Data: pip install "salmap[ray]" (or use --engine local)'
        ) from None


def start_ray(address: str | None = None) -> None:
    """Join ``address``, or start a local Ray, unless one is running; quiet progress."""
    require_ray()
    import ray

    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}},
        )
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.enable_auto_log_stats = False


def _input(source, frame, targets) -> Input:
    frame = int(frame)
    return Input(str(source), None if frame < 0 else frame, tuple(json.loads(str(targets))))


def decode_rows(batch: dict, size, settings: Settings, done: frozenset) -> dict:
    """Ray task: a batch of input rows -> decoded samples as columns (``image`` is a
    tensor column at the model's size; ragged with ``resolution="image"``)."""
    columns = [batch[name] for name in ("source", "frame", "targets")]
    items = [_input(*values) for values in zip(*columns, strict=True)]
    check = _all_done(settings, done) if done else None
    samples = decode_many(items, size, check)
    fill = np.zeros((*size, 3), np.float32) if size is not None else _EMPTY
    images = [s.image if s.image is not None else fill for s in samples]
    return {
        "position": np.asarray(batch["position"]),
        "image": np.stack(images) if size is not None else _ragged(images),
        "digest": np.asarray([s.digest for s in samples], dtype=object),
        "error": np.asarray([s.error or "" for s in samples], dtype=object),
        "skipped": np.asarray([s.skipped for s in samples]),
        "height": np.asarray([(s.original_size or (0, 0))[0] for s in samples]),
        "width": np.asarray([(s.original_size or (0, 0))[1] for s in samples]),
    }


def _ragged(images) -> np.ndarray:
    column = np.empty(len(images), dtype=object)
    column[:] = images
    return column


class Explainer:
    """Ray actor: one model, loaded once; decoded columns -> manifest rows (maps written
    here when there is an output folder, returned otherwise)."""

    def __init__(self, inputs: list, model_options: dict, settings: Settings, output, done):
        from salmap.models.zoo import load_model

        self.inputs, self.settings, self.output, self.done = inputs, settings, output, done
        self.adapter = load_model(**model_options)

    def __call__(self, batch: dict) -> dict:
        samples = [self._sample(batch, i) for i in range(len(batch["position"]))]
        items = explain_batch(self.adapter, samples, self.settings, self.done)
        if self.output is not None:
            for item in items:
                write_outputs(item, self.output, self.settings)
        # A skipped input is one empty row: "" (done) or "!" (done, with an error row).
        skipped = [
            "!" if had_error(self.settings, s, self.done) else "" for s in samples if s.skipped
        ]
        keep_maps = self.output is None
        maps = [item.map if keep_maps and item.map is not None else _EMPTY for item in items]
        return {
            "row": np.asarray([json.dumps(item.row) for item in items] + skipped, object),
            "map": _ragged(maps + [_EMPTY] * len(skipped)),
        }

    def _sample(self, batch: dict, i: int) -> Sample:
        item = self.inputs[int(batch["position"][i])]
        error = str(batch["error"][i]) or None
        size = (int(batch["height"][i]), int(batch["width"][i]))
        return Sample(
            item,
            image=None if error or batch["skipped"][i] else np.asarray(batch["image"][i]),
            original_size=size if size[0] else None,
            digest=str(batch["digest"][i]),
            error=error,
            skipped=bool(batch["skipped"][i]),
        )


def ray_batches(run, done: dict[str, str]) -> Iterator[tuple[int, int, int, list[Explained]]]:
    """Drive the Ray pipeline for a :class:`~salmap.batch.run.BatchRun`: yields
    ``(inputs, skipped, skipped with earlier errors, items)`` per batch of results as
    they stream in."""
    options, settings = run.options, run.settings
    start_ray(options.get("address"))
    import ray

    size = run.adapter.input_size if settings.resolution == "model" else None
    batch_size = int(options.get("batch_size") or run.adapter.batch_size)
    gpus = options.get("num_gpus")
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) else 0
    frozen = frozenset(done)  # for the decoding tasks: which inputs are done
    rows = [
        {
            "position": position,
            "source": item.source,
            "frame": -1 if item.frame is None else item.frame,
            "targets": json.dumps(list(item.targets)),
        }
        for position, item in enumerate(run.inputs)
    ]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // batch_size))
    dataset = dataset.map_batches(
        decode_rows,
        batch_size=batch_size,
        batch_format="numpy",
        # Half a CPU per decoding task: unlike the actors' resources, so Ray keeps
        # decoding a separate stage running ahead instead of fusing it into the actor.
        num_cpus=0.5,
        fn_kwargs={"size": size, "settings": settings, "done": frozen},
    )
    dataset = dataset.map_batches(
        Explainer,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=int(options.get("concurrency") or 1)),
        num_gpus=gpus,
        fn_constructor_kwargs={
            "inputs": run.inputs,
            "model_options": options["model_options"],
            "settings": settings,
            "output": options.get("output"),
            "done": done,
        },
    )
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        texts = list(batch["row"])
        items = [
            Explained(json.loads(text), None if m.size == 0 else np.asarray(m))
            for text, m in zip(texts, batch["map"], strict=True)
            if text not in ("", "!")
        ]
        skipped = sum(text in ("", "!") for text in texts)
        inputs = len({(item.row["source"], item.row["frame"]) for item in items}) + skipped
        yield inputs, skipped, texts.count("!"), items

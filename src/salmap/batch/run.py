"""Explain a dataset: :func:`explain_dataset` and the local engine.

inputs (discovered) -> bounded prefetch (decode, hash, resize on threads) -> the model
in full batches -> map files and manifest parts, each written atomically. Inputs
already in the manifest are skipped, so running the same command again after a crash
finishes the job without doing anything twice.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from salmap.batch.decode import Sample, prefetch
from salmap.batch.inputs import Input, discover
from salmap.batch.manifest import Manifest
from salmap.batch.pipeline import RESOLUTIONS, Explained, Settings, explain_batch, write_outputs
from salmap.errors import UsageError

__all__ = ["explain_dataset", "BatchRun", "ENGINES"]

ENGINES = ("local", "ray")


class BatchRun:
    """An iterable over the explained rows of a dataset; counts as it goes.

    Iterating does the work (lazily, batch by batch). ``total`` inputs were found;
    ``skipped`` were already done (``earlier_errors`` of them with an error row);
    ``ok`` and ``errors`` count the rows made.
    """

    def __init__(self, inputs: list[Input], adapter, settings: Settings, options: dict):
        self.inputs, self.adapter, self.settings, self.options = inputs, adapter, settings, options
        self.total = len(inputs)
        self.skipped = self.ok = self.errors = self.earlier_errors = 0
        self.seconds = 0.0
        #: Seconds the model waited for decoded images (local engine): ~0 when the
        #: prefetch keeps ahead.
        self.waited = 0.0
        output = options.get("output")
        rows = int(options.get("commit_rows") or 256)
        self.manifest = Manifest(output, rows_per_part=rows) if output is not None else None

    def __iter__(self) -> Iterator[Explained]:
        started = time.perf_counter()
        done: dict[str, str] = {}
        writer = None
        if self.manifest is not None:
            self.manifest.open()
            kept = ("ok",) if self.options.get("retry_errors") else ("ok", "error")
            done = self.manifest.done_keys(kept)
            writer = _Writer(self.manifest, self.settings)
        engine = self.options.get("engine", "local")
        batches = _ray_batches(self, done) if engine == "ray" else self._local_batches(done)
        try:
            for count, skipped, earlier, items in batches:
                self._count(count, skipped, earlier, items)
                yield from writer.submit(items) if writer is not None else items
            if writer is not None:
                yield from writer.finish()
        finally:
            self.seconds = time.perf_counter() - started
            if writer is not None:
                writer.close()
                _writing(self.manifest.close, self.manifest.dataset)

    def _local_batches(self, done: dict[str, str]):
        size = self.adapter.input_size if self.settings.resolution == "model" else None
        batch_size = int(self.options.get("batch_size") or self.adapter.batch_size)
        samples = prefetch(
            self.inputs,
            size,
            workers=int(self.options.get("workers") or min(8, os.cpu_count() or 1)),
            depth=int(self.options.get("prefetch") or 2 * batch_size),
            done=_all_done(self.settings, done) if done else None,
        )
        for batch in _batches(self._timed(samples), batch_size, by_shape=size is None):
            items = explain_batch(self.adapter, batch, self.settings, done)
            skipped = [sample for sample in batch if sample.skipped]
            earlier = sum(had_error(self.settings, s, done) for s in skipped)
            yield len(batch), len(skipped), earlier, items

    def _timed(self, samples: Iterator[Sample]) -> Iterator[Sample]:
        """The samples, adding the time spent waiting for each to :attr:`waited`."""
        while True:
            start = time.perf_counter()
            sample = next(samples, None)
            self.waited += time.perf_counter() - start
            if sample is None:
                return
            yield sample

    def _count(self, count: int, skipped: int, earlier: int, items: list[Explained]) -> None:
        self.skipped += skipped
        self.earlier_errors += earlier
        for item in items:
            if item.row["status"] == "ok":
                self.ok += 1
            else:
                self.errors += 1
        progress = self.options.get("progress")
        if progress is not None:
            progress.advance(count)


class _Writer:
    """Writes each batch's files on a few threads while the model works on the next
    batches; a batch's rows join the manifest only once all its files are in place.

    At most ``ahead`` batches wait for their files, so memory stays bounded.
    """

    def __init__(self, manifest: Manifest, settings: Settings, threads: int = 2, ahead: int = 2):
        self.manifest, self.settings, self.ahead = manifest, settings, ahead
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="salmap-write")
        self.waiting: deque[tuple[list[Future], list[Explained]]] = deque()

    def submit(self, items: list[Explained]) -> list[Explained]:
        """Start writing a batch; returns the earlier batches now written and recorded."""
        folder = self.manifest.folder
        futures = [self.pool.submit(write_outputs, item, folder, self.settings) for item in items]
        self.waiting.append((futures, items))
        return self._recorded(keep=self.ahead)

    def finish(self) -> list[Explained]:
        """Wait for every batch's files; returns the batches recorded."""
        return self._recorded(keep=0)

    def close(self) -> None:
        """Record what is written (also when the run stops early), then stop the threads."""
        try:
            self.finish()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _recorded(self, keep: int) -> list[Explained]:
        found: list[Explained] = []
        while self.waiting and (
            len(self.waiting) > keep or all(f.done() for f in self.waiting[0][0])
        ):
            futures, items = self.waiting.popleft()
            for future in futures:
                _writing(future.result, self.manifest.folder)
            self.manifest.add([item.row for item in items])
            found.extend(items)
        return found


def had_error(settings: Settings, sample: Sample, done: dict[str, str]) -> bool:
    """Whether a skipped input's earlier rows include an error."""
    return any(done.get(key) == "error" for *_, key in settings.jobs(sample.input, sample.digest))


def _all_done(settings: Settings, done: dict[str, str]):
    def check(item: Input, digest: str) -> bool:
        return all(key in done for _, _, key in settings.jobs(item, digest))

    return check


def _batches(samples, size: int, by_shape: bool) -> Iterator[list[Sample]]:
    """Batches of ``size`` samples; with ``by_shape``, of equal-sized images only (so
    each is one model call), holding at most ``4 × size`` samples back."""
    buckets: dict[object, list[Sample]] = {}
    held = 0
    for sample in samples:
        shape = sample.image.shape if by_shape and sample.image is not None else None
        bucket = buckets.setdefault(shape, [])
        bucket.append(sample)
        held += 1
        if len(bucket) >= size or held >= 4 * size:
            key = shape if len(bucket) >= size else max(buckets, key=lambda k: len(buckets[k]))
            flushed = buckets.pop(key)
            held -= len(flushed)
            yield flushed
    yield from (bucket for bucket in buckets.values() if bucket)


def _writing(write, folder):
    """Run a write; a full, read-only or vanished output folder becomes one clear line."""
    try:
        return write()
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            reason = f"{reason} (the output folder is full)"
        elif error.errno is None and _nearly_full(folder):
            # A short write without an errno (NumPy: "1024 requested and 992 written").
            reason = f"No space left on device ({reason}; the output folder is full)"
        raise UsageError(
            f"cannot write into {folder}: {reason}; finished inputs are kept, run the same "
            "command again to resume"
        ) from None


def _nearly_full(folder) -> bool:
    """Whether the file system holding ``folder`` has under 1 MiB left for us."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free < 1 << 20
    except OSError:
        return False


def _ray_batches(run: BatchRun, done: dict[str, str]):
    from salmap.batch.ray_engine import ray_batches

    return ray_batches(run, done)


def explain_dataset(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    model=None,
    *,
    methods: str | Sequence[str] = "vanilla",
    target: int | str | Sequence[int | str] | None = None,
    output: str | os.PathLike | None = None,
    engine: str = "local",
    resolution: str = "model",
    every: int = 1,
    batch_size: int | None = None,
    workers: int | None = None,
    prefetch: int | None = None,
    score: str = "logit",
    reduction: str = "max-abs",
    top_k: int = 5,
    map_dtype: str = "float16",
    heatmap: bool = False,
    overlay: bool = False,
    cmap: str = "inferno",
    retry_errors: bool = False,
    commit_rows: int = 256,
    method_params: Mapping[str, dict] | None = None,
    progress=None,
    address: str | None = None,
    concurrency: int | None = None,
    num_gpus: float | None = None,
    model_options: Mapping | None = None,
    **params,
) -> BatchRun:
    """Explain every image of a dataset; lazily, with flat memory, resumable.

    Parameters
    ----------
    inputs : path, glob, or a sequence of them
        Image files, folders (recursive), globs, ``.txt``/``.csv`` manifests (optional
        ``target`` columns), videos (one frame in ``every``), bundled photo names.
    model : optional
        Anything :func:`salmap.load_model` takes (default EfficientNet-Lite0).
    methods : str or sequence of str
        Names from ``salmap.methods.METHODS``.
    target : class index or name, or a sequence of them, optional
        Target(s) for every input without its own; default each image's top-1 class.
    output : path, optional
        Folder for ``maps/`` and ``manifest.parquet``; ``None`` keeps results in memory
        only (nothing is written or skipped).
    engine : {"local", "ray"}
        This process (a thread pool decodes ahead of the model), or Ray Data
        (``address`` joins a cluster, ``concurrency`` model actors, ``num_gpus`` each;
        every actor loads its own model from ``model_options``, the keyword arguments
        of :func:`salmap.load_model`, by default ``{"model": model}`` for a name or file).
    resolution : {"model", "image"}
        ``model``: images are resized to the model's input size while decoding (the
        same antialiased bilinear resize the model applies inside) and explained in
        full batches; maps are at the model's input size. ``image``: maps at each
        image's own resolution, exactly :func:`salmap.explain`'s.
    batch_size, workers, prefetch : int, optional
        Images per model batch (default the adapter's), decoding threads, and how many
        decoded images may wait (default twice the batch).
    score, reduction, top_k, method_params, **params
        As for :func:`salmap.explain`; ``method_params`` per method, ``**params`` to
        every method that takes them.
    map_dtype, heatmap, overlay, cmap
        What is written per map: a ``.npy`` (float16 by default), and optionally a
        coloured heatmap and an overlay PNG.
    retry_errors : bool
        Try inputs again whose earlier rows are errors (default: keep them).
    commit_rows : int
        Rows per manifest part (a part is also committed every 10 s): what a crash
        can lose at most.
    progress : salmap.progress.Progress, optional
        Advanced by one per input.

    Returns
    -------
    BatchRun
        Iterate it for :class:`~salmap.batch.pipeline.Explained` items (``row`` — the
        manifest row — and ``map``).
    """
    from salmap.models.zoo import load_model

    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; use {' or '.join(ENGINES)}")
    if resolution not in RESOLUTIONS:
        raise UsageError(f"unknown resolution {resolution!r}; use {' or '.join(RESOLUTIONS)}")
    if engine == "ray":
        from salmap.batch.ray_engine import require_ray

        require_ray()
    if output is not None:
        Manifest(output).open()  # an unwritable folder fails before any other work
    found = discover([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs, every)
    adapter = load_model(model)
    names = _methods(methods)
    settings = Settings(
        methods=names,
        targets=_targets(adapter, target),
        params=_params(names, method_params or {}, params),
        score=score,
        reduction=reduction,
        top_k=top_k,
        resolution=resolution,
        model=str(adapter.name),
        map_dtype=map_dtype,
        heatmap=heatmap,
        overlay=overlay,
        cmap=cmap,
    )
    options = {
        "output": None if output is None else Path(output),
        "engine": engine,
        "batch_size": batch_size,
        "workers": workers,
        "prefetch": prefetch,
        "retry_errors": retry_errors,
        "commit_rows": commit_rows,
        "progress": progress,
        "address": address,
        "concurrency": concurrency,
        "num_gpus": num_gpus,
        "model_options": _model_options(model, model_options, engine),
    }
    return BatchRun(found, adapter, settings, options)


def _model_options(model, options: Mapping | None, engine: str) -> dict | None:
    if options is not None:
        return dict(options)
    if model is None or isinstance(model, (str, os.PathLike)):
        return {"model": model}
    if engine == "ray":
        raise UsageError(
            "the Ray engine loads the model in every actor: give a model name or file, "
            "or model_options (the keyword arguments of salmap.load_model)"
        )
    return None


def _methods(methods) -> tuple[str, ...]:
    from salmap.methods import ALIASES, METHODS

    names = [methods] if isinstance(methods, str) else list(methods)
    names = [ALIASES.get(name, name) for name in names]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise UsageError(
            f"unknown method {', '.join(map(repr, unknown)) or 'list (empty)'}; "
            f"choose from {', '.join(METHODS)}"
        )
    return tuple(dict.fromkeys(names))


def _params(names, method_params: Mapping, shared: dict) -> dict:
    """Each method's parameters: its own, plus the shared ones it takes."""
    from salmap.methods import method_parameters

    taken = set()
    found = {}
    for name in names:
        own = dict(method_params.get(name, {}))
        accepted = method_parameters(name, {**shared, **own})
        found[name] = {**{k: v for k, v in shared.items() if k in accepted}, **own}
        taken |= accepted & set(shared)
    unused = sorted(set(shared) - taken)
    if unused:
        raise UsageError(
            f"no method here takes {', '.join(map(repr, unused))}; see `salmap methods`"
        )
    return found


def _targets(adapter, target) -> tuple:
    """The command's targets, checked now (a typo fails before any work)."""
    from salmap.models.classes import resolve_target

    targets = list(target) if isinstance(target, (list, tuple)) else [target]
    for item in targets:
        if item is not None:
            resolve_target(
                item, adapter.num_classes, adapter.class_names, getattr(adapter, "synonyms", None)
            )
    return tuple(targets)

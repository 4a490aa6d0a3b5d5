"""What the web server does, without HTTP: models, gates, jobs and stored results.

:class:`Service` holds the models given at start (the only ones the page can use;
no path from a request ever reaches a loader), one :class:`~salmap.web.jobs.Gate`
per model, the background :class:`~salmap.web.jobs.Jobs`, and the last results for
the downloads. The routes in :mod:`salmap.web.app` only parse and answer.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from salmap.cli.common import parse_params
from salmap.errors import UsageError
from salmap.io.image import SAMPLE_IMAGES, sample_image
from salmap.maps import SaliencyMap
from salmap.web.encode import encode_result, shrink
from salmap.web.jobs import Gate, Job, Jobs
from salmap.web.uploads import Limits

__all__ = ["Service", "Stored", "LockedAdapter", "MAX_PARAMETER"]

#: Largest number a method parameter may take (samples, steps, masks...): a request
#: cannot ask the server for an hour of work.
MAX_PARAMETER = 4096


class Stored(NamedTuple):
    """What a result keeps for its downloads: the full map, the photo as the page
    shows it (uint8, at most :data:`~salmap.web.encode.DISPLAY_SIDE` pixels), the
    JSON summary."""

    map: np.ndarray
    image: np.ndarray
    summary: dict


class LockedAdapter:
    """A model adapter whose every public call holds the model's lock, so a long job
    (an evaluation) lets interactive requests in between its model calls."""

    def __init__(self, adapter, lock: threading.Lock):
        self._adapter = adapter
        self._lock = lock

    def __getattr__(self, name: str):
        value = getattr(self._adapter, name)
        if name.startswith("_") or not callable(value):
            return value

        def locked(*args, **kwargs):
            with self._lock:
                return value(*args, **kwargs)

        return locked


class Service:
    """Models, gates, jobs and stored results of one server.

    Parameters
    ----------
    models : list of adapters
        Loaded at start; the first is the default.
    limits : Limits
    queue : int
        Requests that may wait for each model (and for static saliency).
    job_queue : int
        Background jobs that may wait.
    keep : int
        Results kept for download (oldest dropped first).
    keep_bytes : int
        Most bytes of stored maps and photos (oldest dropped first).
    """

    def __init__(
        self,
        models,
        limits: Limits,
        queue: int = 8,
        job_queue: int = 4,
        keep: int = 32,
        keep_bytes: int = 256 * 2**20,
    ):
        self.models = {adapter.name: adapter for adapter in models}
        self.default_model = models[0].name
        self.gates = {name: Gate(f"model {name}", queue) for name in self.models}
        self.static_gate = Gate("static saliency", queue)
        # uploads are decoded on one thread too (see Gate: fewer malloc arenas)
        self.decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="salmap-decode")
        self.limits = limits
        self.folder = Path(tempfile.mkdtemp(prefix="salmap-serve-"))  # mode 0700
        self.jobs = Jobs(self.folder / "jobs", queue=job_queue)
        self.jobs.folder.mkdir(mode=0o700)
        self.keep, self.keep_bytes = keep, keep_bytes
        self._results: OrderedDict[str, Stored] = OrderedDict()
        self._results_lock = threading.Lock()

    def close(self) -> None:
        """Stop the jobs and workers, and remove every file the server wrote."""
        self.jobs.close()
        for gate in [*self.gates.values(), self.static_gate]:
            gate.worker.shutdown(wait=True, cancel_futures=True)
        self.decoder.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- choosing --------------------------------------------------------------------
    def model(self, name: str | None):
        """The adapter named ``name`` (one given at start), or the default."""
        name = name or self.default_model
        if name not in self.models:
            raise UsageError(f"unknown model {name!r}; this server has {', '.join(self.models)}")
        return self.models[name]

    @staticmethod
    def sample(name: str) -> np.ndarray:
        """A bundled photo by name (never a path)."""
        if name not in SAMPLE_IMAGES:
            raise UsageError(f"unknown sample {name!r}; choose one of {', '.join(SAMPLE_IMAGES)}")
        return sample_image(name)

    # -- results ---------------------------------------------------------------------
    def store(self, result: SaliencyMap, normalize: str) -> dict:
        """Keep ``result`` for its downloads and answer its JSON."""
        result_id = secrets.token_hex(8)
        photo = np.round(shrink(result.image) * 255).astype(np.uint8)
        stored = Stored(result.map, photo, result.to_dict())
        with self._results_lock:
            self._results[result_id] = stored
            while len(self._results) > self.keep or (
                len(self._results) > 1 and self._stored_bytes() > self.keep_bytes
            ):
                self._results.popitem(last=False)
        return encode_result(result, result_id, normalize)

    def _stored_bytes(self) -> int:
        return sum(item.map.nbytes + item.image.nbytes for item in self._results.values())

    def result(self, result_id: str) -> Stored | None:
        with self._results_lock:
            return self._results.get(result_id)

    # -- work ------------------------------------------------------------------------
    def explain(self, image, model: str | None, methods: list[str], options: dict, job=None):
        """Explain ``image`` with each method in turn, holding the model's lock for each.

        ``options`` are :func:`salmap.explain`'s keyword arguments (target, score,
        reduction, method parameters); each method gets the parameters it takes.
        """
        from salmap.api import explain

        adapter = self.model(model)
        lock = self.gates[adapter.name].lock
        answers = []
        for index, method in enumerate(methods):
            if job is not None:
                job.progress(index, len(methods), f"{method} ({index + 1}/{len(methods)})")
            with lock:
                result = explain(image, model=adapter, method=method, **_accepted(method, options))
            answers.append(self.store(result, "percentile"))
        if job is not None:
            job.progress(len(methods), len(methods), "done")
        return {"results": answers}

    def evaluate(self, image, name: str, model: str | None, methods, metrics, job: Job) -> dict:
        """An evaluation report of ``methods`` on one image, written into the job's
        folder; the model's lock is held per model call."""
        from salmap.report import evaluate, write_report

        adapter = self.model(model)
        locked = LockedAdapter(adapter, self.gates[adapter.name].lock)
        evaluation = evaluate(
            [image],
            locked,
            names=[name],
            methods=methods,
            metrics=metrics,
            progress=lambda done, total, text: job.progress(done, total, text),
        )
        job.progress(text="writing the report")
        write_report(evaluation, job.folder / "report")
        return {"report": f"/api/jobs/{job.id}/report", "methods": list(methods)}

    def static(self, image, method: str, params: dict) -> dict:
        """Static saliency of ``image`` (one at a time, like a model)."""
        from salmap.static import static_saliency

        with self.static_gate.lock:
            result = static_saliency(image, method=method, **params)
        return self.store(result, "minmax")

    def motion(self, path: Path, info, options: dict, job: Job) -> dict:
        """Motion saliency of an uploaded video, written as an overlay WebM (VP8, which
        browsers play) into the job's folder."""
        from salmap.io.video import VideoWriter
        from salmap.motion import motion_saliency
        from salmap.viz.video import RunningScale, overlay_frame

        every = int(options.get("every", 1))
        count = info.frame_count
        total = None if count is None else -(-min(count, options.get("end") or count) // every)
        scale = RunningScale(fixed=2.0)  # 2 px/frame of residual motion is full saliency
        peaks = []
        try:
            with VideoWriter(job.folder / "motion.webm", max(info.fps / every, 1.0)) as writer:
                for index, result in enumerate(motion_saliency(path, **options)):
                    job.progress(index, total, f"frame {result.extras['frame']}")
                    writer.write(overlay_frame(result.image, scale(result.map), "inferno", 0.6))
                    peaks.append(round(float(result.map.max()), 3))
        finally:
            path.unlink(missing_ok=True)  # the upload is not kept once read
        job.progress(len(peaks), len(peaks), "done")
        return {
            "video": f"/api/jobs/{job.id}/video",
            "frames": len(peaks),
            "fps": round(max(info.fps / every, 1.0), 3),
            "width": info.width,
            "height": info.height,
            "peak_speed": peaks,
        }


def _accepted(method: str, options: dict) -> dict:
    """``options`` without the method parameters ``method`` does not take."""
    from salmap.methods import ALIASES, METHODS, method_parameters

    spec = METHODS.get(ALIASES.get(method, method))
    if spec is None:
        return options
    general = {"target", "score", "reduction", "top_k"}
    taken = method_parameters(method, options)
    return {key: value for key, value in options.items() if key in general or key in taken}


def method_options(form, reserved: set[str]) -> dict:
    """Method parameters from a form's other fields (blank fields skipped), checked for
    size; values parse as on the command line (numbers, booleans, comma lists)."""
    items = [
        f"{key}={form.get(key)}"
        for key in form.fields
        if key not in reserved and (form.get(key) or "").strip()
    ]
    params = parse_params(items)
    for key, value in params.items():
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                if not abs(item) <= MAX_PARAMETER:
                    raise UsageError(
                        f"{key}={item} is too large for this server (limit {MAX_PARAMETER})"
                    )
    return params

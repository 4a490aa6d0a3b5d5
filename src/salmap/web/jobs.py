"""Running model calls and long jobs without letting a burst of requests pile up.

:class:`Gate` lets one call at a time use a model and keeps a bounded queue in
front of it: a request that finds the queue full is refused at once (the server
answers 503 with ``Retry-After``) instead of waiting without end. :class:`Jobs`
runs long work (videos, several methods, evaluation reports) on one background
thread, with progress, cancellation and a private folder per job that is removed
when the job is forgotten.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Busy", "Cancelled", "Gate", "Job", "Jobs"]


class Busy(Exception):
    """The queue is full; try again after ``retry_after`` seconds."""

    def __init__(self, what: str, retry_after: int):
        super().__init__(f"{what} is busy: the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class Cancelled(Exception):
    """The job was cancelled by its user."""


class Gate:
    """One caller at a time, at most ``queue`` more waiting; the rest are refused.

    A request calls :meth:`admit` (which refuses at once when the queue is full),
    runs its work on the gate's own worker thread (:attr:`worker`), holding
    :attr:`lock`, then calls :meth:`leave`. Background jobs take the lock without a
    place in the queue: their own queue bounds them. One long-lived thread per model
    does that model's work, rather than whichever of a pool's many threads is free:
    each thread that allocates large arrays keeps its own malloc arena, and a pool's
    arenas grew the server's memory by ~200 KiB a request, without end.

    Parameters
    ----------
    name : str
        What the gate guards (said in the refusal).
    queue : int
        How many callers may wait while one runs.
    """

    def __init__(self, name: str, queue: int = 8):
        self.name = name
        self.queue = queue
        self.lock = threading.Lock()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"salmap-{name}")
        self._admitted = 0
        self._count_lock = threading.Lock()

    def admit(self) -> None:
        """Take a place in the queue or raise :class:`Busy` (does not block)."""
        with self._count_lock:
            if self._admitted > self.queue:
                raise Busy(self.name, retry_after=2)
            self._admitted += 1

    def leave(self) -> None:
        """Give the place back (after the work, whether it succeeded or not)."""
        with self._count_lock:
            self._admitted -= 1


@dataclass
class Job:
    """One background job: its state, progress and result, and a private folder."""

    id: str
    kind: str
    folder: Path
    status: str = "queued"  # queued, running, done, failed, cancelled
    done: int = 0
    total: int | None = None
    text: str = ""
    result: dict | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def progress(self, done: int | None = None, total: int | None = None, text: str = "") -> None:
        """Record progress; raises :class:`Cancelled` once the job is cancelled."""
        if self.cancel_event.is_set():
            raise Cancelled()
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if text:
            self.text = text

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": {"done": self.done, "total": self.total, "text": self.text},
            "result": self.result,
            "error": self.error,
        }


class Jobs:
    """Background jobs, run one at a time, at most ``queue`` waiting.

    Finished jobs are kept (with their files) until ``keep`` newer ones have
    finished; then their folders are removed.
    """

    def __init__(self, folder: Path, queue: int = 4, keep: int = 16):
        self.folder = folder
        self.queue = queue
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="salmap-job")

    def submit(self, kind: str, work: Callable[[Job], dict], prepare=None) -> Job:
        """Queue ``work(job) -> result dict``; raises :class:`Busy` when full.

        ``prepare(job)`` runs first, in the caller (to check and store the upload in
        the job's folder); if it raises, the job is forgotten and its folder removed.
        """
        with self._lock:
            waiting = sum(job.status in ("queued", "running") for job in self._jobs.values())
            if waiting > self.queue:
                raise Busy("the job queue", retry_after=10)
            job = Job(secrets.token_hex(8), kind, self.folder / secrets.token_hex(8))
            job.folder.mkdir(mode=0o700)
            self._jobs[job.id] = job
        try:
            if prepare is not None:
                prepare(job)
        except BaseException:
            self._forget(job.id)
            raise
        self._pool.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Job], dict]) -> None:
        if job.cancel_event.is_set():
            job.status = "cancelled"
        else:
            job.status = "running"
            try:
                job.result = work(job)
                job.status = "done"
            except Cancelled:
                job.status = "cancelled"
            except Exception as error:  # noqa: BLE001 - reported to the page, never raised
                job.status = "failed"
                job.error = _one_line(error)
        self._prune()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is not None and job.status in ("queued", "running"):
            job.cancel_event.set()
            if job.status == "queued":
                job.status = "cancelled"
        return job

    def _prune(self) -> None:
        with self._lock:
            finished = [j.id for j in self._jobs.values() if j.status not in ("queued", "running")]
        for job_id in finished[: max(0, len(finished) - self.keep)]:
            self._forget(job_id)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs.pop(job_id, None)
        if job is not None:
            shutil.rmtree(job.folder, ignore_errors=True)

    def close(self) -> None:
        """Cancel every job, wait for the worker, remove every folder."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel_event.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for job in jobs:
            self._forget(job.id)


def _one_line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text

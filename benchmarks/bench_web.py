"""Load on loopback: ``salmap serve`` answering many requests, a few at a time.

Starts ``salmap serve`` in its own process (the embedded EfficientNet-Lite0), then
sends ``--requests`` requests, ``--concurrency`` at a time, in ``--rounds`` equal
rounds: uploads of real photos (chelsea, coffee, astronaut, rocket, as JPEG) to
``/api/explain`` (vanilla gradients and Grad-CAM) and ``/api/static`` (spectral
residual), in a fixed shuffled order. It prints the status counts, the median and
95th-percentile latency, the server's resident memory after each round and its peak
(``VmHWM``), and fails (exit 1) on any 5xx other than 503 — which the server answers,
by design, only when a model's queue is full — or when the server's memory grew by
more than ``--growth`` MiB over the rounds (the trend of a least-squares line through
the memory after each round).
A warm-up of every route × photo three times comes first and is not counted
(TensorFlow traces its functions on first calls, and the server's store of the last 32
results, kept for downloads, fills up).

    python benchmarks/bench_web.py [--requests 100] [--concurrency 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import subprocess
import sys
import time
from collections import Counter

import numpy as np


def _photos() -> dict[str, bytes]:
    import skimage.data
    from PIL import Image

    photos = {}
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        buffer = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(buffer, "JPEG", quality=90)
        photos[name] = buffer.getvalue()
    return photos


KINDS = [
    ("/api/explain", {"method": "vanilla"}),
    ("/api/explain", {"method": "grad-cam"}),
    ("/api/static", {"method": "spectral-residual"}),
]
PHOTOS = ["chelsea", "coffee", "astronaut", "rocket"]


def _requests(count: int, seed: int = 0) -> list[tuple[str, dict, str]]:
    rng = random.Random(seed)
    return [(*rng.choice(KINDS), rng.choice(PHOTOS)) for _ in range(count)]


def _warmup() -> list[tuple[str, dict, str]]:
    """Every route × photo three times: first calls trace TensorFlow functions, and 36
    answers fill the server's store of the last 32 results (kept for downloads) —
    start-up cost and a bounded cache, not load."""
    return [(path, fields, photo) for path, fields in KINDS for photo in PHOTOS] * 3


def _memory(pid: int) -> dict[str, float]:
    """The server's resident memory now and at its peak, MiB (Linux /proc)."""
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values


def start_server(queue: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "salmap", "serve", "--port", "0", "--queue", str(queue)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    if "serving on" not in line:
        process.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return process, line.split()[3].rstrip("/")


async def _round(client, url, batch, photos, concurrency) -> list[tuple[int, float]]:
    limit = asyncio.Semaphore(concurrency)

    async def one(path, fields, photo):
        async with limit:
            start = time.perf_counter()
            answer = await client.post(
                url + path, data=fields, files={"image": (f"{photo}.jpg", photos[photo])}
            )
            return answer.status_code, time.perf_counter() - start

    return await asyncio.gather(*(one(*item) for item in batch))


async def run(args) -> int:
    import httpx

    photos = _photos()
    process, url = start_server(args.queue)
    try:
        plan = _requests(args.requests)
        size = -(-len(plan) // args.rounds)
        answers, memory = [], []
        async with httpx.AsyncClient(timeout=300) as client:
            # no more at once than the queue takes, so that every warm-up request counts
            fitting = min(args.concurrency, args.queue + 1)
            warm = await _round(client, url, _warmup(), photos, fitting)
            print(f"warm-up: {len(warm)} requests (every route × photo, 3 times), statuses "
                  f"{dict(Counter(status for status, _ in warm))}, server RSS "
                  f"{_memory(process.pid)['VmRSS']:.0f} MiB")  # fmt: skip
            started = time.perf_counter()
            for number in range(args.rounds):
                batch = plan[number * size : (number + 1) * size]
                answers += await _round(client, url, batch, photos, args.concurrency)
                memory.append(_memory(process.pid))
                print(f"round {number + 1}: {len(batch)} requests, server RSS "
                      f"{memory[-1]['VmRSS']:.0f} MiB")  # fmt: skip
        elapsed = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)
    return report(args, answers, memory, elapsed)


def report(args, answers, memory, elapsed) -> int:
    statuses = Counter(status for status, _ in answers)
    latencies = np.array([seconds for _, seconds in answers])
    ok = latencies[[status == 200 for status, _ in answers]]
    resident = [m["VmRSS"] for m in memory]
    # the trend of a least-squares line through the rounds: one noisy round (the
    # garbage collector, a large photo in flight) does not decide it
    growth = np.polyfit(np.arange(len(resident)), resident, 1)[0] * (len(resident) - 1)
    print(f"{len(answers)} requests, {args.concurrency} at a time, in {elapsed:.1f} s "
          f"({len(answers) / elapsed:.2f} requests/s)")  # fmt: skip
    print("statuses:", dict(sorted(statuses.items())))
    print(f"latency of the 200s: p50 {np.percentile(ok, 50):.2f} s, "
          f"p95 {np.percentile(ok, 95):.2f} s, max {ok.max():.2f} s")  # fmt: skip
    print(f"server memory: peak {max(m['VmHWM'] for m in memory):.0f} MiB; RSS per round "
          + ", ".join(f"{m['VmRSS']:.0f}" for m in memory)
          + f" MiB; trend over the rounds: {growth:+.0f} MiB")  # fmt: skip
    failures = [status for status in statuses if status >= 500 and status != 503]
    if failures:
        print(f"FAIL: server errors {failures}")
    if growth > args.growth:
        print(f"FAIL: memory grew by {growth:.0f} MiB (limit {args.growth} MiB)")
    return 1 if failures or growth > args.growth else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queue", type=int, default=8, help="the server's --queue")
    parser.add_argument("--growth", type=float, default=50.0, help="MiB allowed (50)")
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

"""Explain datasets: inputs -> bounded prefetch -> the model in full batches -> maps and
a resumable Parquet manifest, in this process or on Ray Data.

>>> import salmap
>>> run = salmap.explain_dataset("photos/", output="out", methods=["vanilla", "grad-cam"])
>>> for item in run:  # lazily, batch by batch; out/maps/*.npy, out/manifest.parquet
...     print(item.row["source"], item.row["label"])
"""

from salmap.batch.decode import Sample, prefetch, resize_image
from salmap.batch.inputs import Input, discover
from salmap.batch.manifest import MANIFEST, Manifest, read_manifest
from salmap.batch.pipeline import RESOLUTIONS, Explained, Settings, explain_batch, write_outputs
from salmap.batch.run import ENGINES, BatchRun, explain_dataset

__all__ = [
    "explain_dataset",
    "BatchRun",
    "Explained",
    "Settings",
    "Input",
    "Sample",
    "discover",
    "prefetch",
    "resize_image",
    "explain_batch",
    "write_outputs",
    "read_manifest",
    "Manifest",
    "MANIFEST",
    "ENGINES",
    "RESOLUTIONS",
]

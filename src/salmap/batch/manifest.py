"""``OUT/manifest.parquet``: a Parquet dataset of committed parts, one row per map.

Rows are appended in parts: each part is written to a hidden temporary name and
renamed into place, so after a crash (even ``kill -9``) the dataset holds whole parts
only, and a row is in it exactly when its map file is complete. Readers (pyarrow,
pandas, Spark, DuckDB, Ray) skip hidden files, so an unfinished part is invisible.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

from salmap.errors import UsageError
from salmap.io.atomic import atomic_path

__all__ = ["Manifest", "read_manifest", "SCHEMA_FIELDS", "MANIFEST"]

#: The dataset folder inside ``OUT``.
MANIFEST = "manifest.parquet"


def _schema():
    import pyarrow as pa

    top = pa.struct([("index", pa.int32()), ("label", pa.string()), ("probability", pa.float64())])
    return pa.schema(
        [
            ("source", pa.string()),
            ("frame", pa.int64()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("method", pa.string()),
            ("target_request", pa.string()),
            ("target", pa.int64()),
            ("label", pa.string()),
            ("score", pa.float64()),
            ("top5", pa.list_(top)),
            ("seconds", pa.float64()),
            ("map", pa.string()),
            ("heatmap", pa.string()),
            ("overlay", pa.string()),
            ("hash", pa.string()),
            ("key", pa.string()),
            ("height", pa.int64()),
            ("width", pa.int64()),
        ]
    )


#: Column names, in order.
SCHEMA_FIELDS = (
    "source frame status error method target_request target label score top5 seconds map "
    "heatmap overlay hash key height width"
).split()


def read_manifest(folder: str | os.PathLike):
    """All committed rows of ``folder/manifest.parquet`` as a ``pyarrow.Table`` (an
    empty table with the schema when nothing is committed yet)."""
    import pyarrow.parquet as pq

    parts = _parts(Path(folder) / MANIFEST)
    if not parts:
        return _schema().empty_table()
    return pq.ParquetDataset([str(p) for p in parts], schema=_schema()).read()


def _parts(dataset: Path) -> list[Path]:
    if not dataset.is_dir():
        return []
    return sorted(p for p in dataset.iterdir() if p.suffix == ".parquet" and p.name[0] not in "._")


class Manifest:
    """Appends rows to ``folder/manifest.parquet`` in committed parts.

    Parameters
    ----------
    folder : path
        The output folder (created if its parent exists).
    rows_per_part, seconds_per_part : int, float
        A part is committed when this many rows wait, or this long after the last
        commit, whichever comes first — a crash loses at most that much work.
    """

    def __init__(self, folder, rows_per_part: int = 256, seconds_per_part: float = 10.0):
        self.folder = Path(folder)
        self.dataset = self.folder / MANIFEST
        self.rows_per_part = rows_per_part
        self.seconds_per_part = seconds_per_part
        self.pending: list[dict] = []
        self.committed_at = time.monotonic()
        self.parts = 0

    def open(self) -> None:
        """Create the folders, check they are writable, hold the folder's lock, remove
        what a crash left."""
        for folder in (self.folder, self.dataset, self.folder / "maps"):
            if folder.exists() and not folder.is_dir():
                raise UsageError(f"cannot write into {folder}: it is a file")
            try:
                folder.mkdir(exist_ok=True)
            except FileNotFoundError:
                raise UsageError(
                    f"cannot create {folder}: folder {folder.parent} does not exist"
                ) from None
            except OSError as error:
                raise UsageError(f"cannot create {folder}: {error.strerror}") from None
        _lock(self.folder)
        self.remove_temporary_files()
        try:  # a real write: access() says yes to root on a read-only file system
            with tempfile.NamedTemporaryFile(dir=self.dataset, prefix=".probe-"):
                pass
        except OSError as error:
            raise UsageError(f"cannot write into {self.folder}: {error.strerror}") from None

    def close(self) -> None:
        """Commit what waits and let another run write into the folder."""
        try:
            self.commit()
        finally:
            descriptor = _LOCKS.pop(str(self.folder.resolve()), None)
            if descriptor is not None:
                os.close(descriptor)  # closing the descriptor drops the lock

    def remove_temporary_files(self) -> int:
        """Delete the hidden temporary files an interrupted run left (atomic writes
        that never got renamed); returns how many."""
        removed = 0
        for folder in (self.dataset, self.folder / "maps"):
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith(".") and entry.is_file():
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def done_keys(self, status: tuple[str, ...] = ("ok", "error")) -> dict[str, str]:
        """``key -> status`` of the committed rows with one of these statuses."""
        import pyarrow.compute as pc

        table = read_manifest(self.folder).select(["key", "status"])
        table = table.filter(pc.is_in(table["status"], value_set=_array(status)))
        return dict(zip(table["key"].to_pylist(), table["status"].to_pylist(), strict=True))

    def add(self, rows: list[dict]) -> None:
        self.pending.extend(rows)
        waited = time.monotonic() - self.committed_at
        if len(self.pending) >= self.rows_per_part or waited >= self.seconds_per_part:
            self.commit()

    def commit(self) -> None:
        """Write the waiting rows as one part (temporary name, then rename)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.pending:
            return
        table = pa.Table.from_pylist(self.pending, schema=_schema())
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        with atomic_path(self.dataset / name, suffix=".parquet") as tmp:
            pq.write_table(table, tmp)
        self.pending = []
        self.parts += 1
        self.committed_at = time.monotonic()


#: Output folders this process holds the lock of (path -> open descriptor).
_LOCKS: dict[str, int] = {}


def _lock(folder: Path) -> None:
    """An exclusive lock on the output folder until :meth:`Manifest.close`: a second
    run writing into the same folder would redo the same inputs and delete the first
    one's temporary files. The kernel drops the lock when the process ends, even by
    ``kill -9``."""
    import fcntl

    key = str(folder.resolve())
    if key in _LOCKS:
        return
    descriptor = os.open(key, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise UsageError(
            f"another salmap batch is writing into {folder}; wait for it or choose another -o"
        ) from None
    _LOCKS[key] = descriptor


def _array(values):
    import pyarrow as pa

    return pa.array(list(values), pa.string())

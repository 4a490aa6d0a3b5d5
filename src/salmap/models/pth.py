"""Reading PyTorch ``.pth`` state dicts without PyTorch, and without running their pickles.

A ``.pth`` file is a Python pickle, and unpickling runs whatever functions the file names.
This reader therefore uses a restricted unpickler (DESIGN.md, "Untrusted input"): the only
globals it resolves are the handful a state dict is made of — ``collections.OrderedDict``,
the tensor rebuild functions of ``torch._utils`` and the ``torch.*Storage`` types — and each
of them resolves to a harmless stand-in defined here, so ``torch`` is never imported. Any
other global (``os.system``, ``builtins.eval``, a class of the saving program...) is refused
with a :class:`~salmap.errors.ModelError` before it could be called.

Two container formats are understood:

* the legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``, the only one
  before PyTorch 1.6): five consecutive pickles/blobs in one stream — the magic number
  ``0x1950a86a20f9469cfc6c``, the protocol version ``1001``, a dict of system information
  (byte order, C type sizes), the pickled object whose storages are persistent ids
  ``("storage", type, key, location, numel, view)``, the list of storage keys, and then, for
  each key in that order, the storage's element count as a little-endian int64 followed by
  its raw bytes;
* the zip format (PyTorch >= 1.6): ``<name>/data.pkl`` with persistent ids
  ``("storage", type, key, location, numel)``, each storage's raw bytes in
  ``<name>/data/<key>`` and the byte order in ``<name>/byteorder``.

Every size and stride read from the file is checked against the storage it points into
before a view is taken, so a crafted file cannot make NumPy read outside its buffers.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from salmap.errors import ModelError

__all__ = ["load_state_dict", "LEGACY_MAGIC_NUMBER", "LEGACY_PROTOCOL_VERSION"]

#: First pickle of every legacy-format ``.pth`` file (``torch.serialization.MAGIC_NUMBER``).
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
#: Second pickle of a legacy-format file (``torch.serialization.PROTOCOL_VERSION``).
LEGACY_PROTOCOL_VERSION = 1001

# torch.<Name>Storage -> element type of the raw bytes. bfloat16 has no NumPy type: its
# bytes are read as uint16 and widened to float32 (the upper half of a float32's bits).
_STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "u2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


# Largest expansion accepted for a compressed zip member (PyTorch itself never compresses).
_MAX_ZIP_RATIO = 100


class _StorageType:
    """Stand-in for a ``torch.<Name>Storage`` class: only its element type matters."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: np.dtype):
        self.name = name
        self.dtype = dtype


class _Storage:
    """A flat run of elements; its data arrive after the pickle (legacy) or on demand (zip)."""

    __slots__ = ("storage_type", "numel", "data")

    def __init__(self, storage_type: _StorageType, numel: int):
        self.storage_type = storage_type
        self.numel = numel
        self.data: np.ndarray | None = None


class _StorageView:
    """A slice of another storage (legacy files written by PyTorch < 0.4 only)."""

    __slots__ = ("base", "offset", "numel")

    def __init__(self, base: _Storage, offset: int, numel: int):
        self.base = base
        self.offset = offset
        self.numel = numel


class _LazyTensor:
    """What ``_rebuild_tensor_v2`` returns here: a strided view, materialised once data exist."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, (_Storage, _StorageView)):
            raise ModelError(
                "a tensor in the .pth file does not point to a storage; the file is corrupt"
            )
        if not _is_int(offset) or offset < 0:
            raise ModelError(f"a tensor in the .pth file has an invalid storage offset {offset!r}")
        for name, value in (("size", size), ("stride", stride)):
            if not isinstance(value, tuple) or not all(_is_int(v) and v >= 0 for v in value):
                raise ModelError(f"a tensor in the .pth file has an invalid {name} {value!r}")
        if len(size) != len(stride):
            raise ModelError("a tensor in the .pth file does not have one stride per dimension")
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride

    def to_numpy(self) -> np.ndarray:
        storage, offset = self.storage, self.offset
        if isinstance(storage, _StorageView):
            flat = _storage_array(storage.base)[storage.offset : storage.offset + storage.numel]
        else:
            flat = _storage_array(storage)
        if 0 in self.size:
            return np.zeros(self.size, dtype=flat.dtype)
        # A saved parameter never has more elements than its storage; a view that does
        # (zero or overlapping strides) could ask for any amount of memory.
        if math.prod(self.size) > flat.size:
            raise ModelError(
                f"a tensor of shape {self.size} has more elements than its storage of "
                f"{flat.size}; the .pth file is corrupt"
            )
        # Highest element index the view touches: it must lie inside the storage, otherwise
        # as_strided would read memory that belongs to something else.
        last = offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if last >= flat.size:
            raise ModelError(
                f"a tensor of shape {self.size} reaches element {last} of a storage of "
                f"{flat.size}; the .pth file is corrupt"
            )
        view = np.lib.stride_tricks.as_strided(
            flat[offset:],
            shape=self.size,
            strides=tuple(s * flat.itemsize for s in self.stride),
            writeable=False,
        )
        # A fresh C-ordered copy: transposed tensors must not keep PyTorch's strides.
        return np.array(view, order="C", copy=True)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _storage_array(storage: _Storage) -> np.ndarray:
    if storage.data is None:
        raise ModelError("a storage of the .pth file has no data; the file is truncated or corrupt")
    return storage.data


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    # torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
    # backward_hooks[, metadata]) and the older _rebuild_tensor(storage, offset, size, stride):
    # gradients flags and hooks mean nothing for a NumPy array.
    return _LazyTensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    # torch._utils._rebuild_parameter wraps a tensor in nn.Parameter; the tensor is what we keep.
    if not isinstance(data, _LazyTensor):
        raise ModelError("a parameter in the .pth file does not wrap a tensor; the file is corrupt")
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a state dict is made of.

    ``find_class`` is the single door through which a pickle reaches Python objects
    (GLOBAL, STACK_GLOBAL, INST, OBJ and the copyreg EXT opcodes all go through it), so
    refusing there refuses before anything runs.
    """

    def __init__(self, file, source: str, storage_for=None, byteorder: str = "<"):
        super().__init__(file, encoding="utf-8")
        self._source = source
        self._storage_for = storage_for
        self._byteorder = byteorder

    def find_class(self, module: str, name: str):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, np.dtype(self._byteorder + _STORAGE_DTYPES[name]))
        raise ModelError(
            f"{self._source}: refusing to load: its pickle asks for {module}.{name}, which a "
            "weights file never needs (only tensors, storages and OrderedDict are allowed); "
            "use a state dict saved with torch.save(model.state_dict(), path)"
        )

    def persistent_load(self, pid):
        if self._storage_for is None:
            raise ModelError(
                f"{self._source}: not a PyTorch .pth file (a storage reference in its header); "
                "pass a file written by torch.save"
            )
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise ModelError(f"{self._source}: unknown persistent reference {pid!r:.60}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise ModelError(f"{self._source}: a storage has no valid type; the file is corrupt")
        if not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise ModelError(f"{self._source}: a storage has an invalid key or size")
        return self._storage_for(storage_type, key, numel, pid[5:])


def _restricted_load(file, source: str, **kwargs) -> Any:
    return _RestrictedUnpickler(file, source, **kwargs).load()


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (``.pth``/``.pt``) into NumPy arrays, without PyTorch.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``torch.save(model.state_dict(), path)``, in the legacy format
        (PyTorch < 1.6 or ``_use_new_zipfile_serialization=False``) or the zip format. A
        checkpoint dict that holds the state dict under ``"state_dict"`` is unwrapped.

    Returns
    -------
    dict of str to numpy.ndarray
        Tensor name (e.g. ``"_conv_stem.weight"``) to a C-contiguous array of the tensor's
        shape in PyTorch layout (convolutions O×I×H×W) and dtype (bfloat16 becomes
        float32), in the file's order.

    Raises
    ------
    ModelError
        If the file is missing, not a ``.pth`` file, truncated or corrupt, or if its pickle
        names anything besides tensors, storages and ordered dicts (such a pickle is refused
        before any of it runs).
    """
    path = Path(path)
    source = path.name
    if not path.is_file():
        raise ModelError(f"weights file {str(path)!r} does not exist")
    try:
        if zipfile.is_zipfile(path):
            obj = _load_zip(path, source)
        else:
            with open(path, "rb") as file:
                obj = _load_legacy(file, source)
        return _to_state_dict(obj, source)
    except ModelError as error:
        if str(error).startswith(source):
            raise
        raise ModelError(f"{source}: {error}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        struct.error,
        zipfile.BadZipFile,
        MemoryError,
        RecursionError,
        UnicodeDecodeError,
    ) as error:
        raise ModelError(
            f"{source}: not a readable PyTorch .pth file, or truncated/corrupt "
            f"({type(error).__name__}: {str(error)[:80]}); re-download or re-save it"
        ) from None
    except OSError as error:
        raise ModelError(f"cannot read weights file {str(path)!r}: {error.strerror}") from None


def _load_legacy(file: io.BufferedReader, source: str) -> Any:
    # The three header pickles hold only numbers, strings and dicts: the same restricted
    # unpickler (with no storages allowed) reads them.
    try:
        magic = _restricted_load(file, source)
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise ModelError(
            f"{source}: not a PyTorch .pth file (neither a zip archive nor a legacy pickle "
            f"stream: {str(error)[:60]}); pass a file written by torch.save"
        ) from None
    if magic != LEGACY_MAGIC_NUMBER:
        raise ModelError(
            f"{source}: not a PyTorch .pth file (a pickle, but without PyTorch's magic number); "
            "pass a file written by torch.save"
        )
    version = _restricted_load(file, source)
    if version != LEGACY_PROTOCOL_VERSION:
        raise ModelError(f"{source}: unsupported legacy .pth protocol version {version!r}")
    sys_info = _restricted_load(file, source)
    if not isinstance(sys_info, dict):
        raise ModelError(f"{source}: corrupt legacy .pth header (no system information)")
    byteorder = "<" if sys_info.get("little_endian", True) else ">"

    storages: dict[str, _Storage] = {}

    def storage_for(storage_type: _StorageType, key: str, numel: int, rest: tuple):
        # Legacy ids end with view metadata: None, or (view_key, offset, view_size) for a
        # slice of the storage `key`.
        storage = storages.get(key)
        if storage is None:
            storage = storages[key] = _Storage(storage_type, numel)
        elif storage.storage_type.dtype != storage_type.dtype:
            raise ModelError(f"{source}: storage {key} is declared with two element types")
        view = rest[0] if rest else None
        if view is None:
            return storage
        if not (isinstance(view, tuple) and len(view) == 3 and all(map(_is_int, view[1:]))):
            raise ModelError(f"{source}: storage {key} has invalid view metadata")
        _, offset, view_size = view
        if offset < 0 or view_size < 0 or offset + view_size > numel:
            raise ModelError(f"{source}: a view of storage {key} lies outside it")
        return _StorageView(storage, offset, view_size)

    obj = _RestrictedUnpickler(file, source, storage_for=storage_for, byteorder=byteorder).load()
    keys = _restricted_load(file, source)
    file_size = os.fstat(file.fileno()).st_size
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise ModelError(f"{source}: the storage list does not match the tensors; file corrupt")
    for key in keys:
        storage = storages[key]
        header = file.read(8)
        if len(header) != 8:
            raise ModelError(
                f"{source}: the file is truncated (storage {key} is missing); "
                "re-download or re-save it"
            )
        # PyTorch writes this count in the byte order of the machine that saved the file.
        (numel,) = struct.unpack(byteorder + "q", header)
        if numel != storage.numel:
            raise ModelError(
                f"{source}: storage {key} holds {numel} elements but {storage.numel} were "
                "declared; the file is corrupt"
            )
        nbytes = numel * storage.storage_type.dtype.itemsize
        # Compare with what is left of the file before reading, so that a forged count
        # cannot make us allocate terabytes.
        if nbytes > file_size - file.tell():
            raise ModelError(
                f"{source}: the file is truncated (storage {key} is incomplete); "
                "re-download or re-save it"
            )
        storage.data = _decode_storage(file.read(nbytes), storage, source, key)
    return obj


def _load_zip(path: Path, source: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        pickles = [name for name in pickles if name.count("/") <= 1]
        if len(pickles) != 1:
            raise ModelError(
                f"{source}: a zip archive, but not a PyTorch .pth file (no single data.pkl); "
                "pass a file written by torch.save"
            )
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "<"
        if prefix + "byteorder" in archive.namelist():
            byteorder = "<" if archive.read(prefix + "byteorder").strip() == b"little" else ">"
        storages: dict[str, _Storage] = {}

        def storage_for(storage_type: _StorageType, key: str, numel: int, rest: tuple):
            storage = storages.get(key)
            if storage is not None:
                return storage
            storage = storages[key] = _Storage(storage_type, numel)
            name = f"{prefix}data/{key}"
            try:
                info = archive.getinfo(name)
            except KeyError:
                raise ModelError(f"{source}: storage {key} is missing from the archive") from None
            if info.file_size != numel * storage_type.dtype.itemsize:
                raise ModelError(f"{source}: storage {key} has the wrong size; the file is corrupt")
            storage.data = _decode_storage(
                _read_member(archive, info, source), storage, source, key
            )
            return storage

        data = _read_member(archive, archive.getinfo(pickles[0]), source)
        return _RestrictedUnpickler(
            io.BytesIO(data), source, storage_for=storage_for, byteorder=byteorder
        ).load()


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> bytes:
    # PyTorch stores members uncompressed; a compressed one that claims to expand far
    # beyond its size is refused before decompression (a zip bomb).
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_ZIP_RATIO * max(
        info.compress_size, 1
    ):
        raise ModelError(f"{source}: member {info.filename!r} expands suspiciously; refused")
    return archive.read(info)


def _decode_storage(raw: bytes, storage: _Storage, source: str, key: str) -> np.ndarray:
    dtype = storage.storage_type.dtype
    if len(raw) != storage.numel * dtype.itemsize:
        raise ModelError(
            f"{source}: the file is truncated (storage {key} is incomplete); "
            "re-download or re-save it"
        )
    array = np.frombuffer(raw, dtype=dtype)
    if storage.storage_type.name == "BFloat16Storage":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _to_state_dict(obj: Any, source: str) -> dict[str, np.ndarray]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelError(
            f"{source}: holds a {type(obj).__name__}, not a state dict; save "
            "model.state_dict() rather than the model"
        )
    state = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _LazyTensor):
            raise ModelError(
                f"{source}: entry {name!r:.60} is a {type(value).__name__}, not a tensor; "
                "pass a plain state dict"
            )
        state[name] = value.to_numpy()
    return state

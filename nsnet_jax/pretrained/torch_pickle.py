"""Reads PyTorch checkpoint files (zip `.pth` and the legacy non-zip format) without torch.

`torch.load` unpickles arbitrary objects, and unpickling can run any code the file names. A state
dict needs only a handful of globals (an ordered dict, the tensor rebuild functions and the storage
classes), so this reader allows exactly those and refuses every other global *before* anything is
called: a file that names `os.system` raises `UnsafePickleError` naming it and executes nothing.

Tensors come back as numpy arrays (bfloat16 through `ml_dtypes`, which JAX ships). Views keep their
offset and strides, checked against the storage bounds, then are copied to contiguous arrays. A view
may repeat its storage (stride 0), so a tiny file can ask for terabytes: a tensor whose copy would
exceed `max_tensor_bytes` (default 4 GiB) raises `TensorTooLargeError` naming it before allocating.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import IO, Any

import ml_dtypes
import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES: dict[str, Any] = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
    "UntypedStorage": np.uint8,
}


DEFAULT_MAX_TENSOR_BYTES = 4 << 30


class UnsafePickleError(pickle.UnpicklingError):
    """The file asks for a global outside the state-dict allow-list; nothing was called."""


class TensorTooLargeError(pickle.UnpicklingError):
    """A tensor's copy would exceed the byte limit; nothing was allocated for it."""


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n < 2**40 else f"{n / 2**40:.2f} TiB"


class _StorageType:
    """Stands in for `torch.FloatStorage` etc.: only carries the element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: Any) -> None:
        self.name = name
        self.dtype = np.dtype(dtype)


class _Storage:
    """A storage named by a persistent id; its bytes come from a zip record or after the pickle."""

    __slots__ = ("key", "dtype", "numel", "data")

    def __init__(self, key: str, dtype: np.dtype, numel: int) -> None:
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray | None = None


class _TensorRef:
    """A tensor view on a storage, turned into a numpy array once every storage has been read."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride

    def materialize(self, name: str, source: str, max_bytes: int) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise pickle.UnpicklingError(f"storage {self.storage.key!r} has no data in the file")
        if any(s == 0 for s in self.size):
            return np.zeros(self.size, data.dtype)
        nbytes = math.prod(self.size) * data.itemsize
        if nbytes > max_bytes:
            raise TensorTooLargeError(
                f"{source}: tensor {name!r} of shape {self.size} ({data.dtype}, stride "
                f"{self.stride}) would take {_gib(nbytes)} from a storage of {data.nbytes} "
                f"bytes, above the limit of {_gib(max_bytes)}; if you trust the file, raise it "
                f"with --max_tensor_bytes={nbytes} (max_tensor_bytes= in Python)"
            )
        last = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or last >= data.size:
            raise pickle.UnpicklingError(
                f"tensor view (offset {self.offset}, size {self.size}, stride {self.stride}) reads "
                f"past its storage {self.storage.key!r} of {data.size} elements"
            )
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(st * data.itemsize for st in self.stride),
            writeable=False,
        )
        return np.array(view, copy=True)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise pickle.UnpicklingError(f"{what} must be a tuple of non-negative ints, got {value!r}")
    return tuple(value)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"_rebuild_tensor_v2 expects a storage, got {type(storage)}")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise pickle.UnpicklingError(f"bad storage offset {storage_offset!r}")
    size_t, stride_t = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size_t) != len(stride_t):
        raise pickle.UnpicklingError(f"size {size_t} and stride {stride_t} differ in length")
    return _TensorRef(storage, storage_offset, size_t, stride_t)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    if not isinstance(data, _TensorRef):
        raise pickle.UnpicklingError(f"_rebuild_parameter expects a tensor, got {type(data)}")
    return data


def _rebuild_parameter_with_state(
    data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None
) -> Any:
    return _rebuild_parameter(data)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}
ALLOWED_GLOBALS: tuple[str, ...] = tuple(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(
        self, file: IO[bytes], source: str, persistent: Callable[[Any], Any] | None = None
    ) -> None:
        super().__init__(file, encoding="utf-8")
        self._source = source
        self._persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing global '{module}.{name}': a state dict needs only "
                f"{', '.join(ALLOWED_GLOBALS[:4])} and torch storage classes, so this file is "
                "not a plain state dict (torch.load would have run that global). Nothing was "
                "executed. If you trust the file, re-save its state dict with "
                "torch.save(model.state_dict(), path) or as safetensors."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise pickle.UnpicklingError(f"{self._source}: unexpected persistent id {pid!r}")
        return self._persistent(pid)


def _storage_from_pid(pid: Any, source: str, storages: dict[str, _Storage]) -> _Storage:
    if not isinstance(pid, tuple) or not pid:
        raise pickle.UnpicklingError(f"{source}: malformed persistent id {pid!r}")
    typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if typename != "storage" or len(pid) < 5:
        raise UnsafePickleError(
            f"{source}: refusing persistent id of type {typename!r}; only tensor storages are "
            "allowed (a whole pickled nn.Module is not a state dict)"
        )
    storage_type, key, _location, numel = pid[1:5]
    if len(pid) > 5 and pid[5] is not None:
        raise pickle.UnpicklingError(f"{source}: storage views (legacy torch<0.4) are unsupported")
    if not isinstance(storage_type, _StorageType):
        raise pickle.UnpicklingError(f"{source}: bad storage type {storage_type!r}")
    key = str(key)
    if not isinstance(numel, int) or numel < 0:
        raise pickle.UnpicklingError(f"{source}: bad storage size {numel!r}")
    if key not in storages:
        storages[key] = _Storage(key, storage_type.dtype, numel)
    return storages[key]


def _materialize(obj: Any, source: str, max_bytes: int, name: str = "") -> Any:
    """Copies every tensor view out; `name` is the dotted key path, for errors."""

    def sub(key: Any) -> str:
        return f"{name}.{key}" if name else str(key)

    if isinstance(obj, _TensorRef):
        return obj.materialize(name, source, max_bytes)
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict(
            (k, _materialize(v, source, max_bytes, sub(k))) for k, v in obj.items()
        )
    if isinstance(obj, dict):
        return {k: _materialize(v, source, max_bytes, sub(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        out = [_materialize(v, source, max_bytes, sub(i)) for i, v in enumerate(obj)]
        return out if isinstance(obj, list) else tuple(out)
    if isinstance(obj, _Storage | _StorageType):
        raise pickle.UnpicklingError("a bare storage outside a tensor is not supported")
    return obj


def _load_zip(path: str, max_bytes: int) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise pickle.UnpicklingError(f"{path}: zip file without one <prefix>/data.pkl record")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode("ascii").strip()
        storages: dict[str, _Storage] = {}
        unpickler = _RestrictedUnpickler(
            io.BytesIO(archive.read(pkl[0])),
            path,
            lambda pid: _storage_from_pid(pid, path, storages),
        )
        result = unpickler.load()
        for key, storage in storages.items():
            record = f"{prefix}data/{key}"
            if record not in names:
                raise pickle.UnpicklingError(f"{path}: missing storage record {record}")
            raw = archive.read(record)
            storage.data = _decode(raw, storage, byteorder, path)
    return _materialize(result, path, max_bytes)


def _decode(raw: bytes, storage: _Storage, byteorder: str, source: str) -> np.ndarray:
    dtype = storage.dtype.newbyteorder("<" if byteorder == "little" else ">")
    need = storage.numel * dtype.itemsize
    if len(raw) < need:
        raise pickle.UnpicklingError(
            f"{source}: storage {storage.key!r} has {len(raw)} bytes, needs {need}"
        )
    return np.frombuffer(raw[:need], dtype).astype(storage.dtype, copy=False)


def _load_legacy(path: str, max_bytes: int) -> Any:
    with open(path, "rb") as f:

        def preamble() -> Any:
            return _RestrictedUnpickler(f, path).load()

        magic = preamble()
        if magic != LEGACY_MAGIC_NUMBER:
            raise pickle.UnpicklingError(f"{path}: not a torch file (bad magic number)")
        preamble()  # protocol version
        sys_info = preamble()
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise pickle.UnpicklingError(f"{path}: big-endian legacy files are unsupported")
        storages: dict[str, _Storage] = {}
        result = _RestrictedUnpickler(
            f, path, lambda pid: _storage_from_pid(pid, path, storages)
        ).load()
        keys = preamble()
        if not isinstance(keys, list):
            raise pickle.UnpicklingError(f"{path}: bad storage key list {type(keys)}")
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise pickle.UnpicklingError(f"{path}: storage {key!r} was never referenced")
            (count,) = struct.unpack("<q", f.read(8))
            if count != storage.numel:
                raise pickle.UnpicklingError(
                    f"{path}: storage {key!r} holds {count} elements, expected {storage.numel}"
                )
            raw = f.read(count * storage.dtype.itemsize)
            storage.data = _decode(raw, storage, "little", path)
    return _materialize(result, path, max_bytes)


def load_torch_file(
    path: str | os.PathLike, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
) -> Any:
    """Loads a torch.save file (zip or legacy) holding tensors in dicts/lists, as numpy arrays;
    a tensor above `max_tensor_bytes` raises TensorTooLargeError instead of being allocated."""
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        return _load_zip(path, max_tensor_bytes)
    return _load_legacy(path, max_tensor_bytes)

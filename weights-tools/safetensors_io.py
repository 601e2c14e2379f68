"""safetensors files from numpy arrays, with the standard library and numpy only.

The Python `safetensors` package is not installed on our machines, so this module writes
and reads the format itself. Files it writes are byte-for-byte what the reference
implementation (the Rust `safetensors` crate behind the Python package) writes for the
same tensors and metadata:

  * 8-byte little-endian header length N, then N bytes of compact JSON (no spaces,
    UTF-8 kept), padded with spaces to a multiple of 8, then the raw data;
  * "__metadata__" (str -> str, keys sorted) first in the header;
  * tensors ordered by dtype alignment, largest first (I64, F64, F32, I32, ...), then by
    name. With the 8-byte padded header this keeps every tensor aligned to its element
    size in the file, which zero-copy readers (ours in engine/safetensors) rely on;
  * data little-endian, C order; a 0-d array is a scalar of shape [].

save() writes to a temporary file in the same directory and renames it, so a reader
never sees half a file. load() validates as the crate does (header inside the file,
known dtypes, contiguous offsets from 0 to the end of the file, byte counts matching
shapes) and refuses anything else with a ValueError that names the file.

tests/engine/safetensors_stdlib.py is an independent implementation used by the C++
tests; tests/weights_tools checks that the two agree.
"""

import json
import math
import os
import struct
import tempfile

import numpy as np

# dtype name -> (numpy dtype, rank in the crate's Dtype enum = increasing alignment).
_DTYPES = {
    "BOOL": (np.dtype(np.bool_), 0),
    "U8": (np.dtype("<u1"), 4),
    "I8": (np.dtype("<i1"), 5),
    "I16": (np.dtype("<i2"), 11),
    "U16": (np.dtype("<u2"), 12),
    "F16": (np.dtype("<f2"), 13),
    "I32": (np.dtype("<i4"), 15),
    "U32": (np.dtype("<u4"), 16),
    "F32": (np.dtype("<f4"), 17),
    "F64": (np.dtype("<f8"), 19),
    "I64": (np.dtype("<i8"), 20),
    "U64": (np.dtype("<u8"), 21),
}
# What save() accepts (the brief's four; the engine stores float32 and int64).
_WRITABLE = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
             np.dtype(np.int32): "I32", np.dtype(np.int64): "I64"}
_MAX_HEADER = 100_000_000


def _as_array(name, value):
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    key = arr.dtype.newbyteorder("=")
    if key not in _WRITABLE:
        raise ValueError(f"tensor {name!r}: dtype {arr.dtype} is not one of "
                         "float32, float64, int32, int64")
    # np.asarray keeps 0-d arrays 0-d (np.ascontiguousarray would make them [1]).
    return _WRITABLE[key], np.asarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False),
                                      order="C")


def serialize(tensors, metadata=None):
    """tensors: dict name -> array; metadata: dict str -> str or None. Returns bytes."""
    entries = []
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        dtype, arr = _as_array(name, value)
        entries.append((name, dtype, arr))
    entries.sort(key=lambda e: (-_DTYPES[e[1]][1], e[0].encode("utf-8")))

    header = {}
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"metadata must map str to str, got {k!r}: {type(v).__name__}")
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    offset = 0
    blobs = []
    for name, dtype, arr in entries:
        blob = arr.tobytes(order="C")
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def save(path, tensors, metadata=None):
    """Writes tensors (dict name -> numpy array or torch tensor) and metadata atomically."""
    data = serialize(tensors, metadata)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fail(path, problem):
    raise ValueError(f"{path}: not a valid safetensors file: {problem}")


def _no_duplicates(path):
    def hook(pairs):
        out = {}
        for k, v in pairs:
            if k in out:
                _fail(path, f"duplicate header key {k!r}")
            out[k] = v
        return out
    return hook


def _usize(path, value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(path, f"{what} {value!r} is not a non-negative integer")
    return value


def parse(buffer, path="<bytes>"):
    """Returns (dict name -> numpy array, metadata dict or {}) from file bytes."""
    if len(buffer) < 8:
        _fail(path, f"{len(buffer)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", buffer[:8])
    if n > _MAX_HEADER:
        _fail(path, f"header length {n} is over {_MAX_HEADER} bytes")
    if 8 + n > len(buffer):
        _fail(path, f"header length {n} runs past the end of the {len(buffer)}-byte file")
    try:
        text = bytes(buffer[8:8 + n]).decode("utf-8")
    except UnicodeDecodeError as e:
        _fail(path, f"header is not UTF-8 ({e})")
    if not text.startswith("{"):
        _fail(path, "header does not start with '{'")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates(path))
    except json.JSONDecodeError as e:
        _fail(path, f"header is not JSON ({e})")
    if not isinstance(header, dict):
        _fail(path, "header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(v, str) for v in metadata.values()):
        _fail(path, "__metadata__ is not an object of strings")

    infos = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            _fail(path, f"tensor {name!r}: needs dtype, shape and data_offsets")
        dtype = entry["dtype"]
        if dtype not in _DTYPES:
            _fail(path, f"tensor {name!r}: unknown or unsupported dtype {dtype!r}")
        shape = entry["shape"]
        if not isinstance(shape, list):
            _fail(path, f"tensor {name!r}: shape is not a list")
        shape = [_usize(path, d, f"tensor {name!r}: dimension") for d in shape]
        offsets = entry["data_offsets"]
        if not isinstance(offsets, list) or len(offsets) != 2:
            _fail(path, f"tensor {name!r}: data_offsets is not a pair")
        begin, end = (_usize(path, o, f"tensor {name!r}: offset") for o in offsets)
        infos.append((name, dtype, shape, begin, end))

    infos.sort(key=lambda t: (t[3], t[4]))
    data = memoryview(buffer)[8 + n:]
    position = 0
    tensors = {}
    for name, dtype, shape, begin, end in infos:
        if begin != position or end < begin:
            _fail(path, f"tensor {name!r}: data_offsets [{begin}, {end}] leave a gap or "
                        f"overlap (expected to start at {position})")
        np_dtype = _DTYPES[dtype][0]
        count = math.prod(shape)
        if end - begin != count * np_dtype.itemsize:
            _fail(path, f"tensor {name!r}: shape {shape} of {dtype} needs "
                        f"{count * np_dtype.itemsize} bytes, offsets give {end - begin}")
        if end > len(data):
            _fail(path, f"tensor {name!r}: data ends at {end}, past the data section "
                        f"({len(data)} bytes); is the file truncated?")
        arr = np.frombuffer(data[begin:end], dtype=np_dtype).reshape(shape)
        tensors[name] = arr.astype(np_dtype.newbyteorder("="), copy=True)
        position = end
    if position != len(data):
        _fail(path, f"tensors end at {position} but the data section has {len(data)} bytes")
    return tensors, metadata


def load(path):
    """Reads a safetensors file: (dict name -> numpy array, metadata dict str -> str)."""
    with open(path, "rb") as f:
        buffer = f.read()
    return parse(buffer, str(path))

#!/usr/bin/env python3
"""A standard-library safetensors writer and reader, the independent side of the tests
of engine/safetensors (the `safetensors` package itself is not installed here).

It follows the reference implementation (the Rust `safetensors` crate that the Python
package wraps, safetensors/src/tensor.rs) exactly:
  writing  -- tensors sorted by dtype (the crate's Dtype enum order, which is increasing
              alignment) descending, then by name; data packed in that order; header is
              compact JSON (serde_json::to_string: no spaces, UTF-8 kept) with
              "__metadata__" first, padded with spaces to a multiple of 8 bytes.
  reading  -- read_metadata + Metadata::validate: 8-byte prefix, header <= 100 MB and
              inside the file, UTF-8, a JSON object, "__metadata__" string -> string,
              entries {dtype, shape, data_offsets} with known dtypes and usize numbers,
              tensors sorted by data_offsets must be contiguous from 0 with byte counts
              equal to shape x dtype, and the last must end at the end of the file.
              Like the C++ reader (and stricter than the crate) it also requires the
              header to start with '{' and refuses duplicate keys.

Usage:
  safetensors_stdlib.py write <path>   writes the fixed sample below
  safetensors_stdlib.py read <path>    validates, then prints a JSON summary on stdout:
      {"metadata": {...} | null, "tensors": [{"name", "dtype", "shape",
       "data_offsets", "values"}...]} in offset order; floats are exact (repr), with
      non-finite values as the strings "nan", "inf", "-inf". Exit status 1 and
      "error: <reference error kind>: <detail>" on stderr for an invalid file.
"""

import json
import math
import struct
import sys

MAX_HEADER_SIZE = 100_000_000
USIZE_MAX = 2**64 - 1

# The reference Dtype enum, in declaration (= increasing alignment) order, with bit sizes.
DTYPES = [
    ("BOOL", 8), ("F4", 4), ("F6_E2M3", 6), ("F6_E3M2", 6), ("U8", 8), ("I8", 8),
    ("F8_E5M2", 8), ("F8_E4M3", 8), ("F8_E8M0", 8), ("F8_E4M3FNUZ", 8),
    ("F8_E5M2FNUZ", 8), ("I16", 16), ("U16", 16), ("F16", 16), ("BF16", 16),
    ("I32", 32), ("U32", 32), ("F32", 32), ("C64", 64), ("F64", 64), ("I64", 64),
    ("U64", 64),
]
DTYPE_RANK = {name: i for i, (name, _) in enumerate(DTYPES)}
DTYPE_BITS = dict(DTYPES)
STRUCT_CODE = {"F32": "f", "F64": "d", "I32": "i", "I64": "q"}

# The sample that `write` produces; tests/engine/safetensors_test.cpp expects exactly it.
SAMPLE_TENSORS = [
    ("embed.weight", "F32", [2, 3], [i * 0.25 - 0.5 for i in range(6)]),
    ("head.bias", "F64", [4], [1.0 / 3.0, -2.5, 1e300, -0.0]),
    ("ids", "I32", [3], [-2**31, 0, 2**31 - 1]),
    ("lengths", "I64", [2, 1], [-2**63, 2**63 - 1]),
    ("scale", "F32", [], [3.5]),
    ("empty", "F32", [0, 4], []),
    ("zz.empty_i64", "I64", [0], []),
]
SAMPLE_METADATA = {"format": "pt", "note": "written by safetensors_stdlib.py",
                   "unicode": "l\u00e9gende \u2713"}


class Invalid(Exception):
    def __init__(self, kind, detail):
        super().__init__(f"{kind}: {detail}")


def serialize(tensors, metadata):
    """tensors: list of (name, dtype, shape, values). Returns the file bytes."""
    ordered = sorted(tensors, key=lambda t: (-DTYPE_RANK[t[1]], t[0].encode("utf-8")))
    header = {}
    if metadata is not None:
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    blobs = []
    offset = 0
    for name, dtype, shape, values in ordered:
        count = math.prod(shape)
        assert len(values) == count, name
        blob = struct.pack(f"<{count}{STRUCT_CODE[dtype]}", *values)
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise Invalid("InvalidHeaderDeserialization", f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _reject_constant(name):
    raise Invalid("InvalidHeaderDeserialization", f"{name} is not JSON")


def _usize(value, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("InvalidHeaderDeserialization", f"{what} {value!r} is not an integer")
    if value < 0 or value > USIZE_MAX:
        raise Invalid("InvalidHeaderDeserialization", f"{what} {value!r} is not a usize")
    return value


def parse(buffer):
    """Returns (metadata or None, [(name, dtype, shape, begin, end)] in offset order,
    data section bytes)."""
    if len(buffer) < 8:
        raise Invalid("HeaderTooSmall", f"{len(buffer)} bytes")
    (n,) = struct.unpack("<Q", buffer[:8])
    if n > MAX_HEADER_SIZE:
        raise Invalid("HeaderTooLarge", f"{n} bytes")
    if 8 + n > len(buffer):
        raise Invalid("InvalidHeaderLength", f"{n} bytes in a {len(buffer)}-byte file")
    try:
        text = buffer[8:8 + n].decode("utf-8")
    except UnicodeDecodeError as e:
        raise Invalid("InvalidHeader", str(e)) from None
    if not text.startswith("{"):
        raise Invalid("InvalidHeaderStart", repr(text[:10]))
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates,
                            parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise Invalid("InvalidHeaderDeserialization", str(e)) from None
    if not isinstance(header, dict):
        raise Invalid("InvalidHeaderDeserialization", "not an object")

    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(v, str)
                                                     for v in metadata.values()):
            raise Invalid("InvalidHeaderDeserialization", "__metadata__ is not str -> str")

    infos = []
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise Invalid("InvalidHeaderDeserialization", f"{name}: not an object")
        for field in ("dtype", "shape", "data_offsets"):
            if field not in entry:
                raise Invalid("InvalidHeaderDeserialization", f"{name}: missing {field}")
        dtype = entry["dtype"]
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            raise Invalid("InvalidHeaderDeserialization", f"{name}: unknown dtype {dtype!r}")
        shape = entry["shape"]
        if not isinstance(shape, list):
            raise Invalid("InvalidHeaderDeserialization", f"{name}: shape is not a list")
        shape = [_usize(d, f"{name}: dimension") for d in shape]
        offsets = entry["data_offsets"]
        if not isinstance(offsets, list) or len(offsets) != 2:
            raise Invalid("InvalidHeaderDeserialization", f"{name}: data_offsets not a pair")
        begin, end = (_usize(o, f"{name}: offset") for o in offsets)
        infos.append((name, dtype, shape, begin, end))

    infos.sort(key=lambda t: (t[3], t[4]))
    start = 0
    for name, dtype, shape, begin, end in infos:
        if begin != start or end < begin:
            raise Invalid("InvalidOffset", name)
        start = end
        nelements = math.prod(shape)
        nbits = nelements * DTYPE_BITS[dtype]
        if nelements > USIZE_MAX or nbits > USIZE_MAX:
            raise Invalid("ValidationOverflow", name)
        if nbits % 8 != 0:
            raise Invalid("MisalignedSlice", name)
        if end - begin != nbits // 8:
            raise Invalid("TensorInvalidInfo", name)
    if start + 8 + n != len(buffer):
        raise Invalid("MetadataIncompleteBuffer",
                      f"tensors end at {start}, data section is {len(buffer) - 8 - n} bytes")
    return metadata, infos, buffer[8 + n:]


def _json_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def summary(buffer):
    metadata, infos, data = parse(buffer)
    tensors = []
    for name, dtype, shape, begin, end in infos:
        item = {"name": name, "dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
        if dtype in STRUCT_CODE:
            count = math.prod(shape)
            values = struct.unpack(f"<{count}{STRUCT_CODE[dtype]}", data[begin:end])
            item["values"] = [_json_value(v) for v in values]
        tensors.append(item)
    return {"metadata": metadata, "tensors": tensors}


def main(argv):
    if len(argv) != 3 or argv[1] not in ("write", "read"):
        print(__doc__, file=sys.stderr)
        return 2
    path = argv[2]
    if argv[1] == "write":
        with open(path, "wb") as f:
            f.write(serialize(SAMPLE_TENSORS, SAMPLE_METADATA))
        return 0
    with open(path, "rb") as f:
        buffer = f.read()
    try:
        result = summary(buffer)
    except Invalid as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    # Bytes, so that the output is UTF-8 whatever the locale of the test run.
    sys.stdout.buffer.write(json.dumps(result, ensure_ascii=False).encode("utf-8") + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

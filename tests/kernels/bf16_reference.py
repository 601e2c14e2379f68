"""PyTorch's float32 -> bfloat16 rounding for tests/kernels/bf16_test.cpp.

Prints one line per value: the float32 bits and the bfloat16 bits PyTorch stores, both
in hex. The values: every exponent with random mantissas (ties and near-ties included),
subnormals, zeros, infinities, NaNs and the largest finite floats. Exits with 3 when
PyTorch is missing (the test then skips)."""
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    print(f"PyTorch/numpy not available: {e}")
    sys.exit(3)

rng = np.random.default_rng(20261127)
bits = []
for exponent in range(256):
    for sign in (0, 1):
        mant = rng.integers(0, 1 << 23, size=24, dtype=np.uint64)
        # exact ties and one-below/one-above ties of the 16-bit cut
        upper = rng.integers(0, 1 << 7, size=6, dtype=np.uint64)
        ties = (upper << 16) | 0x8000
        mant = np.concatenate([mant, ties, ties - 1, ties + 1, [0, (1 << 23) - 1]])
        bits.extend((sign << 31) | (exponent << 23) | (int(m) & ((1 << 23) - 1)) for m in mant)
bits.extend([0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x00000001, 0x80000001])
arr = np.array(bits, dtype=np.uint32)
rounded = torch.from_numpy(arr.view(np.float32).copy()).to(torch.bfloat16)
out = rounded.view(torch.int16).numpy().astype(np.uint16)
# NaN payloads are not specified; the test only asks that a NaN stays a NaN.
print("\n".join(f"{int(a):08x} {int(b):04x}" for a, b in zip(arr, out)))

#!/usr/bin/python3
"""Reference for data/image/resize: resizes PNG files with PIL's bilinear filter.

Usage: pil_resize_reference.py WIDTH HEIGHT IN.png OUT.png [IN.png OUT.png ...]

Each input is converted to RGB and resized with Image.resize((WIDTH, HEIGHT),
Image.BILINEAR), exactly as the training preprocessing does, and saved as PNG (lossless,
so the C++ test compares PIL's own pixels). Exit status 3 when PIL is missing, so the
test can skip with a reason rather than fail.
"""
import sys

try:
    from PIL import Image
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"PIL not available: {e}", file=sys.stderr)
    sys.exit(3)


def main(argv):
    if len(argv) < 5 or (len(argv) - 3) % 2 != 0:
        print(__doc__, file=sys.stderr)
        return 2
    width, height = int(argv[1]), int(argv[2])
    pairs = argv[3:]
    for src, dst in zip(pairs[0::2], pairs[1::2]):
        with Image.open(src) as im:
            im.convert("RGB").resize((width, height), Image.BILINEAR).save(dst)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/python3
"""Writes JPEG and PNG files in the variants datasets hold, each with PIL's decoding of
it (Image.open(f).convert("RGB"), torchvision's loader) beside it as raw bytes, for
tests/data/image_test.cpp to compare our decoders against, byte for byte.

Usage: pil_decode_reference.py OUT_DIR. Writes NAME.jpg or NAME.png and NAME.rgb (an
ASCII line "WIDTH HEIGHT" then WIDTH*HEIGHT*3 bytes) for each case, and cases.txt
listing the image files."""
import os
import sys

import numpy as np
from PIL import Image


def photo(w, h, seed):
    """Smooth gradients with noise and a few edges: what real photographs give an
    encoder (every DCT coefficient used, chroma varying)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 100 * np.sin(x / 9.0 + seed), 128 + 90 * np.cos(y / 7.0),
                    255 * (x + y) / (w + h)], axis=-1)
    img[(x // 16 + y // 16) % 2 == 0] *= 0.6
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cases = []

    def save(name, img, fmt, **kw):
        path = os.path.join(out, name)
        img.save(path, format=fmt, **kw)
        ref = Image.open(path).convert("RGB")
        with open(os.path.join(out, os.path.splitext(name)[0] + ".rgb"), "wb") as f:
            f.write(b"%d %d\n" % ref.size)
            f.write(ref.tobytes())
        cases.append(name)

    rgb = photo(500, 375, 1)
    save("q90_420.jpg", rgb, "JPEG", quality=90)
    save("q75_444.jpg", rgb, "JPEG", quality=75, subsampling=0)
    save("q95_422.jpg", rgb, "JPEG", quality=95, subsampling=1)
    save("progressive.jpg", rgb, "JPEG", quality=85, progressive=True)
    save("optimized.jpg", rgb, "JPEG", quality=80, optimize=True)
    odd = photo(37, 23, 2)
    save("odd_420.jpg", odd, "JPEG", quality=90)
    save("odd_progressive.jpg", odd, "JPEG", quality=70, progressive=True)
    save("grey_jpeg.jpg", rgb.convert("L"), "JPEG", quality=90)
    # PIL's RGB -> CMYK leaves K at 0; a K channel of its own exercises the conversion.
    ink = np.concatenate([np.asarray(odd), np.asarray(photo(37, 23, 3))[..., :1]], axis=-1)
    save("cmyk.jpg", Image.fromarray(ink, "CMYK"), "JPEG", quality=90)

    save("rgb.png", odd, "PNG")
    rgba = odd.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(odd.size))
    save("rgba.png", rgba, "PNG")
    save("grey.png", odd.convert("L"), "PNG")
    save("grey_alpha.png", rgba.convert("LA"), "PNG")
    pal = odd.convert("P", palette=Image.ADAPTIVE, colors=13)
    save("palette.png", pal, "PNG")
    save("palette_transparent.png", pal, "PNG", transparency=3)
    save("bilevel.png", odd.convert("1"), "PNG")

    with open(os.path.join(out, "cases.txt"), "w") as f:
        f.write("\n".join(cases) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Writes the seed inputs of tests/fuzz/corpus/<target>/ (ok-* must load, bad-* must be
refused). Run from the repository root with Debian's python3 (PIL, numpy); the seeds are
checked in, so this runs only when a seed changes. Inputs a fuzzing campaign finds are
added beside them as find-* by hand (tests/fuzz/README.md)."""
import io
import json
import os
import struct
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "weights-tools"))
import safetensors_io  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SEP = b"\n--8<--\n"


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def image_bytes(fmt, **kw):
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    if fmt == "GIF":
        img = img.convert("P")
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def images():
    png = image_bytes("PNG")
    put("image", "ok-8x6.png", png)
    put("image", "ok-8x6.jpg", image_bytes("JPEG", quality=90))
    put("image", "ok-8x6-progressive.jpg", image_bytes("JPEG", quality=90, progressive=True))
    put("image", "ok-8x6.bmp", image_bytes("BMP"))
    put("image", "ok-8x6.gif", image_bytes("GIF"))
    put("image", "bad-empty", b"")
    put("image", "bad-png-cut.png", png[: len(png) // 2])
    put("image", "bad-text.txt", "a dog runs on the grass\n")


def config(**over):
    c = {"encoder": "resnet18", "encoder_size": 2, "image_size": 64,
         "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "vocab_size": 6,
         "embed_dim": 4, "decoder_dim": 4, "attention_dim": 4, "attention_activation": "tanh",
         "dropout": 0.5, "max_decode_len": 5, "max_caption_len": 5, "fine_tune": "none",
         "text": {}}
    c.update(over)
    return json.dumps(c)


def tensors():
    two = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    data = safetensors_io.serialize(two, {"note": "seed"})
    put("safetensors", "ok-two-tensors.safetensors", data)
    put("safetensors", "ok-empty.safetensors", safetensors_io.serialize({}))
    put("safetensors", "bad-cut.safetensors", data[:-3])
    put("safetensors", "bad-header-size.safetensors", struct.pack("<Q", 1 << 40) + data[8:])
    vocab = json.dumps(["<pad>", "<sos>", "<eos>", "<unk>", "a", "dog"])
    meta = {"format": "caption-checkpoint/1", "config": config(), "vocab": vocab}
    w = {"decoder.embedding.weight": np.zeros((6, 4), dtype=np.float32)}
    put("checkpoint", "bad-missing-tensors.safetensors", safetensors_io.serialize(w, meta))
    put("checkpoint", "bad-format.safetensors",
        safetensors_io.serialize(w, dict(meta, format="caption-checkpoint/0")))
    put("checkpoint", "bad-config.safetensors",
        safetensors_io.serialize(w, dict(meta, config=config(embed_dim="four"))))
    put("checkpoint", "bad-vocab-size.safetensors",
        safetensors_io.serialize(w, dict(meta, config=config(vocab_size=9))))


def datasets():
    sentences = [{"tokens": ["a", "dog", "runs"], "raw": "A dog runs."},
                 {"tokens": ["the", "grass"], "raw": "The grass."}]
    doc = {"dataset": "flickr8k", "images": [
        {"filename": "1.jpg", "split": "train", "sentences": sentences},
        {"filename": "2.jpg", "split": "val", "sentences": sentences[:1]},
        {"filename": "3.jpg", "split": "test", "sentences": sentences[1:]},
        {"filename": "4.jpg", "split": "restval", "filepath": "x", "sentences": sentences}]}
    put("karpathy", "ok-four-images.json", json.dumps(doc, indent=1))
    put("karpathy", "bad-no-images.json", json.dumps({"dataset": "flickr8k"}))
    put("karpathy", "bad-cut.json", json.dumps(doc)[:40])
    tokens = (b"1.jpg#0\tA dog runs .\n1.jpg#1\tThe dog runs on the grass .\n"
              b"2.jpg#0\tA cat .\n3.jpg#0\tA bird flies .\n")
    put("flickr8k", "ok-three-images.txt", SEP.join([tokens, b"1.jpg\n", b"2.jpg\n", b"3.jpg\n"]))
    put("flickr8k", "bad-no-tab.txt", SEP.join([b"1.jpg#0 A dog runs .\n", b"1.jpg\n", b"", b""]))
    put("flickr8k", "bad-empty.txt", b"")


def text():
    put("vocabulary", "ok-six.json", json.dumps(["<pad>", "<sos>", "<eos>", "<unk>", "a", "dog"]))
    put("vocabulary", "bad-no-specials.json", json.dumps(["a", "dog"]))
    put("vocabulary", "bad-object.json", json.dumps({"a": 1}))
    put("glove", "ok-three-words.txt", "dog 0.1 0.2 -0.3\nthe 1 2 3\nzebra 0.5 0.5 0.5\n")
    put("glove", "bad-dimension-changes.txt", "dog 0.1 0.2 -0.3\nthe 1 2\n")
    put("glove", "bad-number.txt", "dog 0.1 x 0.3\n")
    put("glove", "bad-empty.txt", "")


if __name__ == "__main__":
    images()
    tensors()
    datasets()
    text()

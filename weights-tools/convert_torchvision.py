#!/usr/bin/python3
"""Converts torchvision ResNet weights (.pth) into a safetensors file of encoder weights.

    convert_torchvision.py --depth 50 resnet50-0676ba61.pth resnet50.safetensors
    convert_torchvision.py --depth 18 --random-init 7 resnet18-random.safetensors

Input: a state dict as torchvision distributes ImageNet weights, or a checkpoint dict
holding one under 'state_dict' or 'model'; a 'module.' prefix (DataParallel) is
removed. The file is read with torch.load(weights_only=True), which refuses pickled
code; --allow-pickle lifts that for files you trust.

Output names are `encoder.<torchvision name>` (MODEL_SPEC section 7), `fc.*` and
`*.num_batches_tracked` left out, all float32. `__metadata__`:
  format "caption-encoder/1", encoder "resnet<depth>", depth, source (the input path,
  or "random-init:<seed>"), source_sha256 (of the input file), tensors (count).

Validation: the depth is detected from the keys (blocks per layer and basic vs
bottleneck blocks: 18 [2,2,2,2] basic, 34 [3,4,6,3] basic, 50 [3,4,6,3] bottleneck,
101 [3,4,23,3], 152 [3,8,36,3]) and must equal --depth; then the key set and every
shape must equal those of torchvision's resnet<depth>. Every error names the file.

--random-init SEED: torch.manual_seed(SEED); torchvision.models.resnet<depth>(weights=None),
then, because freshly initialised batch norm is the identity at inference (mean 0,
var 1, weight 1, bias 0) and would let a wrong batch-norm implementation pass a
comparison, every batch norm gets, from a generator seeded with SEED:
running_mean ~ N(0, 0.1^2), running_var ~ U(0.5, 1.5), weight ~ 1 + N(0, 0.1^2),
bias ~ N(0, 0.1^2).
"""

import argparse
import hashlib
import os
import re
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from reference_model import RESNET_LAYOUT  # noqa: E402

FORMAT = "caption-encoder/1"


class ConversionError(Exception):
    pass


def randomize_batch_norm(module, seed):
    """Gives every BatchNorm2d of `module` non-trivial statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(1.0 + torch.randn(n, generator=gen) * 0.1)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


def random_resnet(depth, seed):
    torch.manual_seed(seed)
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    randomize_batch_norm(model, seed)
    return model


def unwrap_state_dict(obj, path):
    """The tensor dict inside what torch.load returned."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], (dict, torch.nn.Module)):
                return unwrap_state_dict(obj[key], path)
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{path}: expected a state dict (name -> tensor), found "
                              f"{type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise ConversionError(f"{path}: not a state dict: entry {bad[0]!r} is not a named tensor")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def detect_depth(state, path):
    """The ResNet depth that the keys describe, or ConversionError naming the file."""
    blocks = {}
    bottleneck = False
    for key in state:
        m = re.match(r"layer([1-4])\.(\d+)\.(conv\d)\.", key)
        if m:
            layer, index = int(m.group(1)), int(m.group(2))
            blocks[layer] = max(blocks.get(layer, 0), index + 1)
            bottleneck |= m.group(3) == "conv3"
    if "conv1.weight" not in state or sorted(blocks) != [1, 2, 3, 4]:
        raise ConversionError(f"{path}: not a torchvision ResNet state dict (no conv1.weight "
                              f"or not layer1..layer4; first keys: {list(state)[:4]})")
    found = ("bottleneck" if bottleneck else "basic", [blocks[i] for i in range(1, 5)])
    for depth, layout in RESNET_LAYOUT.items():
        if (layout[0], layout[1]) == found:
            return depth
    raise ConversionError(f"{path}: {found[0]} blocks per layer {found[1]} match no ResNet "
                          f"depth of {sorted(RESNET_LAYOUT)}")


def convert_state_dict(state, depth, path):
    """torchvision names -> our names, validated against torchvision's resnet<depth>."""
    detected = detect_depth(state, path)
    if depth is not None and detected != depth:
        raise ConversionError(f"{path}: holds ResNet-{detected} weights, but --depth {depth} "
                              "was asked for")
    expected = getattr(torchvision.models, f"resnet{detected}")(weights=None).state_dict()
    wanted = {k: v for k, v in expected.items()
              if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    given = {k: v for k, v in state.items()
             if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    missing = sorted(set(wanted) - set(given))
    unknown = sorted(set(given) - set(wanted))
    if missing or unknown:
        raise ConversionError(f"{path}: keys differ from torchvision's resnet{detected}: "
                              f"missing {missing[:5]}, unexpected {unknown[:5]}")
    out = {}
    for k in wanted:
        v = given[k]
        if tuple(v.shape) != tuple(wanted[k].shape):
            raise ConversionError(f"{path}: {k} has shape {list(v.shape)}, resnet{detected} "
                                  f"needs {list(wanted[k].shape)}")
        if not v.is_floating_point():
            raise ConversionError(f"{path}: {k} has dtype {v.dtype}, expected floating point")
        out["encoder." + k] = v.detach().to(torch.float32).contiguous().numpy()
    return detected, out


def load_pth(path, allow_pickle=False):
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except FileNotFoundError:
        raise ConversionError(f"{path}: no such file") from None
    except Exception as e:  # torch raises many kinds for a file that is not a checkpoint
        hint = ""
        if not allow_pickle and "weights only" in str(e).lower():
            hint = " (it pickles objects other than tensors; if you trust it, pass --allow-pickle)"
        raise ConversionError(f"{path}: cannot be read as a PyTorch file: "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                              f"{hint}") from None


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_file(src, dst, depth=None, allow_pickle=False):
    state = unwrap_state_dict(load_pth(src, allow_pickle), src)
    detected, tensors = convert_state_dict(state, depth, src)
    metadata = {"format": FORMAT, "encoder": f"resnet{detected}", "depth": str(detected),
                "source": os.path.abspath(src), "source_sha256": sha256(src),
                "tensors": str(len(tensors))}
    safetensors_io.save(dst, tensors, metadata)
    return detected, tensors


def convert_random(depth, seed, dst):
    model = random_resnet(depth, seed)
    label = f"random-init:{seed}"
    _, tensors = convert_state_dict(model.state_dict(), depth, label)
    metadata = {"format": FORMAT, "encoder": f"resnet{depth}", "depth": str(depth),
                "source": label, "tensors": str(len(tensors))}
    safetensors_io.save(dst, tensors, metadata)
    return depth, tensors


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, choices=sorted(RESNET_LAYOUT), required=True)
    p.add_argument("--random-init", type=int, metavar="SEED",
                   help="convert a seeded random resnet (with randomised batch norm) "
                        "instead of a file; then only the output path is given")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load with torch.load(weights_only=False): only for trusted files")
    p.add_argument("paths", nargs="+", metavar="PATH", help="input.pth output.safetensors")
    args = p.parse_args(argv)
    try:
        if args.random_init is not None:
            if len(args.paths) != 1:
                p.error("with --random-init give only the output path")
            depth, tensors = convert_random(args.depth, args.random_init, args.paths[0])
        else:
            if len(args.paths) != 2:
                p.error("give the input .pth and the output .safetensors")
            depth, tensors = convert_file(args.paths[0], args.paths[1], args.depth,
                                          args.allow_pickle)
    except ConversionError as e:
        print(f"convert_torchvision: error: {e}", file=sys.stderr)
        return 1
    count = sum(v.size for v in tensors.values())
    print(f"resnet{depth}: {len(tensors)} tensors, {count} values -> {args.paths[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

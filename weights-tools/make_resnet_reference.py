#!/usr/bin/python3
"""Writes the reference for the encoder test (tests/nn/torchvision_test.cpp):

    make_resnet_reference.py --out DIR

DIR/resnet50.safetensors   a torchvision ResNet-50 with random weights (seed 50, batch
                           norm statistics randomised as convert_torchvision --random-init
                           does), converted to the engine's names by our converter
DIR/image.png              a 320x240 RGB image with gradients, edges and noise, decoded
                           by both sides from the same file
DIR/reference.safetensors  input [1,3,224,224]: the image as torchvision users prepare
                           it (PIL bilinear resize to 224x224, ToTensor, ImageNet
                           normalisation); features [1,196,2048]: the trunk's output
                           pooled to 14x14 by nn.AdaptiveAvgPool2d, channels last,
                           computed in float64 from the float32 weights and input.
"""
import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_torchvision  # noqa: E402
import safetensors_io  # noqa: E402

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def make_image(path):
    rng = np.random.default_rng(7)
    h, w = 240, 320
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float64)
    img[..., 0] = 255 * x / w
    img[..., 1] = 255 * y / h
    img[..., 2] = 128 + 100 * np.sin(x / 17.0) * np.cos(y / 11.0)
    img[60:150, 90:200] = (230, 40, 30)  # a red box with hard edges
    img += rng.normal(0, 12, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)

    model = convert_torchvision.random_resnet(50, 50).eval()
    _, tensors = convert_torchvision.convert_state_dict(model.state_dict(), 50, "random-init:50")
    safetensors_io.save(os.path.join(args.out, "resnet50.safetensors"), tensors,
                        {"format": convert_torchvision.FORMAT, "encoder": "resnet50", "depth": "50",
                         "source": "random-init:50"})

    image_path = os.path.join(args.out, "image.png")
    make_image(image_path)
    pil = Image.open(image_path).convert("RGB").resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(pil, np.float32) / 255.0).permute(2, 0, 1)
    x = ((x - torch.tensor(MEAN, dtype=torch.float32)[:, None, None]) /
         torch.tensor(STD, dtype=torch.float32)[:, None, None]).unsqueeze(0).contiguous()

    trunk = torch.nn.Sequential(*list(model.children())[:-2]).double()
    with torch.no_grad():
        maps = torch.nn.AdaptiveAvgPool2d((14, 14))(trunk(x.double()))
    features = maps.permute(0, 2, 3, 1).reshape(1, 196, 2048)
    safetensors_io.save(os.path.join(args.out, "reference.safetensors"),
                        {"input": x.numpy(), "features": features.float().numpy()},
                        {"format": "caption-resnet-reference/1"})
    print(f"make_resnet_reference: wrote {args.out} (features max |x| {features.abs().max():.3g})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Turns a .cu file into C++ for the CUDA host emulator (tools/cuda_emu).

Two constructs of CUDA C++ are not C++ and are rewritten; everything else is left as it
is and compiled against the emulator's headers:

  kernel<<<grid, block, shared, stream>>>(args...)
      -> kernel ^ ::caption_emu::LaunchConfig(grid, block, shared, stream)
             .named("kernel") ^ ::caption_emu::args(args...)
  extern __shared__ T name[];
      -> T* name = ::caption_emu::dynamic_shared_as<T>();

A #line directive keeps compiler messages pointing at the .cu file.

usage: translate.py IN.cu OUT.cpp
"""
import re
import sys

LAUNCH = re.compile(
    r"(?P<kernel>[A-Za-z_][\w:]*(?:\s*<[^;<>]*>)?)\s*<<<(?P<config>.*?)>>>\s*\(", re.S)
SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?(?P<type>[\w:\s]+?)\s+(?P<name>\w+)\s*\[\s*\]\s*;")


def translate(text: str) -> str:
    def launch(m):
        kernel = m.group("kernel")
        name = re.sub(r"\s+", " ", kernel).replace('"', "")
        return (f"{kernel} ^ ::caption_emu::LaunchConfig({m.group('config')})"
                f'.named("{name}") ^ ::caption_emu::args(')

    def shared(m):
        t = m.group("type").strip()
        return f"{t}* {m.group('name')} = ::caption_emu::dynamic_shared_as<{t}>();"

    out = LAUNCH.sub(launch, text)
    out = SHARED.sub(shared, out)
    if "<<<" in out or ">>>" in out:
        raise SystemExit("translate.py: a launch was not understood")
    return out


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    body = translate(text)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{src}"\n')
        f.write(body)


if __name__ == "__main__":
    main()

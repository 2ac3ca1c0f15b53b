#!/usr/bin/env python3
"""Writes tests/fixtures/images/: the references tests/test_image.c checks
core/io/image.c against.

    tools/.venv/bin/python tools/gen_image_fixtures.py tests/fixtures

images.safetensors
  resize.<k>.input / .output   torch.nn.functional.interpolate(mode="bilinear",
                               align_corners=False, antialias=False) in float32
                               (the kernel difusa reproduces); .output64 is the
                               same from the float64 copy of the input.
                               __metadata__["resize.<k>"] = "w=<out W> h=<out H>"
  save.input / save.expected   (1, 3, H, W) float32 values, chosen to hit the
                               rounding ties, and the uint8 (H, W, 3) pixels
                               diffusers' VaeImageProcessor.postprocess(
                               output_type="pil") makes of them.
  <png>.rgb                    uint8 (H, W, 3): what PIL's convert("RGB") gives
                               for each PNG below (alpha dropped, palette and
                               grey expanded)
  <png>.L                      uint8 (H, W): PIL's convert("L") of that RGB
                               (ITU-R 601-2 luma), what a mask load must give
  pil_q90.jpg.rgb              PIL's (libjpeg's) decode of the JPEG below

PNG / JPEG files written by PIL:
  pil_text.png     RGB 5x4 with, in order: tEXt "parameters" (Latin-1, an
                   A1111-style string with "é"), iTXt "comment" (UTF-8, PIL
                   chooses iTXt because it is not Latin-1), zTXt "zipped",
                   compressed iTXt "itxt_zip"
  pil_grey.png     mode L, 4x3
  pil_rgba.png     mode RGBA, 4x3 (varied alpha)
  pil_palette.png  mode P, 4x3
  pil_q90.jpg      RGB 16x16, quality 90
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, PngImagePlugin

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_safetensors  # noqa: E402

# (C, H, W) -> (out H, out W): down, up, identity, a single row / column,
# non-integral ratios both ways, a 1x1 source.
RESIZE_CASES = [
    ((3, 5, 7), (3, 4)),
    ((3, 3, 4), (7, 9)),
    ((2, 4, 4), (4, 4)),
    ((1, 1, 6), (3, 4)),
    ((1, 6, 1), (4, 2)),
    ((3, 8, 8), (3, 5)),
    ((1, 7, 5), (16, 11)),
    ((1, 1, 1), (2, 3)),
    ((3, 10, 6), (10, 15)),
]

PARAMETERS = ("a café at dusk, (oil painting:1.2)\nNegative prompt: blurry, lowres\n"
              "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, "
              "Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly")
COMMENT = "日本語のコメント ✓"
ZIPPED = "compressed text, " * 20
ITXT_ZIP = "ünïcödé ✓ " * 10


def t_entry(arr, dtype):
    arr = np.ascontiguousarray(arr)
    return (dtype, list(arr.shape), arr.tobytes())


def main(outdir):
    imgdir = os.path.join(outdir, "images")
    os.makedirs(imgdir, exist_ok=True)
    tensors, metadata = {}, {}
    rng = np.random.default_rng(20240611)

    for k, ((c, h, w), (oh, ow)) in enumerate(RESIZE_CASES):
        x = rng.uniform(-1, 1, size=(1, c, h, w)).astype(np.float32)
        y = F.interpolate(torch.from_numpy(x), size=(oh, ow), mode="bilinear", align_corners=False,
                          antialias=False).numpy()
        y64 = F.interpolate(torch.from_numpy(x).double(), size=(oh, ow), mode="bilinear", align_corners=False,
                            antialias=False).numpy()
        tensors[f"resize.{k}.input"] = t_entry(x, "F32")
        tensors[f"resize.{k}.output"] = t_entry(y.astype(np.float32), "F32")
        tensors[f"resize.{k}.output64"] = t_entry(y64.astype(np.float32), "F32")
        metadata[f"resize.{k}"] = f"w={ow} h={oh}"

    # save: every 8-bit level, the float32 values whose (x/2+0.5)*255 lands on
    # a tie k+0.5 (or next to one), values out of range, random values.
    from diffusers.image_processor import VaeImageProcessor

    vals = [np.float32(p / 127.5 - 1) for p in range(256)]
    for k in range(255):
        t = np.float32(((k + 0.5) / 255.0 - 0.5) * 2.0)
        vals += [t, np.nextafter(t, np.float32(-2)), np.nextafter(t, np.float32(2))]
    vals += [np.float32(v) for v in (-1.5, -1.0000001, 1.0000001, 3.0, -0.0, 1e-8, -1e-8)]
    vals += list(rng.uniform(-1.1, 1.1, size=(3 * 16 * 16 * 2 - len(vals),)).astype(np.float32))
    x = np.array(vals, dtype=np.float32)[: 3 * 16 * 32].reshape(1, 3, 16, 32)
    pil = VaeImageProcessor(do_resize=False).postprocess(torch.from_numpy(x), output_type="pil")[0]
    tensors["save.input"] = t_entry(x, "F32")
    tensors["save.expected"] = t_entry(np.array(pil, dtype=np.uint8), "U8")

    def record(name, im):
        rgb = im.convert("RGB")
        tensors[f"{name}.rgb"] = t_entry(np.array(rgb, dtype=np.uint8), "U8")
        tensors[f"{name}.L"] = t_entry(np.array(rgb.convert("L"), dtype=np.uint8), "U8")

    rgb = np.array([[[(37 * x + 11 * y) % 256, (91 * y + 5 * x + 128) % 256, (13 * x * y + 200) % 256]
                     for x in range(5)] for y in range(4)], dtype=np.uint8)
    im = Image.fromarray(rgb, "RGB")
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", PARAMETERS)
    info.add_text("comment", COMMENT)
    info.add_text("zipped", ZIPPED, zip=True)
    info.add_itxt("itxt_zip", ITXT_ZIP, zip=True)
    im.save(os.path.join(imgdir, "pil_text.png"), pnginfo=info)
    record("pil_text.png", Image.open(os.path.join(imgdir, "pil_text.png")))

    grey = Image.fromarray(np.array([[(x * 70 + y * 20) % 256 for x in range(4)] for y in range(3)],
                                    dtype=np.uint8), "L")
    grey.save(os.path.join(imgdir, "pil_grey.png"))
    record("pil_grey.png", Image.open(os.path.join(imgdir, "pil_grey.png")))

    rgba = np.array([[[(x * 60) % 256, (y * 90) % 256, (x * y * 40) % 256, (x * 64 + y * 16) % 256]
                      for x in range(4)] for y in range(3)], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(os.path.join(imgdir, "pil_rgba.png"))
    record("pil_rgba.png", Image.open(os.path.join(imgdir, "pil_rgba.png")))

    pal = Image.fromarray(rgb[:3, :4].copy(), "RGB").quantize(colors=5)
    pal.save(os.path.join(imgdir, "pil_palette.png"))
    record("pil_palette.png", Image.open(os.path.join(imgdir, "pil_palette.png")))

    yy, xx = np.mgrid[0:16, 0:16]
    smooth = np.stack([xx * 15, yy * 15, (xx + yy) * 7 + 20], axis=-1).astype(np.uint8)
    Image.fromarray(smooth, "RGB").save(os.path.join(imgdir, "pil_q90.jpg"), quality=90)
    tensors["pil_q90.jpg.rgb"] = t_entry(np.array(Image.open(os.path.join(imgdir, "pil_q90.jpg")).convert("RGB"),
                                                  dtype=np.uint8), "U8")

    metadata["generator"] = f"tools/gen_image_fixtures.py torch {torch.__version__} pillow {Image.__version__}"
    write_safetensors(os.path.join(imgdir, "images.safetensors"), tensors, metadata)
    for name in sorted(os.listdir(imgdir)):
        print(f"{name}: {os.path.getsize(os.path.join(imgdir, name))} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")

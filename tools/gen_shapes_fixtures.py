"""Fixtures for the prompt-adherence tests of the default model (tests/lua/test_adherence.lua), drawn from the
training data's own generator (tools/train/shapes.py), never from difusa:

  tests/fixtures/shapes/dataset.png   96 one-shape dataset pictures (held-out combinations included), 12 per row
  tests/fixtures/shapes/dataset.txt   their parameters, one line each: shape colour size position background
  tests/fixtures/shapes/prompts.txt   64 prompts: 48 trained combinations, 16 held out (kind TAB caption)
  tests/fixtures/shapes/red_circle.png     img2img source: a large red circle in the center on a yellow background
  tests/fixtures/shapes/inpaint.png        inpaint source: a small red circle in the center on a white background
  tests/fixtures/shapes/inpaint_mask.png   white over the circle (the middle 28 x 28 box), black elsewhere

Run: tools/.venv/bin/python tools/gen_shapes_fixtures.py
"""
import os
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "train"))
import shapes  # noqa: E402

OUT = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "shapes")
SEED = 4242


def one_shape(shape, colour, size, pos, bg, rng):
    """Parameters of a given one-shape scene (radius and jitter drawn as the dataset does)."""
    r = rng.uniform(*shapes.SIZES[size])
    o = dict(shape=shape, colour=colour, size=size, pos=pos, r=r)
    o["cx"], o["cy"] = shapes._centre(pos, r, rng)
    return dict(objs=[o], bg=bg, bg_rgb=np.array(shapes.COLOURS[bg], np.float32),
                rgbs=[np.array(shapes.COLOURS[colour], np.float32)])


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    # the analyser's ceiling: dataset pictures
    imgs, lines = [], []
    for _ in range(96):
        p = shapes.sample_params(rng, heldout_ok=True, n_shapes=1)
        o = p["objs"][0]
        imgs.append(shapes.render(p))
        lines.append("%s %s %s %s %s" % (o["shape"], o["colour"], o["size"], o["pos"], p["bg"]))
    grid = np.concatenate([np.concatenate(imgs[r * 12:(r + 1) * 12], 1) for r in range(8)], 0)
    Image.fromarray(grid).save(os.path.join(OUT, "dataset.png"))
    with open(os.path.join(OUT, "dataset.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    # prompts: 48 trained, 16 held out (every held-out pair at least once)
    items = []
    seen = set()
    while len(items) < 48:
        p = shapes.sample_params(rng, n_shapes=1)
        cap = shapes.caption(p, full=True)
        if cap not in seen:
            seen.add(cap)
            items.append(("trained", cap))
    ho = shapes.HELDOUT
    wants = [("colour_shape", pr) for pr in ho["colour_shape"]] + \
            [("shape_position", pr) for pr in ho["shape_position"]] * 2 + \
            [("colour_background", pr) for pr in ho["colour_background"]] * 3
    for kind, pair in wants:
        while True:
            p = shapes.sample_params(rng, heldout_ok=True, n_shapes=1)
            o = p["objs"][0]
            key = {"colour_shape": (o["colour"], o["shape"]), "shape_position": (o["shape"], o["pos"]),
                   "colour_background": (o["colour"], p["bg"])}[kind]
            cap = shapes.caption(p, full=True)
            if key == pair and cap not in seen:
                seen.add(cap)
                items.append((kind, cap))
                break
    assert len(items) == 64
    with open(os.path.join(OUT, "prompts.txt"), "w") as f:
        for kind, cap in items:
            f.write("%s\t%s\n" % (kind, cap))
    # img2img and inpaint sources
    Image.fromarray(shapes.render(one_shape("circle", "red", "large", "center", "yellow", rng))).save(
        os.path.join(OUT, "red_circle.png"))
    Image.fromarray(shapes.render(one_shape("circle", "red", "small", "center", "white", rng))).save(
        os.path.join(OUT, "inpaint.png"))
    mask = np.zeros((64, 64), np.uint8)
    mask[18:46, 18:46] = 255
    Image.fromarray(mask).save(os.path.join(OUT, "inpaint_mask.png"))
    print("wrote", OUT)


if __name__ == "__main__":
    main()

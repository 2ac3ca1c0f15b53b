"""The procedural "shapes" dataset: 64 x 64 RGB pictures of one or two simple shapes in named colours on a
named background colour, with captions made from the same parameters. Everything is generated on the fly
from a seed, so a (seed, index) pair always gives the same picture and caption.

  shapes       circle, square, triangle, star, ring, cross                        (SHAPES)
  colours      red, orange, yellow, green, blue, purple, white, black             (COLOURS; shapes and backgrounds)
  sizes        small (radius 7..9 px), large (radius 14..17 px)                   (one-shape scenes)
  positions    left, right, top, bottom, center (+-3 px jitter)                    (one-shape scenes)
  two shapes   side by side (left / right) or stacked (top / bottom), radius 9..11; the caption names the
               left (or top) one first
  background   a colour different from every shape's colour

Captions (one-shape scenes; the size, the position and the background are each left out with probability
0.2, so short prompts work too):
  "a small red circle at the top on a blue background", "a large green star on the left", "a white ring"
Two-shape scenes:
  "a yellow star and a green square", "... on a blue background",
  "a yellow star on the left and a green square on the right on a blue background"

Held out from training (HELDOUT; they never occur in a training picture, in any role, so prompts naming them
test whether the text model composes attributes it has only seen apart):
  colour + shape:        red star, blue triangle, green ring, yellow square, purple circle, white cross
  shape + position:      triangle at the bottom, ring on the left (one-shape scenes; in two-shape scenes the
                         same positions are excluded for those shapes)
  colour on background:  orange shape on a blue background, white shape on a black background

Preview: tools/.venv/bin/python tools/train/shapes.py --grid out.png [--seed 0] [--n 64]
"""
import math

import numpy as np

SIZE = 64
SHAPES = ["circle", "square", "triangle", "star", "ring", "cross"]
COLOURS = {  # name -> RGB
    "red": (220, 35, 35),
    "orange": (245, 140, 25),
    "yellow": (245, 220, 40),
    "green": (40, 165, 60),
    "blue": (35, 80, 215),
    "purple": (135, 50, 175),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOUR_NAMES = list(COLOURS)
SIZES = {"small": (7.0, 9.0), "large": (14.0, 17.0)}
POSITIONS = ["left", "right", "top", "bottom", "center"]
POS_PHRASE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
              "center": "in the center"}
PAIR_RADIUS = (9.0, 11.0)
P_TWO = 0.3  # share of two-shape scenes
P_DROP = 0.2  # each optional caption part (size, position, background) is left out with this probability

HELDOUT = {
    "colour_shape": [("red", "star"), ("blue", "triangle"), ("green", "ring"), ("yellow", "square"),
                     ("purple", "circle"), ("white", "cross")],
    "shape_position": [("triangle", "bottom"), ("ring", "left")],
    "colour_background": [("orange", "blue"), ("white", "black")],
}
_HO_CS = set(HELDOUT["colour_shape"])
_HO_SP = set(HELDOUT["shape_position"])
_HO_CB = set(HELDOUT["colour_background"])

# DiT classes: every shape x colour, index = shape_index * len(COLOURS) + colour_index
CLASSES = ["%s %s" % (c, s) for s in SHAPES for c in COLOUR_NAMES]


def class_index(shape, colour):
    return SHAPES.index(shape) * len(COLOUR_NAMES) + COLOUR_NAMES.index(colour)


# ------------------------------------------------------------------------------------------- geometry

def _polygon(n_points, r_out, r_in, rot):
    """Vertices of a star-shaped polygon around the origin (alternating outer / inner radii when r_in)."""
    if r_in is None:
        a = rot + 2 * math.pi * np.arange(n_points) / n_points
        return np.stack([r_out * np.cos(a), r_out * np.sin(a)], 1)
    a = rot + math.pi * np.arange(2 * n_points) / n_points
    rr = np.where(np.arange(2 * n_points) % 2 == 0, r_out, r_in)
    return np.stack([rr * np.cos(a), rr * np.sin(a)], 1)


def _inside_star_polygon(dx, dy, verts):
    """Inside test for a polygon that is star-shaped around the origin (vertices in angular order)."""
    ang = np.arctan2(dy, dx)
    va = np.arctan2(verts[:, 1], verts[:, 0])
    order = np.argsort(va)
    verts, va = verts[order], va[order]
    # the segment whose angular range holds each pixel's angle
    idx = np.searchsorted(va, ang, side="right") - 1  # -1 .. n-1; -1 wraps to the last segment
    n = len(verts)
    i0 = idx % n
    i1 = (idx + 1) % n
    p0, p1 = verts[i0], verts[i1]
    e = p1 - p0
    # ray t * (cos, sin) meets the line p0 + s e: t = cross(p0, e) / cross(d, e)
    c, s = np.cos(ang), np.sin(ang)
    denom = c * e[..., 1] - s * e[..., 0]
    t = (p0[..., 0] * e[..., 1] - p0[..., 1] * e[..., 0]) / np.where(np.abs(denom) < 1e-9, 1e-9, denom)
    return np.hypot(dx, dy) <= t


def shape_mask(shape, r, dx, dy):
    """Boolean mask of `shape` (radius r) at offsets (dx, dy) from its centre (y down)."""
    d = np.hypot(dx, dy)
    if shape == "circle":
        return d <= r
    if shape == "ring":
        return (d <= r) & (d >= 0.55 * r)
    if shape == "square":
        h = 0.82 * r
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if shape == "cross":
        w = 0.32 * r
        return ((np.abs(dx) <= w) & (np.abs(dy) <= r)) | ((np.abs(dy) <= w) & (np.abs(dx) <= r))
    if shape == "triangle":  # pointing up; centroid at the centre
        return _triangle(dx, dy, 1.1 * r)
    if shape == "star":  # five points, one up
        return _inside_star_polygon(dx, dy, _polygon(5, 1.1 * r, 0.45 * r, -math.pi / 2))
    raise ValueError(shape)


def _triangle(dx, dy, R):
    """Equilateral triangle, circumradius R, apex up (image y points down), centroid at the origin."""
    # half-planes: bottom edge y <= R/2; the two slanted edges
    k = math.sqrt(3.0)
    return (dy <= R / 2) & (k * dx - dy <= R) & (-k * dx - dy <= R)


SS = 4  # supersampling per axis (anti-aliased edges)


def coverage(shape, cx, cy, r):
    """(y0, x0, cov): the shape's anti-aliased coverage on the pixel grid, in a patch at (y0, x0)."""
    x0, x1 = max(0, int(math.floor(cx - 1.2 * r)) - 1), min(SIZE, int(math.ceil(cx + 1.2 * r)) + 2)
    y0, y1 = max(0, int(math.floor(cy - 1.2 * r)) - 1), min(SIZE, int(math.ceil(cy + 1.2 * r)) + 2)
    sub = (np.arange(SS) + 0.5) / SS
    xs = (np.arange(x0, x1)[:, None] + sub[None]).reshape(-1)
    ys = (np.arange(y0, y1)[:, None] + sub[None]).reshape(-1)
    m = shape_mask(shape, r, xs[None, :] - cx, ys[:, None] - cy).astype(np.float32)
    cov = m.reshape(y1 - y0, SS, x1 - x0, SS).mean(axis=(1, 3))
    return y0, x0, cov


# ------------------------------------------------------------------------------------------- scenes

def _jitter_colour(rng, name):
    return np.clip(np.array(COLOURS[name], np.float32) + rng.uniform(-10, 10, 3), 0, 255)


def _centre(pos, r, rng):
    m = r + 3.0  # margin from the edge
    j = lambda: rng.uniform(-3, 3)  # noqa: E731
    c = SIZE / 2
    if pos == "center":
        return c + j(), c + j()
    if pos == "left":
        return m + abs(j()), c + j()
    if pos == "right":
        return SIZE - m - abs(j()), c + j()
    if pos == "top":
        return c + j(), m + abs(j())
    if pos == "bottom":
        return c + j(), SIZE - m - abs(j())
    raise ValueError(pos)


def allowed(objs, bg):
    """Whether a scene (list of (colour, shape, position)) avoids every held-out combination."""
    for colour, shape, pos in objs:
        if (colour, shape) in _HO_CS or (shape, pos) in _HO_SP or (colour, bg) in _HO_CB:
            return False
    return True


def sample_params(rng, heldout_ok=False, n_shapes=None):
    """A scene's parameters: dict(objs=[dict(shape, colour, size, pos, r, cx, cy)], bg=name)."""
    two = (rng.random() < P_TWO) if n_shapes is None else n_shapes == 2
    while True:
        if two:
            axis = rng.integers(2)
            poss = ("left", "right") if axis == 0 else ("top", "bottom")
            objs = []
            for pos in poss:
                objs.append(dict(shape=SHAPES[rng.integers(len(SHAPES))],
                                 colour=COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))], size=None, pos=pos,
                                 r=rng.uniform(*PAIR_RADIUS)))
        else:
            size = ["small", "large"][rng.integers(2)]
            objs = [dict(shape=SHAPES[rng.integers(len(SHAPES))], colour=COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))],
                         size=size, pos=POSITIONS[rng.integers(len(POSITIONS))], r=rng.uniform(*SIZES[size]))]
        used = {o["colour"] for o in objs}
        bgs = [c for c in COLOUR_NAMES if c not in used]
        bg = bgs[rng.integers(len(bgs))]
        if heldout_ok or allowed([(o["colour"], o["shape"], o["pos"]) for o in objs], bg):
            break
    for o in objs:
        if two:  # side by side: centred in its half, with jitter
            c, q = SIZE / 2, SIZE / 4
            a = {"left": (q, c), "right": (SIZE - q, c), "top": (c, q), "bottom": (c, SIZE - q)}[o["pos"]]
            o["cx"], o["cy"] = a[0] + rng.uniform(-2, 2), a[1] + rng.uniform(-2, 2)
        else:
            o["cx"], o["cy"] = _centre(o["pos"], o["r"], rng)
    return dict(objs=objs, bg=bg, bg_rgb=_jitter_colour(rng, bg), rgbs=[_jitter_colour(rng, o["colour"]) for o in objs])


def render(p):
    """uint8 (64, 64, 3)."""
    img = np.empty((SIZE, SIZE, 3), np.float32)
    img[:] = p["bg_rgb"]
    for o, rgb in zip(p["objs"], p["rgbs"]):
        y0, x0, cov = coverage(o["shape"], o["cx"], o["cy"], o["r"])
        h, w = cov.shape
        patch = img[y0:y0 + h, x0:x0 + w]
        patch += cov[..., None] * (rgb - patch)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def caption(p, rng=None, full=False):
    """The caption; with an rng, optional parts are left out at random (unless full)."""
    drop = (lambda: False) if (full or rng is None) else (lambda: rng.random() < P_DROP)  # noqa: E731
    objs, bg = p["objs"], p["bg"]
    if len(objs) == 1:
        o = objs[0]
        words = []
        if not drop():
            words.append(o["size"])
        words += [o["colour"], o["shape"]]
        words.insert(0, article(words[0]))
        if not drop():
            words.append(POS_PHRASE[o["pos"]])
        if not drop():
            words += ["on", article(bg), bg, "background"]
        return " ".join(words)
    a, b = objs
    style = 2 if full else (0 if rng is None else rng.integers(3))
    if style == 2:  # explicit positions
        text = "%s %s %s %s and %s %s %s %s" % (article(a["colour"]), a["colour"], a["shape"], POS_PHRASE[a["pos"]],
                                                article(b["colour"]), b["colour"], b["shape"], POS_PHRASE[b["pos"]])
    else:
        text = "%s %s %s and %s %s %s" % (article(a["colour"]), a["colour"], a["shape"], article(b["colour"]),
                                          b["colour"], b["shape"])
    if style >= 1 and not drop():
        text += " on %s %s background" % (article(bg), bg)
    return text


def scene(seed, index, heldout_ok=False):
    """(uint8 image, caption, params) of sample `index` of the stream `seed`."""
    rng = np.random.default_rng([seed, index])
    p = sample_params(rng, heldout_ok)
    img = render(p)
    return img, caption(p, rng), p


def batch(rng, n, heldout_ok=False, n_shapes=None):
    """n scenes from rng: (float32 N x 3 x 64 x 64 in [-1, 1], captions, params)."""
    imgs, caps, ps = [], [], []
    for _ in range(n):
        p = sample_params(rng, heldout_ok, n_shapes)
        imgs.append(render(p))
        caps.append(caption(p, rng))
        ps.append(p)
    x = np.stack(imgs).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    return x, caps, ps


def class_batch(rng, n):
    """n one-shape scenes with their DiT class (every shape x colour, held-out pairs included: a class-
    conditional model cannot compose, so holding a class out would only leave its embedding untrained).
    Returns (float32 N x 3 x 64 x 64, int64 labels)."""
    imgs, labels = [], []
    for _ in range(n):
        p = sample_params(rng, heldout_ok=True, n_shapes=1)
        imgs.append(render(p))
        labels.append(class_index(p["objs"][0]["shape"], p["objs"][0]["colour"]))
    x = np.stack(imgs).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    return x, np.array(labels, np.int64)


# ------------------------------------------------------------------------------------------- analysis

def nearest_colour(rgb):
    names = COLOUR_NAMES
    d = [np.sum((np.asarray(rgb, np.float32) - np.array(COLOURS[n], np.float32)) ** 2) for n in names]
    return names[int(np.argmin(d))]


def analyse(img):
    """Reads a one-shape picture back: dict(bg=, colour=, pos=, fg_frac=). The background is the colour of
    the border pixels, the shape the pixels far from it; the position is the shape's centroid (which of
    within 6 px of the middle: center; else the side it is furthest towards)."""
    a = img.astype(np.float32)
    border = np.concatenate([a[:2].reshape(-1, 3), a[-2:].reshape(-1, 3), a[:, :2].reshape(-1, 3),
                             a[:, -2:].reshape(-1, 3)])
    bg_rgb = np.median(border, 0)
    dist = np.sqrt(((a - bg_rgb) ** 2).sum(-1))
    fg = dist > 60
    res = dict(bg=nearest_colour(bg_rgb), fg_frac=float(fg.mean()))
    if fg.sum() < 8:
        res.update(colour=None, pos=None)
        return res
    res["colour"] = nearest_colour(np.median(a[fg], 0))
    ys, xs = np.nonzero(fg)
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    dx, dy = cx - SIZE / 2, cy - SIZE / 2
    if max(abs(dx), abs(dy)) < 6:
        res["pos"] = "center"
    elif abs(dx) > abs(dy):
        res["pos"] = "left" if dx < 0 else "right"
    else:
        res["pos"] = "top" if dy < 0 else "bottom"
    res["centroid"] = (float(cx), float(cy))
    return res


def save_grid(imgs, path, cols, scale=1, pad=2):
    from PIL import Image

    n = len(imgs)
    rows = (n + cols - 1) // cols
    h, w = imgs[0].shape[:2]
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, im in enumerate(imgs):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = im
    im = Image.fromarray(canvas)
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    im.save(path)


if __name__ == "__main__":
    import argparse
    import time

    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=64)
    a = ap.parse_args()
    t = time.time()
    out = [scene(a.seed, i) for i in range(a.n)]
    print("%.2f ms / scene" % (1000 * (time.time() - t) / a.n))
    for img, cap, p in out[:16]:
        print(cap, "|", analyse(img) if len(p["objs"]) == 1 else "")
    if a.grid:
        save_grid([o[0] for o in out], a.grid, 8, scale=2)

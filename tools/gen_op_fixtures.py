#!/usr/bin/env python3
"""Writes <outdir>/ops.safetensors: inputs, parameters and torch reference
outputs for the op set declared in core/ops.h.

    tools/.venv/bin/python tools/gen_op_fixtures.py tests/fixtures

Conventions (read by tests/testutil.h):
  * tensor names are "<op>.<case>.<role>", cases numbered 0, 1, 2, ... per op;
  * per-case parameters live in __metadata__["<op>.<case>"] as
    "key=value key=value" (values parse with strtod);
  * __metadata__["generator"] = "tools/gen_op_fixtures.py torch <version>".

Every case seeds torch with a stable hash of "<op>.<case>". Inputs are drawn
as float32; references are computed in float64 from those exact float32 values
(and from the float32-rounded values of float parameters, since the C API
takes float) and stored as float32. F16 / BF16 weights are rounded first and
the reference uses the rounded weights.

The one exception is timestep_embedding: diffusers' get_timestep_embedding
computes in float32 internally (arange(dtype=float32), timesteps.float()), so
its float32 output is stored as is.

The file is written by a small writer here rather than safetensors.torch, so
the bytes are deterministic (sorted header, no hash-map ordering); it is read
back with safetensors afterwards as a check.
"""

import math
import os
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_safetensors  # noqa: E402

FILE_NAME = "ops.safetensors"
MAX_BYTES = 2_500_000

tensors = {}  # name -> torch tensor (F32 / F16 / BF16)
metadata = {}  # "<op>.<case>" -> "k=v ..."
summary = []  # (op, case, "role shape, ...")
counters = {}


def f32(v):
    """The float32 value the C side sees for the float parameter v."""
    return float(np.float32(v))


def fmt(v):
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return "%.9g" % v


class Case:
    def __init__(self, op):
        self.op = op
        self.idx = counters.get(op, 0)
        counters[op] = self.idx + 1
        self.prefix = "%s.%d" % (op, self.idx)
        torch.manual_seed(zlib.crc32(self.prefix.encode()))
        self.roles = []

    # random inputs, float32
    def randn(self, *shape, mean=0.0, std=1.0):
        x = torch.randn(*shape, dtype=torch.float32)
        if std != 1.0 or mean != 0.0:
            x = x * std + mean
        return x

    def uniform(self, lo, hi, *shape):
        return torch.rand(*shape, dtype=torch.float32) * (hi - lo) + lo

    def put(self, role, t):
        t = t.detach().contiguous()
        if t.dtype == torch.float64:
            t = t.to(torch.float32)
        assert t.dtype in (torch.float32, torch.float16, torch.bfloat16), t.dtype
        name = "%s.%s" % (self.prefix, role)
        assert name not in tensors, name
        tensors[name] = t.clone()
        dt = {torch.float32: "", torch.float16: ":F16", torch.bfloat16: ":BF16"}[t.dtype]
        self.roles.append("%s%s%s" % (role, tuple(t.shape), dt))
        return t

    def params(self, **kv):
        metadata[self.prefix] = " ".join("%s=%s" % (k, fmt(v)) for k, v in kv.items())

    def done(self):
        summary.append((self.op, self.idx, " ".join(self.roles), metadata.get(self.prefix, "")))


def d(t):
    """Exact float64 copy of a float32/f16/bf16 tensor."""
    return t.to(torch.float64)


# ---------------------------------------------------------------- conv2d ---

def gen_conv2d():
    # (N, Cin, H, W, Cout, kh, kw, stride, pad_h, pad_w, bias)
    cases = [
        (1, 3, 8, 8, 4, 3, 3, 1, 1, 1, True),
        (2, 5, 9, 11, 7, 3, 3, 2, 1, 1, True),
        (2, 6, 5, 5, 10, 1, 1, 1, 0, 0, False),
        (1, 4, 7, 9, 6, 1, 3, 1, 0, 1, True),
        (1, 16, 1, 1, 8, 3, 3, 1, 1, 1, True),
        (1, 32, 17, 17, 24, 3, 3, 1, 1, 1, True),
        (2, 3, 10, 10, 5, 4, 4, 2, 0, 0, True),
        (1, 8, 6, 6, 8, 3, 3, 1, 0, 0, False),
        # large enough for the CPU backend's Winograd path (>= 64 tiles of 4 x 4): ragged edges, no padding,
        # and a deep channel sum
        (2, 16, 30, 33, 20, 3, 3, 1, 1, 1, True),
        (1, 16, 38, 37, 12, 3, 3, 1, 0, 0, False),
        (1, 64, 32, 32, 8, 3, 3, 1, 1, 1, True),
    ]
    for n, cin, h, w_, cout, kh, kw, s, ph, pw, bias in cases:
        c = Case("conv2d")
        x = c.put("x", c.randn(n, cin, h, w_))
        fan = cin * kh * kw
        w = c.put("w", c.randn(cout, cin, kh, kw) / math.sqrt(fan))
        b = c.put("b", c.randn(cout) * 0.5) if bias else None
        out = F.conv2d(d(x), d(w), d(b) if b is not None else None, stride=(s, s), padding=(ph, pw))
        c.put("out", out)
        c.params(stride_h=s, stride_w=s, pad_h=ph, pad_w=pw)
        c.done()
    # far-side padding only, as diffusers' Downsample2D (padding=0) does: F.pad (0, 1, 0, 1)
    for n, cin, h, w_, cout in [(1, 4, 8, 8, 6), (2, 3, 7, 9, 5), (1, 2, 2, 2, 3)]:
        c = Case("conv2d")
        x = c.put("x", c.randn(n, cin, h, w_))
        w = c.put("w", c.randn(cout, cin, 3, 3) / math.sqrt(cin * 9))
        b = c.put("b", c.randn(cout) * 0.5)
        c.put("out", F.conv2d(F.pad(d(x), (0, 1, 0, 1)), d(w), d(b), stride=2))
        c.params(stride_h=2, stride_w=2, pad_h=0, pad_w=0, pad_bottom=1, pad_right=1)
        c.done()


def gen_conv2d_lowp(op, dtype):
    c = Case(op)
    x = c.put("x", c.randn(1, 8, 9, 9))
    w = c.put("w", (c.randn(12, 8, 3, 3) / math.sqrt(8 * 9)).to(dtype))
    b = c.put("b", c.randn(12) * 0.5)
    out = F.conv2d(d(x), d(w), d(b), stride=1, padding=1)
    c.put("out", out)
    c.params(stride_h=1, stride_w=1, pad_h=1, pad_w=1)
    c.done()


# ---------------------------------------------------------------- linear ---

def gen_linear():
    cases = [((2, 5, 7), (9, 7), True), ((3, 64), (33, 64), False),
             ((1, 77, 40), (40, 40), True), ((2, 1, 1, 13), (3, 13), True)]
    for xs, ws, bias in cases:
        c = Case("linear")
        x = c.put("x", c.randn(*xs))
        w = c.put("w", c.randn(*ws) / math.sqrt(ws[1]))
        b = c.put("b", c.randn(ws[0]) * 0.5) if bias else None
        c.put("out", F.linear(d(x), d(w), d(b) if b is not None else None))
        c.done()

    c = Case("linear_f16")
    x = c.put("x", c.randn(2, 11, 24))
    w = c.put("w", (c.randn(20, 24) / math.sqrt(24)).half())
    b = c.put("b", c.randn(20) * 0.5)
    c.put("out", F.linear(d(x), d(w), d(b)))
    c.done()


# ---------------------------------------------------------------- matmul ---

def gen_matmul():
    cases = [((3, 5, 7), (3, 7, 4), 0, 0), ((2, 6, 8), (2, 5, 8), 0, 1),
             ((2, 8, 6), (2, 8, 5), 1, 0), ((2, 8, 6), (2, 5, 8), 1, 1),
             ((6, 8), (3, 8, 5), 0, 0), ((3, 6, 8), (8, 5), 0, 0)]
    for ash, bsh, ta, tb in cases:
        c = Case("matmul")
        a = c.put("a", c.randn(*ash))
        b = c.put("b", c.randn(*bsh))
        A, B = d(a), d(b)
        if ta:
            A = A.transpose(-1, -2)
        if tb:
            B = B.transpose(-1, -2)
        out = torch.matmul(A, B)
        if out.dim() == 2:
            out = out.unsqueeze(0)
        assert out.dim() == 3
        c.put("out", out)
        c.params(trans_a=ta, trans_b=tb)
        c.done()


# ----------------------------------------------------------------- norms ---

def gen_group_norm():
    # (shape, groups, eps, silu, mean, std)
    cases = [((2, 32, 5, 5), 8, 1e-5, 0, 0.0, 1.0), ((1, 64, 3, 7), 32, 1e-6, 1, 0.0, 1.0),
             ((2, 6, 1, 1), 3, 1e-5, 0, 0.0, 1.0), ((2, 16, 10), 4, 1e-5, 0, 0.0, 1.0),
             ((1, 320, 4, 4), 32, 1e-5, 1, 3.0, 5.0)]
    for shape, g, eps, silu, mean, std in cases:
        c = Case("group_norm")
        x = c.put("x", c.randn(*shape, mean=mean, std=std))
        gamma = c.put("gamma", 1.0 + 0.2 * c.randn(shape[1]))
        beta = c.put("beta", 0.2 * c.randn(shape[1]))
        out = F.group_norm(d(x), g, d(gamma), d(beta), eps=f32(eps))
        if silu:
            out = F.silu(out)
        c.put("out", out)
        c.params(groups=g, eps=eps, silu=silu)
        c.done()


def gen_layer_norm():
    cases = [((2, 7, 40), 1e-5, True, 0.0, 1.0), ((3, 33), 1e-6, False, 0.0, 1.0),
             ((1, 5, 1152), 1e-6, True, 10.0, 3.0)]
    for shape, eps, affine, mean, std in cases:
        c = Case("layer_norm")
        x = c.put("x", c.randn(*shape, mean=mean, std=std))
        gamma = beta = None
        if affine:
            gamma = c.put("gamma", 1.0 + 0.2 * c.randn(shape[-1]))
            beta = c.put("beta", 0.2 * c.randn(shape[-1]))
        out = F.layer_norm(d(x), (shape[-1],), d(gamma) if affine else None,
                           d(beta) if affine else None, eps=f32(eps))
        c.put("out", out)
        c.params(eps=eps)
        c.done()


# ----------------------------------------------------------- activations ---

def act_input(c):
    x = c.uniform(-8.0, 8.0, 2, 3, 17)
    flat = x.view(-1)
    for i, v in zip((0, 7, 20, 33, 51, 70, 101), (0.0, 20.0, -20.0, 50.0, -50.0, 0.0, -0.0)):
        flat[i] = v
    return x


def gen_unary():
    fns = {
        "silu": F.silu,
        "gelu": lambda x: F.gelu(x),
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    }
    for op, fn in fns.items():
        c = Case(op)
        x = c.put("x", act_input(c))
        c.put("out", fn(d(x)))
        c.done()
        # a dense sweep of the range where the activations bend
        c = Case(op)
        x = c.put("x", torch.linspace(-12, 12, 4801, dtype=torch.float32))
        c.put("out", fn(d(x)))
        c.done()


def gen_geglu():
    c = Case("geglu")
    x = c.put("x", c.randn(2, 9, 48) * 2.0)
    h, gate = d(x).chunk(2, dim=-1)
    c.put("out", h * F.gelu(gate))
    c.done()


# --------------------------------------------------------------- binary ---

def gen_binary():
    shapes = [((2, 3, 4, 5), (2, 3, 4, 5)), ((2, 3, 4, 5), (3, 1, 1)),
              ((2, 1, 4, 1), (1, 3, 1, 5)), ((4, 5), (5,)), ((1,), (2, 3))]
    fns = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}
    for op, fn in fns.items():
        for ash, bsh in shapes:
            c = Case(op)
            a = c.put("a", c.randn(*ash))
            if op == "div":
                mag = c.uniform(0.5, 2.0, *bsh)
                sign = torch.where(torch.rand(*bsh) < 0.5, -1.0, 1.0)
                b = c.put("b", mag * sign)
            else:
                b = c.put("b", c.randn(*bsh))
            c.put("out", fn(d(a), d(b)))
            c.done()


def gen_scale():
    c = Case("scale")
    x = c.put("x", c.randn(3, 7, 5))
    s, bias = 0.18215, -0.5
    c.put("out", d(x) * f32(s) + f32(bias))
    c.params(s=s, bias=bias)
    c.done()


def gen_softmax():
    for shape, scale, mag in [((3, 4, 37), 1.0, None), ((2, 1000), 0.125, 50.0), ((5, 1), 1.0, None)]:
        c = Case("softmax")
        if mag is None:
            x = c.randn(*shape) * 2.0
        else:
            x = c.uniform(-mag, mag, *shape)
            x.view(-1)[3] = mag
            x.view(-1)[1500] = -mag
            x.view(-1)[10] = mag
        x = c.put("x", x)
        c.put("out", F.softmax(d(x) * f32(scale), dim=-1))
        c.params(scale=scale)
        c.done()


# ------------------------------------------------------------- attention ---

def gen_attention():
    # (B, Nq, Nk, H, D, Dv, scale, qk_mul, causal)
    cases = [(2, 70, 70, 2, 40, 40, 0.0, 1.0, 0), (1, 67, 77, 8, 8, 8, 0.0, 1.0, 0),
             (1, 33, 33, 3, 16, 24, 0.0, 1.0, 0), (1, 300, 300, 1, 64, 64, 0.3, 1.0, 0),
             (1, 1, 9, 5, 8, 8, 0.0, 1.0, 0), (2, 129, 129, 4, 20, 20, 0.0, 4.0, 0),
             # causal (CLIP's text encoder): self, and Nq < Nk (top-left aligned)
             (2, 77, 77, 2, 16, 16, 0.0, 1.0, 1), (1, 150, 150, 3, 8, 8, 0.0, 2.0, 1),
             (1, 5, 9, 2, 8, 8, 0.0, 1.0, 1)]
    for B, nq, nk, H, D, Dv, scale, qk_mul, causal in cases:
        c = Case("attention_causal" if causal else "attention")
        q = c.randn(B, nq, H * D)
        k = c.randn(B, nk, H * D)
        v = c.randn(B, nk, H * Dv)
        if qk_mul != 1.0:
            q, k = q * qk_mul, k * qk_mul
        q, k, v = c.put("q", q), c.put("k", k), c.put("v", v)
        Q = d(q).reshape(B, nq, H, D).transpose(1, 2)
        K = d(k).reshape(B, nk, H, D).transpose(1, 2)
        V = d(v).reshape(B, nk, H, Dv).transpose(1, 2)
        kw = {"scale": f32(scale)} if scale > 0 else {}
        o = F.scaled_dot_product_attention(Q, K, V, is_causal=bool(causal), **kw)
        # cross-check against the explicit formula
        sc = f32(scale) if scale > 0 else 1.0 / math.sqrt(D)
        s = Q @ K.transpose(-1, -2) * sc
        if causal:
            s = s.masked_fill(torch.ones(nq, nk, dtype=torch.bool).triu(1), float("-inf"))
        o2 = torch.softmax(s, dim=-1) @ V
        assert torch.allclose(o, o2, rtol=1e-12, atol=1e-12)
        c.put("out", o.transpose(1, 2).reshape(B, nq, H * Dv))
        c.params(heads=H, scale=scale)
        c.done()


# ---------------------------------------------------------------- layout ---

def gen_upsample():
    for shape in [(2, 3, 5, 7), (1, 4, 1, 1)]:
        c = Case("upsample")
        x = c.put("x", c.randn(*shape))
        c.put("out", F.interpolate(d(x), scale_factor=2, mode="nearest"))
        c.done()


def gen_concat():
    cases = [(1, [(2, 3, 4, 5), (2, 2, 4, 5)]), (-1, [(2, 3), (2, 4), (2, 1)]),
             (0, [(1, 3, 2), (2, 3, 2)]), (2, [(2, 3, 4, 5), (2, 3, 1, 5)])]
    for dim, shapes in cases:
        c = Case("concat")
        xs = [c.put("x%d" % i, c.randn(*s)) for i, s in enumerate(shapes)]
        c.put("out", torch.cat([d(x) for x in xs], dim=dim))
        c.params(dim=dim, n=len(xs))
        c.done()


def gen_slice():
    for shape, dim, start, end in [((2, 8, 4, 5), 1, 2, 7), ((3, 10), -1, 0, 4),
                                   ((4, 3, 2), 0, 1, 3), ((2, 3, 9, 1), 2, 8, 9)]:
        c = Case("slice")
        x = c.put("x", c.randn(*shape))
        c.put("out", d(x).narrow(dim, start, end - start))
        c.params(dim=dim, start=start, end=end)
        c.done()


def gen_permute():
    for shape, perm in [((2, 3, 4, 5), (0, 2, 3, 1)), ((2, 3, 4), (2, 0, 1)),
                        ((4, 5), (1, 0)), ((2, 3, 4, 5), (0, 2, 1, 3))]:
        c = Case("permute")
        x = c.put("x", c.randn(*shape))
        c.put("out", d(x).permute(*perm))
        c.params(**{"p%d" % i: p for i, p in enumerate(perm)})
        c.done()


def gen_reduce():
    shapes = [((2, 3, 4, 5), -1), ((2, 3, 4, 5), 1), ((7,), 0)]
    for shape, dim in shapes:
        c = Case("mean")
        x = c.put("x", c.randn(*shape, mean=1.0))
        c.put("out", d(x).mean(dim=dim, keepdim=True))
        c.params(dim=dim)
        c.done()
    for shape, dim in shapes:
        for unbiased in (0, 1):
            c = Case("var")
            x = c.put("x", c.randn(*shape, mean=1.0, std=2.0))
            c.put("out", torch.var(d(x), dim=dim, unbiased=bool(unbiased), keepdim=True))
            c.params(dim=dim, unbiased=unbiased)
            c.done()


# --------------------------------------------------- timestep embedding ---

def dit_timestep_embedding(t, dim, max_period=10000):
    """DiT's TimestepEmbedder.timestep_embedding (facebookresearch/DiT models.py)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def timestep_embedding_f64(t, dim, flip, shift, scale, max_period):
    """The same formula in float64: the exact embedding (difusa computes it in double)."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float64) / (half - shift)
    emb = scale * t.double()[:, None] * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


tstep_notes = []


def gen_timestep_embedding():
    from diffusers.models.embeddings import get_timestep_embedding

    cases = [([0, 1, 500.5, 999], 320, 1, 0, 1, 10000), ([3, 250], 256, 1, 0, 1, 10000),
             ([10, 20, 30], 7, 0, 1, 1, 10000), ([0.5], 8, 0, 1, 1000, 10000)]
    for ts, dim, flip, shift, scale, max_period in cases:
        c = Case("timestep_embedding")
        t = c.put("t", torch.tensor(ts, dtype=torch.float32))
        # Passing float64 timesteps would not help: the function calls
        # timesteps.float() and builds its frequencies in float32.
        out = get_timestep_embedding(t, dim, flip_sin_to_cos=bool(flip), downscale_freq_shift=shift,
                                     scale=scale, max_period=max_period)
        assert out.dtype == torch.float32 and out.shape == (len(ts), dim)
        out64 = get_timestep_embedding(t.double(), dim, flip_sin_to_cos=bool(flip),
                                       downscale_freq_shift=shift, scale=scale, max_period=max_period)
        assert out64.dtype == torch.float32, "diffusers no longer forces float32: revisit"
        ref64 = timestep_embedding_f64(t, dim, flip, shift, f32(scale), max_period)
        err = (out.double() - ref64).abs().max().item()
        tstep_notes.append("%s: max |diffusers f32 - float64 formula| = %.3g" % (c.prefix, err))
        if c.idx == 1:
            dit = dit_timestep_embedding(t, dim)
            assert torch.equal(dit, out), "DiT formula differs from diffusers"
            tstep_notes.append("%s: DiT TimestepEmbedder formula is bit-identical" % c.prefix)
        c.put("out", out)
        c.put("out_f64", ref64.float())
        c.params(dim=dim, flip=flip, shift=shift, scale=scale, max_period=max_period)
        c.done()


# ------------------------------------------------------ modulate / cast ---

def gen_modulate():
    c = Case("modulate")
    x = c.put("x", c.randn(2, 10, 16))
    shift = c.put("shift", c.randn(2, 16) * 0.5)
    scale = c.put("scale", c.randn(2, 16) * 0.5)
    c.put("out", d(x) * (1 + d(scale).unsqueeze(1)) + d(shift).unsqueeze(1))
    c.done()


def gen_cast():
    c = Case("cast")
    special = [65504.0, 65520.0, 65519.0, -65504.0, 1e-8, 6e-8, 2.0 ** -24, 2.0 ** -25, 3e-8,
               1e-5, 6.1e-5, 2.0 ** -14, -0.0, 0.0, 0.1, -0.1, 3.14159, 1e6, -1e6, 1.0, -2.5,
               1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11,  # f16 ties: to even (down, up)
               1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,  # bf16 ties: to even (down, up)
               1.0 + 2.0 ** -8 + 2.0 ** -20,  # just above a bf16 tie
               3.4028234663852886e38,  # FLT_MAX: bf16 rounds to inf
               3.38e38, 1e-40, -1e-40, 1e30, 1e-30]
    x = torch.cat([torch.tensor(special, dtype=torch.float32), c.randn(32) * 10.0])
    x = c.put("x", x)
    c.put("out_f16", x.half())
    c.put("out_bf16", x.bfloat16())
    c.done()


# ---------------------------------------------------------------- writer ---

DTYPE_NAME = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def tensor_bytes(t):
    if t.dtype == torch.bfloat16:
        arr = t.view(torch.int16).numpy()
    else:
        arr = t.numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()



def verify(path):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        assert meta == metadata, "metadata mismatch"
        keys = set(f.keys())
        assert keys == set(tensors), "tensor set mismatch"
        for k in keys:
            got = f.get_tensor(k)
            want = tensors[k]
            assert got.dtype == want.dtype and got.shape == want.shape, k
            assert tensor_bytes(got.contiguous()) == tensor_bytes(want), k


def main():
    if len(sys.argv) != 2:
        print("usage: %s OUTDIR" % sys.argv[0], file=sys.stderr)
        return 2
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    gen_conv2d()
    gen_conv2d_lowp("conv2d_f16", torch.float16)
    gen_conv2d_lowp("conv2d_bf16", torch.bfloat16)
    gen_linear()
    gen_matmul()
    gen_group_norm()
    gen_layer_norm()
    gen_unary()
    gen_geglu()
    gen_binary()
    gen_scale()
    gen_softmax()
    gen_attention()
    gen_upsample()
    gen_concat()
    gen_slice()
    gen_permute()
    gen_reduce()
    gen_timestep_embedding()
    gen_modulate()
    gen_cast()

    for name, t in tensors.items():
        if t.dtype == torch.float32 and not name.startswith("cast."):
            assert torch.isfinite(t).all(), name
    metadata["generator"] = "tools/gen_op_fixtures.py torch %s" % torch.__version__

    path = os.path.join(outdir, FILE_NAME)
    write_safetensors(path, {k: (DTYPE_NAME[t.dtype], tuple(t.shape), tensor_bytes(t)) for k, t in tensors.items()},
                      metadata)
    verify(path)
    size = os.path.getsize(path)

    w_op = max(len(s[0]) for s in summary)
    print("%-*s  %4s  %s" % (w_op, "op", "case", "tensors (role shape[:dtype])  params"))
    for op, idx, roles, params in summary:
        print("%-*s  %4d  %s%s" % (w_op, op, idx, roles, ("   [" + params + "]") if params else ""))
    for n in tstep_notes:
        print("note:", n)
    print("%d tensors, %d cases; wrote %s: %d bytes (%.2f MB)" % (len(tensors), len(summary), path, size,
                                                                   size / 1e6))
    if size > MAX_BYTES:
        print("error: %s is over %d bytes" % (path, MAX_BYTES), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

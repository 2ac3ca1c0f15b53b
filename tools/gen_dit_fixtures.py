"""Tiny random-weight DiT models (class-conditional latent transformers, Peebles & Xie) in the two layouts
difusa reads, diffusers' outputs for them, and a short DiTPipeline run (tests/fixtures/dit).

  p2/                          a complete DiTPipeline folder (DiTPipeline.from_pretrained loads it):
    model_index.json           DiTPipeline: transformer, vae, scheduler
    transformer/               DiTTransformer2DModel (the class diffusers 0.32.2's DiTPipeline declares and
                               writes): patch 2, 2 layers, 2 heads of 16 (hidden 32), 16 x 16 x 4 latents,
                               1000 classes (DiTPipeline hard-codes the null class 1000), learn_sigma (out 8)
    vae/                       AutoencoderKL (8, 16): latent factor 2, 4 latent channels, scaling 0.18215
    scheduler/                 DDIMScheduler as scripts/convert_dit_to_diffusers.py saves it (linear betas
                               0.0001 .. 0.02, epsilon, clip_sample false)
  p4/transformer/              patch 4, 2 layers, 2 heads of 24 (hidden 48), 16 x 16 x 4 latents, 10 classes,
                               learn_sigma; its config.json is the legacy "Transformer2DModel" form the Hub's
                               facebook/DiT-XL-2-* folders have (diffusers remaps it to DiTTransformer2DModel)
  <m>.safetensors              the same weights in the ORIGINAL DiT layout (facebookresearch/DiT models.py
                               state dict: x_embedder, t_embedder, y_embedder, pos_embed, blocks.N, final_layer)
  <m>.expected.safetensors     inputs, diffusers' output and intermediates (F32)
  pipeline.expected.safetensors, pipeline.<i>.png   the DiTPipeline run on p2, every step recorded
  README.md                    written by this script

Weights are random with a realistic scale (ALL of them: adaLN-Zero's zero init would make every block the
identity and the output 0), rounded to f16 and stored F16; every reference is computed in float32 (one CPU
thread) from exactly those rounded weights. The per-block copies of the timestep / class embedders that
diffusers' layout has (transformer_blocks.N.norm1.emb.*) are identical, as in every converted checkpoint.

The original layout is written by the inverse of diffusers' scripts/convert_dit_to_diffusers.py and proven:
original_to_diffusers() below is that script's key mapping (for any depth), loaded with
load_state_dict(strict=True) into DiTTransformer2DModel; the result must equal the folder's tensors bit for
bit, and the loaded model must give the stored output bit for bit. diffusers 0.32.2 ships no single-file
loader for DiT.

Run: tools/.venv/bin/python tools/gen_dit_fixtures.py tests/fixtures
"""
import io
import json
import math
import os
import subprocess
import sys

if __name__ == "__main__" and os.environ.get("ATEN_CPU_CAPABILITY") != "avx2" and "--draws-worker" not in sys.argv:
    # the CPU capability is fixed when torch loads: run again under the AVX2 kernels (difusa's DF_RNG_CPU
    # reproduces torch's AVX2 normal_), as tools/gen_pipeline_fixtures.py does
    os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, ATEN_CPU_CAPABILITY="avx2"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_safetensors  # noqa: E402

DT = {torch.float32: "F32", torch.float16: "F16", torch.int32: "I32", torch.int64: "I64", torch.uint8: "U8"}

# ----------------------------------------------------------------------------------------- configs

DIT_COMMON = dict(in_channels=4, out_channels=8, num_layers=2, sample_size=16, activation_fn="gelu-approximate",
                  attention_bias=True, norm_type="ada_norm_zero", norm_elementwise_affine=False)
MODELS = {
    # name: config, class the folder's config.json names, seed, inputs (timesteps, class labels, seed)
    "p2": dict(cfg=dict(DIT_COMMON, num_attention_heads=2, attention_head_dim=16, patch_size=2,
                        num_embeds_ada_norm=1000),
               cls="DiTTransformer2DModel", seed=300, t=[999.0, 500.5, 1.0], y=[3, 999, 1000], xseed=310),
    "p4": dict(cfg=dict(DIT_COMMON, num_attention_heads=2, attention_head_dim=24, patch_size=4,
                        num_embeds_ada_norm=10),
               cls="Transformer2DModel", seed=301, t=[999.0, 500.5, 1.0], y=[0, 9, 10], xseed=311),
}
# DiT-XL/2-256 (tools/gen_full_checks.py): the Hub's facebook/DiT-XL-2-256 transformer config
XL2 = dict(DIT_COMMON, num_layers=28, num_attention_heads=16, attention_head_dim=72, patch_size=2, sample_size=32,
           num_embeds_ada_norm=1000)
# the VAE in the style of tools/gen_unet_vae_fixtures.py's "sd" case, narrower (8, 16) to keep the folder small
VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
           up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[8, 16], layers_per_block=1,
           latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.18215)
# as scripts/convert_dit_to_diffusers.py (upstream diffusers) builds the DiT pipelines' scheduler
SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon", clip_sample=False)
PIPE = dict(class_labels=[1, 7], guidance_scale=4.0, num_inference_steps=8, seed=0)
# extra output gains (before rounding): the decoder's image comes out of random layers at unit scale
GAIN = {"vae": {"decoder.conv_out": 0.6}}


# ----------------------------------------------------------------------------------------- helpers

def entry(t):
    t = t.detach().contiguous().cpu()
    a = t.numpy()
    return (DT[t.dtype], tuple(t.shape), a.astype(a.dtype.newbyteorder("<")).tobytes())


def emb_copy_keys(sd):
    return [k for k in sd if k.startswith("transformer_blocks.") and ".norm1.emb." in k]


def randomize_dit(m, seed):
    """Random weights of a realistic scale for every DiT parameter (adaLN modulations and the final layer
    included), with the per-block embedder copies tied to block 0's, rounded to f16."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("embedding_table.weight"):
                p.copy_(torch.randn_like(p))  # class embeddings: unit scale, like the timestep embedding
            elif p.dim() == 1:
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5))
        params = dict(m.named_parameters())
        for k in emb_copy_keys(params):
            src = "transformer_blocks.0." + k.split(".", 2)[2]
            if src != k:
                params[k].copy_(params[src])
        for p in m.parameters():
            p.copy_(p.half().float())
    return m.eval()


def randomize(m, seed, gains=None):
    """The UNet / VAE randomization of tools/gen_unet_vae_fixtures.py, then output gains, rounded to f16."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 1 and ("norm" in name and name.endswith("weight")):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5))
        for prefix, g in (gains or {}).items():
            for name, p in m.named_parameters():
                if name.startswith(prefix + "."):
                    p.mul_(g)
        for p in m.parameters():
            p.copy_(p.half().float())
    return m.eval()


def f16_state(m):
    return {k: v.half() for k, v in m.state_dict().items()}


def dit_config_class(cls):
    from diffusers import DiTTransformer2DModel, Transformer2DModel
    return {"DiTTransformer2DModel": DiTTransformer2DModel, "Transformer2DModel": Transformer2DModel}[cls]


def write_dit_folder(m, cfg, cls, d):
    """config.json as `cls` writes it (Transformer2DModel: the Hub's legacy DiT form) + F16 weights."""
    os.makedirs(d, exist_ok=True)
    if cls == type(m).__name__:
        m.save_config(d)
    else:
        with torch.device("meta"):
            dit_config_class(cls)(**cfg).save_config(d)
    write_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"),
                      {k: entry(v) for k, v in f16_state(m).items()}, {"format": "pt"})


def maxdiff(a, b):
    return (a.float() - b.float()).abs().max().item()


def size_of(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def png_bytes(arr):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


# ------------------------------------------------------------------------- the original DiT layout

def original_pos_embed(embed_dim, grid_size):
    """facebookresearch/DiT models.py get_2d_sincos_pos_embed (MAE's), numpy float64, then .float() as
    DiT.initialize_weights stores it: (1, grid^2, D). Channels [0, D/2) encode the column (w) index,
    [D/2, D) the row; each half is [sin(pos w_k), cos(pos w_k)], w_k = 10000^(-k / (D/4)), k < D/4."""
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])

    def one_d(d, pos):
        omega = np.arange(d // 2, dtype=np.float64)
        omega /= d / 2.0
        omega = 1.0 / 10000 ** omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    return torch.from_numpy(emb).float().unsqueeze(0)


def diffusers_to_original(sd, depth, num_patches):
    """The inverse of scripts/convert_dit_to_diffusers.py: the DiT models.py state dict names. The per-block
    embedder copies must be identical (the original has one t_embedder / y_embedder); pos_embed is the
    original's fixed sin-cos table (F32), which the original saves as a requires_grad=False Parameter."""
    sd = dict(sd)
    out = {}
    out["x_embedder.proj.weight"] = sd.pop("pos_embed.proj.weight")
    out["x_embedder.proj.bias"] = sd.pop("pos_embed.proj.bias")
    emb = "transformer_blocks.%d.norm1.emb."
    for i in range(depth):
        for a, b in (("timestep_embedder.linear_1", "t_embedder.mlp.0"),
                     ("timestep_embedder.linear_2", "t_embedder.mlp.2"),
                     ("class_embedder.embedding_table", "y_embedder.embedding_table")):
            for s in (("weight", "bias") if "linear" in a else ("weight",)):
                v = sd.pop((emb % i) + a + "." + s)
                if i == 0:
                    out[b + "." + s] = v
                else:
                    assert torch.equal(v, out[b + "." + s]), "block %d's %s is not block 0's" % (i, a)
        p, q = "transformer_blocks.%d." % i, "blocks.%d." % i
        out[q + "adaLN_modulation.1.weight"] = sd.pop(p + "norm1.linear.weight")
        out[q + "adaLN_modulation.1.bias"] = sd.pop(p + "norm1.linear.bias")
        for s in ("weight", "bias"):
            out[q + "attn.qkv." + s] = torch.cat([sd.pop(p + "attn1.to_%s.%s" % (n, s)) for n in "qkv"], 0)
            out[q + "attn.proj." + s] = sd.pop(p + "attn1.to_out.0." + s)
            out[q + "mlp.fc1." + s] = sd.pop(p + "ff.net.0.proj." + s)
            out[q + "mlp.fc2." + s] = sd.pop(p + "ff.net.2." + s)
    for s in ("weight", "bias"):
        out["final_layer.adaLN_modulation.1." + s] = sd.pop("proj_out_1." + s)
        out["final_layer.linear." + s] = sd.pop("proj_out_2." + s)
    assert not sd, "unmapped: %s" % sorted(sd)
    d = out["x_embedder.proj.bias"].numel()
    out["pos_embed"] = original_pos_embed(d, int(round(num_patches ** 0.5)))
    return out


def original_to_diffusers(state_dict, depth):
    """scripts/convert_dit_to_diffusers.py (upstream diffusers) main(), its key mapping written out for any
    depth (the script hard-codes 28), in its order, then the one step the script lacks: the original's
    "pos_embed" table is dropped (diffusers computes it; its buffer is not persistent). The script leaves
    that key in and loads with strict=True, which the torch of its day accepted (older strict checks
    skipped keys whose first name component is a submodule, and the model has a submodule pos_embed);
    torch 2.5.1 reports it as unexpected (checked in check_layout)."""
    state_dict = dict(state_dict)
    state_dict["pos_embed.proj.weight"] = state_dict["x_embedder.proj.weight"]
    state_dict["pos_embed.proj.bias"] = state_dict["x_embedder.proj.bias"]
    state_dict.pop("x_embedder.proj.weight")
    state_dict.pop("x_embedder.proj.bias")
    for depth_i in range(depth):
        b, o = "transformer_blocks.%d." % depth_i, "blocks.%d." % depth_i
        state_dict[b + "norm1.emb.timestep_embedder.linear_1.weight"] = state_dict["t_embedder.mlp.0.weight"]
        state_dict[b + "norm1.emb.timestep_embedder.linear_1.bias"] = state_dict["t_embedder.mlp.0.bias"]
        state_dict[b + "norm1.emb.timestep_embedder.linear_2.weight"] = state_dict["t_embedder.mlp.2.weight"]
        state_dict[b + "norm1.emb.timestep_embedder.linear_2.bias"] = state_dict["t_embedder.mlp.2.bias"]
        state_dict[b + "norm1.emb.class_embedder.embedding_table.weight"] = state_dict[
            "y_embedder.embedding_table.weight"]
        state_dict[b + "norm1.linear.weight"] = state_dict[o + "adaLN_modulation.1.weight"]
        state_dict[b + "norm1.linear.bias"] = state_dict[o + "adaLN_modulation.1.bias"]
        q, k, v = torch.chunk(state_dict[o + "attn.qkv.weight"], 3, dim=0)
        q_bias, k_bias, v_bias = torch.chunk(state_dict[o + "attn.qkv.bias"], 3, dim=0)
        state_dict[b + "attn1.to_q.weight"] = q
        state_dict[b + "attn1.to_q.bias"] = q_bias
        state_dict[b + "attn1.to_k.weight"] = k
        state_dict[b + "attn1.to_k.bias"] = k_bias
        state_dict[b + "attn1.to_v.weight"] = v
        state_dict[b + "attn1.to_v.bias"] = v_bias
        state_dict[b + "attn1.to_out.0.weight"] = state_dict[o + "attn.proj.weight"]
        state_dict[b + "attn1.to_out.0.bias"] = state_dict[o + "attn.proj.bias"]
        state_dict[b + "ff.net.0.proj.weight"] = state_dict[o + "mlp.fc1.weight"]
        state_dict[b + "ff.net.0.proj.bias"] = state_dict[o + "mlp.fc1.bias"]
        state_dict[b + "ff.net.2.weight"] = state_dict[o + "mlp.fc2.weight"]
        state_dict[b + "ff.net.2.bias"] = state_dict[o + "mlp.fc2.bias"]
        for s in ("attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias", "mlp.fc1.weight",
                  "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "adaLN_modulation.1.weight",
                  "adaLN_modulation.1.bias"):
            state_dict.pop(o + s)
    state_dict.pop("t_embedder.mlp.0.weight")
    state_dict.pop("t_embedder.mlp.0.bias")
    state_dict.pop("t_embedder.mlp.2.weight")
    state_dict.pop("t_embedder.mlp.2.bias")
    state_dict.pop("y_embedder.embedding_table.weight")
    state_dict["proj_out_1.weight"] = state_dict["final_layer.adaLN_modulation.1.weight"]
    state_dict["proj_out_1.bias"] = state_dict["final_layer.adaLN_modulation.1.bias"]
    state_dict["proj_out_2.weight"] = state_dict["final_layer.linear.weight"]
    state_dict["proj_out_2.bias"] = state_dict["final_layer.linear.bias"]
    state_dict.pop("final_layer.linear.weight")
    state_dict.pop("final_layer.linear.bias")
    state_dict.pop("final_layer.adaLN_modulation.1.weight")
    state_dict.pop("final_layer.adaLN_modulation.1.bias")
    state_dict.pop("pos_embed")
    return state_dict


def check_layout(orig, folder_sd, cfg, what):
    """orig (original layout) -> the script's mapping -> load_state_dict(strict=True) into a
    DiTTransformer2DModel (on the meta device: only the names and shapes are checked there); the mapped
    tensors must equal the folder's bit for bit. Returns max |difference| (0) and the mapped dict."""
    from diffusers import DiTTransformer2DModel

    conv = original_to_diffusers(orig, cfg["num_layers"])
    with torch.device("meta"):
        probe = DiTTransformer2DModel(**cfg)
    try:  # the upstream script as written, pos_embed left in: torch 2.5.1 refuses it
        probe.load_state_dict(dict(conv, pos_embed=orig["pos_embed"]), strict=True, assign=True)
        raise AssertionError("strict load took the original pos_embed key")
    except RuntimeError as e:
        assert 'Unexpected key(s) in state_dict: "pos_embed"' in str(e), e
    with torch.device("meta"):
        probe = DiTTransformer2DModel(**cfg)
    res = probe.load_state_dict(conv, strict=True, assign=True)
    assert not res.missing_keys and not res.unexpected_keys, res
    assert sorted(conv) == sorted(folder_sd), "%s: key sets differ: %s / %s" % (
        what, sorted(set(conv) - set(folder_sd)), sorted(set(folder_sd) - set(conv)))
    worst = 0.0
    for k, v in folder_sd.items():
        c = conv[k]
        assert c.shape == v.shape and c.dtype == v.dtype, (what, k)
        worst = max(worst, maxdiff(c, v))
        assert torch.equal(c, v), "%s: %s differs" % (what, k)
    return worst, conv


VARIANTS = {  # timestep frequency shift, eps of the MLP's LayerNorm, which sin-cos table
    "diffusers": (1, 1e-5, "computed"),   # what diffusers' DiTTransformer2DModel computes
    "original": (0, 1e-6, "stored"),      # what facebookresearch/DiT models.py computes
    "shift 0 only": (0, 1e-5, "computed"),
    "eps 1e-6 only": (1, 1e-6, "computed"),
}


def dit_forward_written(sd, x, t, y, cfg, variant):
    """DiT written out from an original-layout state dict, float32. "diffusers": timestep frequencies
    exp(-ln(1e4) i / (128 - 1)) (downscale_freq_shift 1), the MLP's LayerNorm eps 1e-5 (norm_eps),
    diffusers' own sin-cos table. "original": frequencies exp(-ln(1e4) i / 128), eps 1e-6 everywhere, the
    stored pos_embed. Returns (output, t_freq)."""
    shift, eps2, pos_from = VARIANTS[variant]
    W = {k: v.float() for k, v in sd.items()}
    p, heads, hd = cfg["patch_size"], cfg["num_attention_heads"], cfg["attention_head_dim"]
    D = heads * hd
    B = x.shape[0]
    h = F.conv2d(x, W["x_embedder.proj.weight"], W["x_embedder.proj.bias"], stride=p).flatten(2).transpose(1, 2)
    if pos_from == "computed":
        from diffusers.models.embeddings import get_2d_sincos_pos_embed
        pos = get_2d_sincos_pos_embed(D, x.shape[-1] // p, base_size=x.shape[-1] // p, output_type="pt")
        pos = pos.float().unsqueeze(0)
    else:
        pos = W["pos_embed"]
    h = h + pos
    half = 128
    div = half - shift
    freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=torch.float32) / div)
    args = t[:, None].float() * freqs[None]
    t_freq = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    t_emb = F.linear(F.silu(F.linear(t_freq, W["t_embedder.mlp.0.weight"], W["t_embedder.mlp.0.bias"])),
                     W["t_embedder.mlp.2.weight"], W["t_embedder.mlp.2.bias"])
    c = t_emb + W["y_embedder.embedding_table.weight"][y]
    for i in range(cfg["num_layers"]):
        q = "blocks.%d." % i
        mod = F.linear(F.silu(c), W[q + "adaLN_modulation.1.weight"], W[q + "adaLN_modulation.1.bias"])
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=1)
        n = F.layer_norm(h, (D,), eps=1e-6) * (1 + scale_msa[:, None]) + shift_msa[:, None]
        qkv = F.linear(n, W[q + "attn.qkv.weight"], W[q + "attn.qkv.bias"])
        qkv = qkv.reshape(B, -1, 3, heads, hd).permute(2, 0, 3, 1, 4)
        a = torch.softmax((qkv[0] @ qkv[1].transpose(-2, -1)) * hd ** -0.5, dim=-1) @ qkv[2]
        a = F.linear(a.transpose(1, 2).reshape(B, -1, D), W[q + "attn.proj.weight"], W[q + "attn.proj.bias"])
        h = h + gate_msa[:, None] * a
        n = F.layer_norm(h, (D,), eps=eps2) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        f = F.gelu(F.linear(n, W[q + "mlp.fc1.weight"], W[q + "mlp.fc1.bias"]), approximate="tanh")
        h = h + gate_mlp[:, None] * F.linear(f, W[q + "mlp.fc2.weight"], W[q + "mlp.fc2.bias"])
    shift, scale = F.linear(F.silu(c), W["final_layer.adaLN_modulation.1.weight"],
                            W["final_layer.adaLN_modulation.1.bias"]).chunk(2, dim=1)
    h = F.layer_norm(h, (D,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
    h = F.linear(h, W["final_layer.linear.weight"], W["final_layer.linear.bias"])
    C, g = cfg["out_channels"], int(round(h.shape[1] ** 0.5))
    h = torch.einsum("nhwpqc->nchpwq", h.reshape(B, g, g, p, p, C))
    return h.reshape(B, C, g * p, g * p), t_freq


# ----------------------------------------------------------------------------------------- models

def dit_inputs(spec):
    cfg = spec["cfg"]
    g = torch.Generator().manual_seed(spec["xseed"])
    s = cfg["sample_size"]
    x = torch.randn((len(spec["t"]), cfg["in_channels"], s, s), generator=g)
    return x, torch.tensor(spec["t"], dtype=torch.float32), torch.tensor(spec["y"], dtype=torch.int64)


def dit_reference(m, x, t, y):
    """diffusers' output and intermediates, captured with forward hooks. norm1.emb of block 0 also runs
    for the final layer: every call must give the same c."""
    got = {}
    hooks = []

    def grab(mod, name, pick=lambda o: o):
        hooks.append(mod.register_forward_hook(
            lambda _m, _a, o: got.setdefault(name, []).append(pick(o).detach().clone())))

    e = m.transformer_blocks[0].norm1.emb
    grab(e.time_proj, "t_freq")
    grab(e.timestep_embedder, "t_emb")
    grab(e.class_embedder, "y_emb")
    grab(e, "c")
    grab(m.pos_embed, "tokens")
    for i, b in enumerate(m.transformer_blocks):
        grab(b, "block.%d" % i)
    grab(m.proj_out_2, "final.tokens")
    with torch.no_grad():
        out = m(x, timestep=t, class_labels=y).sample
    for hk in hooks:
        hk.remove()
    exp = {}
    for k, v in got.items():
        assert all(torch.equal(a, v[0]) for a in v), k
        exp[k] = v[0]
    assert len(got["c"]) == 2
    exp["out"] = out
    exp["pos_embed"] = m.pos_embed.pos_embed.clone()
    return exp


def dit_meta(name, spec, folder, gen):
    cfg = spec["cfg"]
    with open(os.path.join(folder, "config.json")) as f:
        config = json.dumps(json.load(f), sort_keys=True, separators=(",", ":"))
    return {"generator": gen, "config": config, "config_class": spec["cls"],
            "hidden_size": str(cfg["num_attention_heads"] * cfg["attention_head_dim"]),
            "num_heads": str(cfg["num_attention_heads"]), "head_dim": str(cfg["attention_head_dim"]),
            "patch_size": str(cfg["patch_size"]), "depth": str(cfg["num_layers"]),
            "num_classes": str(cfg["num_embeds_ada_norm"]), "null_class": str(cfg["num_embeds_ada_norm"]),
            "learn_sigma": "true", "original_file": name + ".safetensors",
            "timestep_embedding": "diffusers Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)",
            "layer_norm_eps": json.dumps({"norm1 (msa)": 1e-6, "norm3 (mlp)": 1e-5, "norm_out": 1e-6})}


# ------------------------------------------------------------------------------------- the pipeline

class Recorder:
    """Wraps torch.randn (draws from the run's generator), the transformer, scheduler.step and the VAE
    decode for one DiTPipeline call."""

    def __init__(self, pipe, gen):
        self.pipe, self.gen = pipe, gen
        self.draws, self.model, self.steps, self.decode = [], [], [], []

    def __enter__(self):
        rec, p = self, self.pipe
        self._randn = torch.randn

        def randn(*a, generator=None, **kw):
            out = rec._randn(*a, generator=generator, **kw)
            if generator is rec.gen:
                rec.draws.append(out.detach().clone())
            return out

        torch.randn = randn
        self.hook = p.transformer.register_forward_hook(
            lambda m, a, kw, o: rec.model.append((a[0].clone(), kw["timestep"].clone(), kw["class_labels"].clone(),
                                                  o[0].detach().clone())), with_kwargs=True)
        step, dec = p.scheduler.step, p.vae.decode

        def sched_step(model_output, timestep, sample, *a, **kw):
            assert not a and not kw, (a, kw)  # DiTPipeline passes no eta / generator: eta = 0
            out = step(model_output, timestep, sample)
            rec.steps.append((model_output.clone(), timestep.clone(), sample.clone(), out.prev_sample.clone(),
                              out.pred_original_sample.clone()))
            return out

        def decode(z, *a, **kw):
            out = dec(z, *a, **kw)
            rec.decode.append((z.clone(), out[0].detach().clone()))
            return out

        p.scheduler.step, p.vae.decode = sched_step, decode
        return self

    def __exit__(self, *exc):
        torch.randn = self._randn
        self.hook.remove()
        del self.pipe.scheduler.step, self.pipe.vae.decode


def ddim_written(s, eps, t, x):
    """diffusers' DDIMScheduler.step (eta 0, epsilon, no clipping) in its float32 op order."""
    prev_t = t - s.config.num_train_timesteps // s.num_inference_steps
    a = s.alphas_cumprod[t]
    a_prev = s.alphas_cumprod[prev_t] if prev_t >= 0 else s.final_alpha_cumprod
    beta = 1 - a
    x0 = (x - beta ** 0.5 * eps) / a ** 0.5
    variance = ((1 - a_prev) / beta) * (1 - a / a_prev)
    std = 0.0 * variance ** 0.5
    return a_prev ** 0.5 * x0 + (1 - a_prev - std ** 2) ** 0.5 * eps, x0


def build_pipeline(root, transformer, spec):
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline

    vae = randomize(AutoencoderKL(**VAE), 302, GAIN["vae"])
    write_dit_folder(transformer, spec["cfg"], spec["cls"], os.path.join(root, "transformer"))
    d = os.path.join(root, "vae")
    os.makedirs(d, exist_ok=True)
    vae.save_config(d)
    write_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"),
                      {k: entry(v) for k, v in f16_state(vae).items()}, {"format": "pt"})
    sched = DDIMScheduler(**SCHEDULER)
    sched.save_config(os.path.join(root, "scheduler"))
    DiTPipeline(transformer=transformer, vae=vae, scheduler=sched).save_config(root)  # model_index.json
    return vae


def load_pipeline(root, transformer, vae):
    from diffusers import DiTPipeline

    pipe = DiTPipeline.from_pretrained(root, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert type(pipe.transformer).__name__ == "DiTTransformer2DModel"
    for name, a, b in (("transformer", pipe.transformer, transformer), ("vae", pipe.vae, vae)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sorted(sa) == sorted(sb), name
        for k in sa:
            assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), (name, k)
    return pipe


def run_pipeline(pipe):
    gen = torch.Generator("cpu").manual_seed(PIPE["seed"])
    with Recorder(pipe, gen) as rec:
        images = pipe(class_labels=PIPE["class_labels"], guidance_scale=PIPE["guidance_scale"], generator=gen,
                      num_inference_steps=PIPE["num_inference_steps"], output_type="np").images
    # every draw recorded: replaying them leaves a fresh generator in the same state
    g = torch.Generator("cpu").manual_seed(PIPE["seed"])
    for k, d in enumerate(rec.draws):
        assert torch.equal(torch.randn(d.shape, generator=g, dtype=d.dtype), d), "draw %d" % k
    assert torch.equal(g.get_state(), gen.get_state()), "unrecorded generator draws"
    return rec, images


def derive_pipeline(pipe, rec, images):
    """The stored tensors, and checks that the run is exactly the formulas README.md gives."""
    s, scale, C = pipe.scheduler, PIPE["guidance_scale"], pipe.transformer.config.in_channels
    n, B = PIPE["num_inference_steps"], len(PIPE["class_labels"])
    assert len(rec.draws) == 1 and len(rec.model) == n and len(rec.steps) == n and len(rec.decode) == 1
    noise = rec.draws[0]
    labels = torch.tensor(PIPE["class_labels"] + [1000] * B)
    out = {"noise": noise, "init_latents": noise, "class_labels_input": labels.to(torch.int32),
           "timesteps": s.timesteps.clone(), "alphas_cumprod_at_t": s.alphas_cumprod[s.timesteps].clone()}
    x = noise  # no init_noise_sigma: DiTPipeline uses randn_tensor's output as is (DDIM's is 1.0 anyway)
    raw, eps_l, lat, x0s = [], [], [], []
    for i, ((xin, tt, yy, o), (mo, ts, samp, prev, x0)) in enumerate(zip(rec.model, rec.steps)):
        t = s.timesteps[i]
        assert torch.equal(xin, torch.cat([x, x])), i  # scale_model_input is the identity for DDIM
        assert tt.dtype == torch.int64 and tt.tolist() == [t.item()] * 2 * B, (i, tt)
        assert torch.equal(yy, labels), i
        assert torch.equal(samp, xin) and ts.item() == t.item()
        eps, rest = o[:, :C], o[:, C:]
        cond, uncond = torch.split(eps, len(eps) // 2, dim=0)
        half = uncond + scale * (cond - uncond)
        assert torch.equal(mo, torch.cat([half, half])), i  # the learned-variance half is dropped
        assert rest.shape[1] == C
        x_next, x0w = ddim_written(s, half, t, x)
        assert torch.equal(x_next, prev[:B]) and torch.equal(prev[:B], prev[B:]), i
        assert torch.equal(x0w, x0[:B]), i
        raw.append(o)
        eps_l.append(half)
        lat.append(x_next)
        x0s.append(x0w)
        x = x_next
    out["step.t"] = torch.stack([m[1][0] for m in rec.model])
    out["step.model_out"] = torch.stack(raw)
    out["step.eps"] = torch.stack(eps_l)
    out["step.x0"] = torch.stack(x0s)
    out["step.latents"] = torch.stack(lat)
    out["final_latents"] = x
    (z, dec), = rec.decode
    assert torch.equal(z, 1 / pipe.vae.config.scaling_factor * x)
    out["decoded"] = dec
    img = torch.from_numpy(images.copy())
    assert torch.equal(img, (dec / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1))
    out["image"] = img
    u8 = (images * 255).round().astype("uint8")
    for k in range(B):
        assert np.array_equal(np.asarray(pipe.numpy_to_pil(images)[k]), u8[k])
    out["image_u8"] = torch.from_numpy(u8)
    return out


def draws_worker(out_path):
    """Child process under the machine's default CPU capability: the same draw."""
    g = torch.Generator("cpu").manual_seed(PIPE["seed"])
    shape = (len(PIPE["class_labels"]), 4, MODELS["p2"]["cfg"]["sample_size"], MODELS["p2"]["cfg"]["sample_size"])
    with open(out_path, "w") as f:
        json.dump({"capability": torch.backends.cpu.get_cpu_capability(),
                   "draw": torch.randn(shape, generator=g).numpy().tobytes().hex()}, f)


def check_other_capability(draw):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        op = os.path.join(tmp, "draw.json")
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        subprocess.run([sys.executable, os.path.abspath(__file__), "--draws-worker", op], env=env, check=True)
        with open(op) as f:
            res = json.load(f)
    assert res["draw"] == draw.numpy().tobytes().hex(), "%s draws differ from AVX2" % res["capability"]
    return res["capability"]


# ------------------------------------------------------------------------------------- README

README = """# tests/fixtures/dit: generated, do not edit

Everything here is written by `tools/gen_dit_fixtures.py` (this file too):

    tools/.venv/bin/python tools/gen_dit_fixtures.py tests/fixtures

Regenerating with the same software gives the same bytes ({versions}; torch runs with
ATEN_CPU_CAPABILITY=avx2, one thread; the float32 results may move in the last bits elsewhere).
Tiny random-weight DiT models (Peebles & Xie, class-conditional, adaLN-Zero) in diffusers' folder layout
and in the original facebookresearch/DiT checkpoint layout, diffusers 0.32.2's outputs for them, and
a DiTPipeline run. Weights are random with a realistic scale (all of them: with adaLN-Zero's zero init
every block would be the identity and the output 0), rounded to f16 and stored F16; every reference is
computed in float32 from exactly those rounded weights.

## Files

{files}

## Models

| name | folder config class | patch | latents | hidden | heads x dim | layers | classes (+ null) | out channels | tokens |
|---|---|---|---|---|---|---|---|---|---|
{model_rows}

Common: in_channels 4, out_channels 8 (learn_sigma: [eps (4), variance (4)]), activation
gelu-approximate (GELU tanh), attention_bias true, norm_type ada_norm_zero, norm_elementwise_affine
false, norm_eps 1e-5, MLP ratio 4.

- `p2/` is a complete DiTPipeline folder: model_index.json (`DiTPipeline`: `transformer`
  DiTTransformer2DModel, `vae` AutoencoderKL, `scheduler` DDIMScheduler), `transformer/`, `vae/`,
  `scheduler/`. Its transformer has 1000 classes because DiTPipeline hard-codes the null label 1000
  (`class_null = torch.tensor([1000] * batch_size)`); any other class count would index out of the table.
  `transformer/config.json` is what diffusers 0.32.2 writes (`_class_name` "DiTTransformer2DModel").
- `p4/transformer/config.json` is the legacy form: `_class_name` "Transformer2DModel" (upstream
  scripts/convert_dit_to_diffusers.py builds a Transformer2DModel, and the Hub's facebook/DiT-XL-2-*
  folders were made that way), with the Transformer2DModel-only keys (cross_attention_dim null,
  num_vector_embeds null, use_linear_projection false, ...; older diffusers wrote fewer of them).
  diffusers remaps it by norm_type: `Transformer2DModel.from_pretrained` returns a DiTTransformer2DModel
  (checked here); a loader keys on norm_type "ada_norm_zero" + patch_size, not on `_class_name`, and
  ignores keys it does not know.
- `vae/` (in p2/): AutoencoderKL, block_out_channels (8, 16) so the latent factor is **2** (images are
  {img} x {img}), 4 latent channels, 4 groups, layers_per_block 1, scaling_factor 0.18215; the decoder's
  conv_out weights scaled by 0.6 before rounding (so few pixels clip).

## The two layouts

diffusers (`diffusion_pytorch_model.safetensors`, F16) -> original (`<m>.safetensors`, F16 except
pos_embed F32). N = block, D = hidden:

| diffusers | original | notes |
|---|---|---|
| pos_embed.proj.{{weight,bias}} | x_embedder.proj.{{weight,bias}} | Conv2d(4, D, p, stride p): (D, 4, p, p) |
| (not stored: buffer pos_embed.pos_embed, persistent=False) | pos_embed | (1, T, D) F32, the fixed sin-cos table; see below |
| transformer_blocks.N.norm1.emb.timestep_embedder.linear_1.{{weight,bias}} | t_embedder.mlp.0.{{weight,bias}} | (D, 256); one copy per block in diffusers, all equal |
| transformer_blocks.N.norm1.emb.timestep_embedder.linear_2.{{weight,bias}} | t_embedder.mlp.2.{{weight,bias}} | (D, D) |
| transformer_blocks.N.norm1.emb.class_embedder.embedding_table.weight | y_embedder.embedding_table.weight | (classes + 1, D); last row = null class |
| transformer_blocks.N.norm1.linear.{{weight,bias}} | blocks.N.adaLN_modulation.1.{{weight,bias}} | (6D, D); chunks in order shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp |
| transformer_blocks.N.attn1.to_q / to_k / to_v.{{weight,bias}} | blocks.N.attn.qkv.{{weight,bias}} | qkv (3D, D) = cat([q, k, v], dim 0); rows of each part are head-major (head h = rows h*hd .. h*hd+hd-1) |
| transformer_blocks.N.attn1.to_out.0.{{weight,bias}} | blocks.N.attn.proj.{{weight,bias}} | (D, D) |
| transformer_blocks.N.ff.net.0.proj.{{weight,bias}} | blocks.N.mlp.fc1.{{weight,bias}} | (4D, D), then GELU tanh |
| transformer_blocks.N.ff.net.2.{{weight,bias}} | blocks.N.mlp.fc2.{{weight,bias}} | (D, 4D) |
| proj_out_1.{{weight,bias}} | final_layer.adaLN_modulation.1.{{weight,bias}} | (2D, D); chunks shift, scale (shift first) |
| proj_out_2.{{weight,bias}} | final_layer.linear.{{weight,bias}} | (p*p*8, D) |

The LayerNorms (norm1 / norm2 / norm_final; diffusers norm1.norm / norm3 / norm_out) have no parameters.
The original has ONE t_embedder and y_embedder; diffusers' layout repeats them in every block (the
conversion copies them) and uses block N's copy in block N and block 0's for the final layer. Here all
copies are equal, as in every converted checkpoint; a diffusers-trained DiT could in principle differ per
block, and then it has no original-layout form.

The proof: `original_to_diffusers()` in the script is upstream diffusers' scripts/convert_dit_to_diffusers.py
mapping (written for any depth; the script hard-codes 28), plus dropping the original's `pos_embed` key:
the script leaves it in and loads with strict=True, which older torch accepted (its strict check skipped
keys named like a submodule, and the model has a submodule pos_embed); torch 2.5.1 reports
`Unexpected key(s) in state_dict: "pos_embed"` (checked). A loader ignores the original's pos_embed (or
checks it against the computed table). `DiTTransformer2DModel.load_state_dict(..., strict=True)` then
takes the mapped dict with nothing missing or unexpected, the mapped tensors equal the folder's bit for bit
(max |difference| {conv_diff:g}), and the loaded models reproduce the stored output exactly
({conv_out_diff}).

## Forward (what diffusers computes)

x (B, 4, S, S) -> Conv2d patch embedding, flatten to tokens in row-major patch order (token n = row * (S/p)
+ col), + pos_embed -> 2 blocks -> final layer -> unpatchify.

- pos_embed: NOT stored by diffusers; PatchEmbed computes get_2d_sincos_pos_embed(D, S/p, base_size=S/p,
  interpolation_scale=1) (float64 sin/cos, then float32). For token (row r, col c): channels [0, D/4)
  sin(c w_k), [D/4, D/2) cos(c w_k), [D/2, 3D/4) sin(r w_k), [3D/4, D) cos(r w_k), w_k = 10000^(-k/(D/4)),
  k = 0 .. D/4 - 1 (the first half encodes the COLUMN: meshgrid(w, h)). The original stores the same table
  (its numpy float64 version, as a requires_grad=False Parameter); here {pos_diffs}.
- timestep: t_freq (256) = [cos(t f_i), sin(t f_i)] (cos first: flip_sin_to_cos), f_i = exp(-ln(10000) i /
  (128 - 1)), i = 0..127: diffusers' CombinedTimestepLabelEmbeddings uses Timesteps(256,
  flip_sin_to_cos=True, downscale_freq_shift=**1**). The original DiT divides by 128 (shift 0), so
  diffusers' DiT is not the original's function: t_freq differs by up to {tf_diff} (t in {{999, 500.5, 1}}).
  t_emb = linear_2(SiLU(linear_1(t_freq))). t is taken as float (fractional t works).
- class: y_emb = embedding_table[label]; the table has classes + 1 rows (class_dropout_prob 0.1 > 0) and
  row `classes` (1000 for DiT-XL) is the null / unconditional class; in eval mode no label is dropped, the
  null class is asked for explicitly by the label value. c = t_emb + y_emb.
- block: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = linear(SiLU(c)).chunk(6);
  h += gate_msa * attn(LN(h; eps 1e-6) * (1 + scale_msa) + shift_msa);
  h += gate_mlp * ff(LN(h; eps **1e-5**) * (1 + scale_mlp) + shift_mlp). attn: softmax(q k^T / sqrt(hd)) v
  per head, then to_out. The MLP LayerNorm is diffusers' norm3 = LayerNorm(D, norm_eps=1e-5); the
  original uses 1e-6 for both.
- final: shift, scale = proj_out_1(SiLU(c)).chunk(2); h = proj_out_2(LN(h; eps 1e-6) * (1 + scale) + shift)
  (B, T, p*p*8); unpatchify: reshape (B, S/p, S/p, p, p, 8), einsum nhwpqc->nchpwq, reshape (B, 8, S, S), so
  the token's output vector is ordered (patch row, patch col, channel).

The script writes this out (`dit_forward_written`) from the original-layout weights and compares:
{written_rows}
(max |difference| to diffusers' `out`. "diffusers" = the formulas above (not bit-exact only because
torch's fused attention sums in another order); "original" = facebookresearch/DiT models.py's function:
frequency shift 0, LayerNorm eps 1e-6 everywhere, its stored pos_embed; the last two columns change one
thing each. The stored `orig.out` / `orig.t_freq` are the "original" variant, NOT what diffusers
computes.)

## <m>.expected.safetensors (F32 unless noted)

| name | shape | content |
|---|---|---|
| x | 3 x 4 x 16 x 16 | input latents |
| t | 3 | timesteps {t} (F32) |
| y | 3 (I32) | class labels: p2 {y2}, p4 {y4}; the last is the null class |
| t_freq | 3 x 256 | sinusoidal timestep features (diffusers: shift 1) |
| t_emb | 3 x D | timestep_embedder output |
| y_emb | 3 x D | class embedding |
| c | 3 x D | conditioning t_emb + y_emb |
| pos_embed | 1 x T x D | diffusers' sin-cos buffer |
| tokens | 3 x T x D | patch embedding + pos_embed |
| block.0, block.1 | 3 x T x D | output of each transformer block |
| final.tokens | 3 x T x p*p*8 | proj_out_2 output, before unpatchify |
| out | 3 x 8 x 16 x 16 | DiTTransformer2DModel(...).sample: channels 0-3 eps, 4-7 variance |
| orig.t_freq, orig.out | | the original DiT's function on the same weights (for comparison only) |

__metadata__: config (the folder's config.json), config_class, hidden_size, num_heads, head_dim, patch_size,
depth, num_classes, null_class, layer_norm_eps, timestep_embedding.

## The pipeline run (pipeline.expected.safetensors, pipeline.<i>.png)

`DiTPipeline.from_pretrained("p2")` (float32, CPU), `pipe(class_labels={labels}, guidance_scale={scale},
num_inference_steps={steps}, generator=torch.Generator("cpu").manual_seed({seed}), output_type="np")`.
Scheduler: DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear" (betas = linspace(1e-4, 0.02,
1000) float32), prediction_type="epsilon", clip_sample=False), the rest default: set_alpha_to_one true,
steps_offset 0, timestep_spacing "leading", eta 0 (the pipeline passes none). This is what upstream
scripts/convert_dit_to_diffusers.py saves with the DiT pipelines; DDIM with eta 0 draws no noise. (The
original DiT repo samples with its own 250-step DDPM respacing that USES the learned variance; diffusers
never does.)

Timesteps: step_ratio = 1000 // {steps} = {ratio}, timesteps = {timesteps} (I64);
alphas_cumprod at them = {acs}; after t = 0 the "previous" alpha is 1 (set_alpha_to_one).

Exactly what DiTPipeline.__call__ does (diffusers 0.32.2, pipeline_dit.py), B = {B}, C = 4 = in_channels:

    latents = randn_tensor((B, 4, 16, 16), generator)           # the only draw; NOT scaled by init_noise_sigma
    latent_model_input = cat([latents] * 2)                     # (2B, ...), since guidance_scale > 1
    class_labels_input = cat([labels, [1000] * B])              # = {labels_in}: cond first, null second
    for t in timesteps:
        half = latent_model_input[:B]; latent_model_input = cat([half, half])
        latent_model_input = scheduler.scale_model_input(latent_model_input, t)   # identity for DDIM
        noise_pred = transformer(latent_model_input, timestep=t expanded to 2B (int64), class_labels_input)
        eps, rest = noise_pred[:, :C], noise_pred[:, C:]        # C = latent_channels = 4: ALL 4 channels
        cond_eps, uncond_eps = split(eps, B)                    # first half cond, second half uncond
        half_eps = uncond_eps + guidance_scale * (cond_eps - uncond_eps)
        eps = cat([half_eps, half_eps])
        noise_pred = cat([eps, rest], dim=1)                    # rest = the learned variance, unguided
        model_output, _ = split(noise_pred, C, dim=1)           # out_channels // 2 == C: variance DROPPED
        latent_model_input = scheduler.step(model_output, t, latent_model_input).prev_sample
    latents = latent_model_input.chunk(2)[0]
    image = vae.decode(latents / 0.18215).sample; image = clamp(image / 2 + 0.5, 0, 1)   # NHWC numpy
    pil: (image * 255).round().astype(uint8)

Guidance covers all 4 latent channels. (facebookresearch/DiT's own forward_with_cfg guides only the
first 3 channels, `eps, rest = model_out[:, :3], model_out[:, 3:]`, "for exact reproducibility"; some of
its revisions use 4; diffusers uses in_channels.) The variance half is computed, carried unguided, and
thrown away; the two batch halves stay identical throughout.
DDIM step (eta 0, float32, in diffusers' op order; the script replays it bit for bit):
a = alphas_cumprod[t], a' = alphas_cumprod[t - {ratio}] (or 1 after t = 0), x0 = (x - sqrt(1 - a) eps) /
sqrt(a), x' = sqrt(a') x0 + sqrt(1 - a') eps (the variance term is 0 * ... and vanishes). No clipping.

| name | shape | content |
|---|---|---|
| noise, init_latents | B x 4 x 16 x 16 | the single generator draw (they are equal) |
| class_labels_input | 2B (I32) | {labels_in} |
| timesteps, step.t | 8 (I64) | the schedule; the timestep the transformer got each step |
| alphas_cumprod_at_t | 8 | alphas_cumprod[timesteps] (F32) |
| step.model_out | 8 x 2B x 8 x 16 x 16 | the transformer's raw output each step (cond rows, then null rows) |
| step.eps | 8 x B x 4 x 16 x 16 | half_eps: the guided eps the scheduler gets (for both halves) |
| step.x0 | 8 x B x 4 x 16 x 16 | DDIM's predicted x0 |
| step.latents | 8 x B x 4 x 16 x 16 | latents after each step (one half; the other is identical) |
| final_latents | B x 4 x 16 x 16 | = step.latents[-1]; the VAE decodes final_latents / 0.18215 |
| decoded | B x 3 x {img} x {img} | the VAE decoder's output, unclamped |
| image | B x {img} x {img} x 3 | output_type="np": clamp(decoded / 2 + 0.5, 0, 1) |
| image_u8 | B x {img} x {img} x 3 (U8) | round(image * 255): the PIL images, = pipeline.<i>.png |

The draw is `torch.randn((B, 4, 16, 16), generator)` = {numel} values from the CPU generator with
torch's AVX2 normal_ kernel (difusa's DF_RNG_CPU); the machine's own capability ({capability}) drew the
same bits; replaying it on a fresh generator leaves the pipeline's generator state, so nothing else was
drawn. Magnitudes of this random-weight run: {mags}.
"""


def write_readme(out_dir, info):
    files = []
    for r, dirs, fs in os.walk(out_dir):
        dirs.sort()
        for f in sorted(fs):
            if f == "README.md":
                continue
            pth = os.path.join(r, f)
            files.append("    %9d  %s" % (os.path.getsize(pth), os.path.relpath(pth, out_dir)))
    files.append("    %9d  in all (README.md excluded)" % sum(
        os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out_dir) for f in fs if f != "README.md"))
    rows = []
    for name, spec in MODELS.items():
        c = spec["cfg"]
        g = c["sample_size"] // c["patch_size"]
        rows.append("| %s | %s | %d | %d x %d x 4 | %d | %d x %d | %d | %d (+1: null %d) | 8 | %d (%d x %d) |" % (
            name, spec["cls"], c["patch_size"], c["sample_size"], c["sample_size"],
            c["num_attention_heads"] * c["attention_head_dim"], c["num_attention_heads"], c["attention_head_dim"],
            c["num_layers"], c["num_embeds_ada_norm"], c["num_embeds_ada_norm"], g * g, g, g))
    text = README.format(**dict(info, files="\n".join(files), model_rows="\n".join(rows)))
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)


# ------------------------------------------------------------------------------------------- main

def main(out_root):
    import diffusers
    from diffusers import DiTTransformer2DModel, Transformer2DModel
    from safetensors.torch import load_file

    assert torch.backends.cpu.get_cpu_capability() == "AVX2", torch.backends.cpu.get_cpu_capability()
    torch.set_num_threads(1)  # fixed reduction order: the same bytes on every regeneration
    torch.use_deterministic_algorithms(True)
    gen = "tools/gen_dit_fixtures.py: diffusers %s, torch %s, numpy %s" % (
        diffusers.__version__, torch.__version__, np.__version__)
    out_dir = os.path.join(out_root, "dit")
    os.makedirs(out_dir, exist_ok=True)
    info = {"versions": gen.split(": ", 1)[1]}
    written_rows = ["| model | max abs out | " + " | ".join("vs written-out %s" % v for v in VARIANTS) + " |",
                    "|---|---|" + "---|" * len(VARIANTS)]
    pos_diffs, tf_diff, conv_diffs, out_diffs = [], 0.0, [], []
    models = {}

    for name, spec in MODELS.items():
        cfg = spec["cfg"]
        m = randomize_dit(DiTTransformer2DModel(**cfg), spec["seed"])
        models[name] = m
        folder = os.path.join(out_dir, name, "transformer")
        if name == "p2":
            vae = build_pipeline(os.path.join(out_dir, name), m, spec)
        else:
            write_dit_folder(m, cfg, spec["cls"], folder)
        x, t, y = dit_inputs(spec)
        exp = {"x": x, "t": t, "y": y}
        exp.update(dit_reference(m, x, t, y))

        # the original layout, and the proof that diffusers' conversion maps it back exactly
        folder_sd = load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
        T = (cfg["sample_size"] // cfg["patch_size"]) ** 2
        orig = diffusers_to_original(folder_sd, cfg["num_layers"], T)
        write_safetensors(os.path.join(out_dir, name + ".safetensors"), {k: entry(v) for k, v in orig.items()},
                          {"format": "pt"})
        orig_rt = load_file(os.path.join(out_dir, name + ".safetensors"))
        worst, conv = check_layout(orig_rt, folder_sd, cfg, name)
        conv_diffs.append(worst)

        # load back: the folder (as its config class says, remapped), the converted original
        loaded = dit_config_class(spec["cls"]).from_pretrained(folder, local_files_only=True).eval()
        assert type(loaded).__name__ == "DiTTransformer2DModel", type(loaded)
        via_orig = DiTTransformer2DModel(**cfg).eval()
        via_orig.load_state_dict({k: v.float() for k, v in original_to_diffusers(orig_rt, cfg["num_layers"]).items()},
                                 strict=True)
        legacy = Transformer2DModel(**cfg).eval()  # the legacy class itself, constructed directly
        legacy.load_state_dict(m.state_dict())
        with torch.no_grad():
            for what, mm in (("from_pretrained", loaded), ("original layout", via_orig),
                             ("Transformer2DModel", legacy)):
                o = mm(x, timestep=t, class_labels=y).sample
                dd = maxdiff(o, exp["out"])
                out_diffs.append("%s %s %g" % (name, what, dd))
                assert dd == 0.0, (name, what, dd)

        # the function written out, both variants
        with torch.no_grad():
            wr = {v: dit_forward_written(orig_rt, x, t, y, cfg, v) for v in VARIANTS}
        wd, tfd = wr["diffusers"]
        wo, tfo = wr["original"]
        assert maxdiff(tfd, exp["t_freq"]) < 1e-6
        dw, do = maxdiff(wd, exp["out"]), maxdiff(wo, exp["out"])
        assert dw < 1e-4 * exp["out"].abs().max().item(), (name, dw)
        written_rows.append("| %s | %.3g | " % (name, exp["out"].abs().max().item()) +
                            " | ".join("%.3g" % maxdiff(wr[v][0], exp["out"]) for v in VARIANTS) + " |")
        exp["orig.t_freq"], exp["orig.out"] = tfo, wo
        tf_diff = max(tf_diff, maxdiff(tfo, tfd))
        pos_diffs.append("%s: max |original - diffusers| = %g" % (
            name, maxdiff(orig_rt["pos_embed"], exp["pos_embed"])))

        meta = dit_meta(name, spec, folder, gen)
        write_safetensors(os.path.join(out_dir, name + ".expected.safetensors"),
                          {k: entry(v.to(torch.int32) if v.dtype == torch.int64 else v.float())
                           for k, v in exp.items()},
                          meta)
        print("%s: |out| max %.3g std %.3g; tokens std %.3g, block.1 std %.3g; written-out %.3g, original DiT %.3g"
              % (name, exp["out"].abs().max().item(), exp["out"].std().item(), exp["tokens"].std().item(),
                 exp["block.1"].std().item(), dw, do))

    # ------------------------------------------------------------------ the pipeline
    root = os.path.join(out_dir, "p2")
    pipe = load_pipeline(root, models["p2"], vae)
    rec, images = run_pipeline(pipe)
    pexp = derive_pipeline(pipe, rec, images)
    capability = check_other_capability(pexp["noise"])
    fresh = torch.randn(pexp["noise"].shape, generator=torch.Generator("cpu").manual_seed(PIPE["seed"]))
    assert torch.equal(fresh, pexp["noise"])
    settings = dict(PIPE, output_type="np", eta=0.0,
                    generator='torch.Generator("cpu").manual_seed(%d)' % PIPE["seed"])
    pmeta = {"generator": gen, "settings": json.dumps(settings, sort_keys=True),
             "scheduler_config": json.dumps({k: v for k, v in dict(pipe.scheduler.config).items()
                                             if not k.startswith("_")}, sort_keys=True, default=str),
             "rng": "torch CPU generator, normal_ kernel of ATEN_CPU_CAPABILITY=avx2 (difusa DF_RNG_CPU); the %s "
                    "capability drew the same bits" % capability,
             "latent_factor": "2", "vae_scaling_factor": "0.18215", "weight_gains": json.dumps(GAIN, sort_keys=True)}
    write_safetensors(os.path.join(out_dir, "pipeline.expected.safetensors"),
                      {k: entry(v) for k, v in pexp.items()}, pmeta)
    for k in range(len(PIPE["class_labels"])):
        with open(os.path.join(out_dir, "pipeline.%d.png" % k), "wb") as f:
            f.write(png_bytes(pexp["image_u8"].numpy()[k]))

    dec = pexp["decoded"]
    lat = pexp["step.latents"]
    mags = ("max |latents| per step %s; max |model_out| %.3g; decoded at or beyond +-1: %.1f%%; image std %.3f, "
            "%d distinct u8 levels" % (
                "[" + ", ".join("%.3g" % lat[i].abs().max().item() for i in range(lat.shape[0])) + "]",
                pexp["step.model_out"].abs().max().item(), 100 * ((dec <= -1) | (dec >= 1)).float().mean().item(),
                pexp["image"].std().item(), len(np.unique(pexp["image_u8"].numpy()))))
    print("pipeline:", mags)
    s = pipe.scheduler
    img = MODELS["p2"]["cfg"]["sample_size"] * 2  # the VAE's latent factor is 2
    B = len(PIPE["class_labels"])
    info.update(conv_diff=max(conv_diffs), conv_out_diff="; ".join(out_diffs), pos_diffs="; ".join(pos_diffs),
                tf_diff="%.3g" % tf_diff, written_rows="\n".join(written_rows), t=MODELS["p2"]["t"],
                y2=MODELS["p2"]["y"], y4=MODELS["p4"]["y"], labels=PIPE["class_labels"],
                scale=PIPE["guidance_scale"], steps=PIPE["num_inference_steps"], seed=PIPE["seed"],
                ratio=1000 // PIPE["num_inference_steps"], timesteps=s.timesteps.tolist(),
                acs="[" + ", ".join("%.9g" % v for v in pexp["alphas_cumprod_at_t"].tolist()) + "]",
                B=B, labels_in=pexp["class_labels_input"].tolist(), img=img, numel=pexp["noise"].numel(),
                capability=capability, mags=mags)
    write_readme(out_dir, info)
    for r, dirs, fs in os.walk(out_dir):
        dirs.sort()
        for f in sorted(fs):
            pth = os.path.join(r, f)
            print("%9d  %s" % (os.path.getsize(pth), os.path.relpath(pth, out_dir)))
    print("total: %d bytes" % size_of(out_dir))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--draws-worker":
        draws_worker(sys.argv[2])
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")

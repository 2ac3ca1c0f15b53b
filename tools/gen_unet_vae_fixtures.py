"""Tiny random-weight diffusers UNets and VAEs in the two layouts difusa reads,
and diffusers' outputs for them (tests/fixtures/unet, tests/fixtures/vae).

  unet/<case>/unet/config.json + diffusion_pytorch_model.safetensors   diffusers folder
  unet/<case>.safetensors            single-file LDM layout: model.diffusion_model.*
                                     (sd1.safetensors also holds the "sd" VAE as first_stage_model.*,
                                     as real checkpoints do)
  unet/<case>.expected.safetensors   inputs, output and intermediates (all F32)
  vae/<case>/vae/config.json + diffusion_pytorch_model.safetensors     diffusers folder
  vae/sdxl.safetensors               standalone LDM VAE, no prefix (encoder.*, decoder.*, quant_conv.*,
                                     as sdxl_vae.safetensors / vae-ft-mse-*.safetensors are)
  vae/<case>.expected.safetensors    inputs and outputs (all F32)
  The LDM layout of vae "sd" is first_stage_model.* inside unet/sd1.safetensors.

UNet cases (UNet2DConditionModel):
  sd1      SD1.x: CrossAttnDown, CrossAttnDown, Down / Up, CrossAttnUp, CrossAttnUp; conv proj_in/out;
           2 heads at every level (LDM num_heads); layers_per_block 2; context 77 x 32
  sd2      SD2.x: use_linear_projection; heads [2, 4] = head dim 8 everywhere (LDM num_head_channels);
           16 groups; context 11 x 48; integer timesteps
  sdxl     SDXL: Down, CrossAttnDown / CrossAttnUp, Up; linear proj; transformer depth (1, 2) (mid: 2);
           addition_embed_type text_time (time_ids embedded with 8 channels each), pooled 32;
           layers_per_block 1; context 77 x 64
  inpaint  SD1-style with in_channels 9, layers_per_block 1
VAE cases (AutoencoderKL, mid-block attention, 8 groups):
  sd       block_out_channels (16, 32) (factor 2), scaling_factor 0.18215; also diffusers' tiled encode and
           decode with tile_sample_min_size 16, tile_latent_min_size 8, tile_overlap_factor 0.25
  sdxl     block_out_channels (16, 32, 32) (factor 4), scaling_factor 0.13025, force_upcast false

Weights are random (realistic scale), rounded to f16 and stored as F16 in both layouts; every reference is
computed in float32 (one CPU thread) from exactly those rounded weights. Head counts and group counts are
not recoverable from LDM tensor names; they are in each expected file's __metadata__ (and configs).

Both layouts are checked here: the diffusers folder is loaded back with from_pretrained, and the
single file with diffusers' own UNet2DConditionModel / AutoencoderKL.from_single_file(path,
config=<folder>, local_files_only=True), and the mapped state dict must equal the folder's exactly
and the outputs must match the stored ones bit for bit.

Expected tensors (F32). unet: x, t (one timestep per sample), context, [text_embeds, time_ids], out;
intermediates t_emb (sinusoidal, block_out_channels[0] wide), emb (time_embedding output), [time_ids_emb
(B, 6 * 8), aug_emb (add_embedding output), emb_total = emb + aug_emb, what the resnets get], conv_in,
down.<i> (block i's output after its downsampler), mid, up.<i> (after its upsampler). vae: image, enc.h
(encoder output), moments (quant_conv output = cat(mean, logvar)), mean, logvar, std, z, dec.post_quant,
decoded = decode(z).sample (no scaling_factor applied); sd only: tiled.image, tiled.moments, tiled.z,
tiled.decoded (enable_tiling with the sizes above; tiled() below writes the algorithm out and is checked
against diffusers bit for bit).

Run: tools/.venv/bin/python tools/gen_unet_vae_fixtures.py tests/fixtures
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import torch  # noqa: E402
import diffusers  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_safetensors  # noqa: E402

DT = {torch.float32: "F32", torch.float16: "F16", torch.int32: "I32"}

# ----------------------------------------------------------------------------------------- configs

SD1_DOWN = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
SD1_UP = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]

UNETS = {
    "sd1": dict(sample_size=16, in_channels=4, out_channels=4, down_block_types=SD1_DOWN, up_block_types=SD1_UP,
                block_out_channels=[16, 32, 32], layers_per_block=2, norm_num_groups=8, cross_attention_dim=32,
                attention_head_dim=2, use_linear_projection=False),
    "sd2": dict(sample_size=8, in_channels=4, out_channels=4,
                down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
                block_out_channels=[16, 32], layers_per_block=1, norm_num_groups=16, cross_attention_dim=48,
                attention_head_dim=[2, 4], use_linear_projection=True),
    "sdxl": dict(sample_size=8, in_channels=4, out_channels=4,
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
                 block_out_channels=[16, 32], layers_per_block=1, norm_num_groups=8, cross_attention_dim=64,
                 attention_head_dim=[2, 4], use_linear_projection=True, transformer_layers_per_block=[1, 2],
                 addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=32 + 6 * 8),
    "inpaint": dict(sample_size=8, in_channels=9, out_channels=4,
                    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
                    block_out_channels=[16, 32], layers_per_block=1, norm_num_groups=8, cross_attention_dim=32,
                    attention_head_dim=2, use_linear_projection=False),
}
# x shape, timesteps, context length, pooled width (sdxl), seed
UNET_INPUTS = {
    "sd1": ((2, 4, 12, 16), [999.0, 10.5], 77, None, 11),
    "sd2": ((2, 4, 8, 8), [500, 1], 11, None, 12),
    "sdxl": ((2, 4, 8, 12), [999.0, 0.5], 77, 32, 13),
    "inpaint": ((2, 9, 8, 8), [250.0, 750.0], 11, None, 14),
}
VAES = {
    "sd": dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
               up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[16, 32], layers_per_block=1,
               latent_channels=4, norm_num_groups=8, sample_size=32, scaling_factor=0.18215),
    "sdxl": dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 3,
                 up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[16, 32, 32], layers_per_block=1,
                 latent_channels=4, norm_num_groups=8, sample_size=32, scaling_factor=0.13025, force_upcast=False),
}
# image shape for encode, latent shape for decode, seed
VAE_INPUTS = {"sd": ((1, 3, 24, 32), (1, 4, 12, 16), 21), "sdxl": ((1, 3, 32, 24), (1, 4, 6, 8), 22)}
TILING = dict(tile_sample_min_size=16, tile_latent_min_size=8, tile_overlap_factor=0.25,
              encode_image=(1, 3, 24, 40), decode_latent=(1, 4, 12, 20))


# ----------------------------------------------------------------------------------------- helpers

def entry(t):
    t = t.detach().contiguous().cpu()
    return (DT[t.dtype], tuple(t.shape), t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes())


def randomize(m, seed):
    """Random weights of a realistic scale (unit-variance activations), rounded to f16."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 1 and ("norm" in name and name.endswith("weight")):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5))
            p.copy_(p.half().float())
    return m.eval()


def f16_state(m):
    return {k: v.half() for k, v in m.state_dict().items()}


def write_folder(m, d):
    os.makedirs(d, exist_ok=True)
    m.save_config(d)  # config.json: json.dumps(indent=2, sort_keys=True), deterministic
    write_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"),
                      {k: entry(v) for k, v in f16_state(m).items()}, {"format": "pt"})


def maxdiff(a, b):
    return (a.float() - b.float()).abs().max().item()


# ------------------------------------------------------------------ diffusers -> LDM (original) names

RESNET_UNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
RESNET_VAE = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
ATTN_VAE = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


class Mover:
    """Moves every tensor of a diffusers state dict to its LDM name; fails on leftovers."""

    def __init__(self, sd):
        self.sd, self.out = dict(sd), {}

    def move(self, dprefix, lprefix, rename=None):
        keys = [k for k in self.sd if k.startswith(dprefix + ".")]
        assert keys, dprefix
        for k in keys:
            rest = k[len(dprefix) + 1:]
            if rename is not None:
                head = next(h for h in sorted(rename, key=len, reverse=True) if rest.startswith(h + "."))
                rest = rename[head] + rest[len(head):]
            self.out[lprefix + "." + rest] = self.sd.pop(k)

    def done(self):
        assert not self.sd, "unmapped: %s" % sorted(self.sd)
        return self.out


def unet_to_ldm(sd, cfg):
    """The inverse of diffusers' convert_ldm_unet_checkpoint (names without model.diffusion_model.)."""
    mv, lpb, n = Mover(sd), cfg["layers_per_block"], len(cfg["block_out_channels"])
    mv.move("time_embedding.linear_1", "time_embed.0")
    mv.move("time_embedding.linear_2", "time_embed.2")
    if cfg.get("addition_embed_type") == "text_time":
        mv.move("add_embedding.linear_1", "label_emb.0.0")
        mv.move("add_embedding.linear_2", "label_emb.0.2")
    mv.move("conv_in", "input_blocks.0.0")
    for b in range(n):
        attn = cfg["down_block_types"][b].startswith("CrossAttn")
        for j in range(lpb):
            i = 1 + b * (lpb + 1) + j
            mv.move(f"down_blocks.{b}.resnets.{j}", f"input_blocks.{i}.0", RESNET_UNET)
            if attn:
                mv.move(f"down_blocks.{b}.attentions.{j}", f"input_blocks.{i}.1")
        if b < n - 1:
            mv.move(f"down_blocks.{b}.downsamplers.0.conv", f"input_blocks.{1 + b * (lpb + 1) + lpb}.0.op")
    mv.move("mid_block.resnets.0", "middle_block.0", RESNET_UNET)
    mv.move("mid_block.attentions.0", "middle_block.1")
    mv.move("mid_block.resnets.1", "middle_block.2", RESNET_UNET)
    for b in range(n):
        attn = cfg["up_block_types"][b].startswith("CrossAttn")
        for j in range(lpb + 1):
            i = b * (lpb + 1) + j
            mv.move(f"up_blocks.{b}.resnets.{j}", f"output_blocks.{i}.0", RESNET_UNET)
            if attn:
                mv.move(f"up_blocks.{b}.attentions.{j}", f"output_blocks.{i}.1")
        if b < n - 1:
            i = b * (lpb + 1) + lpb
            mv.move(f"up_blocks.{b}.upsamplers.0.conv", f"output_blocks.{i}.{2 if attn else 1}.conv")
    mv.move("conv_norm_out", "out.0")
    mv.move("conv_out", "out.2")
    return mv.done()


def vae_to_ldm(sd, cfg):
    """The inverse of diffusers' convert_ldm_vae_checkpoint (names without first_stage_model.)."""
    mv, n = Mover(sd), len(cfg["block_out_channels"])
    for part in ("encoder", "decoder"):
        mv.move(f"{part}.conv_in", f"{part}.conv_in")
        mv.move(f"{part}.conv_norm_out", f"{part}.norm_out")
        mv.move(f"{part}.conv_out", f"{part}.conv_out")
        mv.move(f"{part}.mid_block.resnets.0", f"{part}.mid.block_1", RESNET_VAE)
        mv.move(f"{part}.mid_block.attentions.0", f"{part}.mid.attn_1", ATTN_VAE)
    for i in range(n):
        for j in range(cfg["layers_per_block"]):
            mv.move(f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}", RESNET_VAE)
        if i < n - 1:
            mv.move(f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv")
        for j in range(cfg["layers_per_block"] + 1):
            mv.move(f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{n - 1 - i}.block.{j}", RESNET_VAE)
        if i < n - 1:
            mv.move(f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{n - 1 - i}.upsample.conv")
    for part in ("encoder", "decoder"):
        mv.move(f"{part}.mid_block.resnets.1", f"{part}.mid.block_2", RESNET_VAE)
    mv.move("quant_conv", "quant_conv")
    mv.move("post_quant_conv", "post_quant_conv")
    out = mv.done()
    for k in list(out):  # the original attention projections are 1x1 convolutions
        if ".mid.attn_1." in k and k.endswith("weight") and out[k].dim() == 2:
            out[k] = out[k][:, :, None, None].contiguous()
    return out


def check_mapping(converted, folder_sd, what):
    """diffusers' own LDM -> diffusers conversion must give back exactly the folder's tensors."""
    assert sorted(converted) == sorted(folder_sd), "%s: key sets differ: %s / %s" % (
        what, sorted(set(converted) - set(folder_sd)), sorted(set(folder_sd) - set(converted)))
    for k, v in folder_sd.items():
        c = converted[k]
        assert c.shape == v.shape and c.dtype == v.dtype and torch.equal(c, v), "%s: %s differs" % (what, k)


# ------------------------------------------------------------------------------------------- UNet

def unet_inputs(case, cfg):
    shape, ts, ctx_len, pooled, seed = UNET_INPUTS[case]
    g = torch.Generator().manual_seed(seed)
    inp = {"x": torch.randn(shape, generator=g),
           "t": torch.tensor(ts, dtype=torch.float32 if isinstance(ts[0], float) else torch.int64),
           "context": torch.randn((shape[0], ctx_len, cfg["cross_attention_dim"]), generator=g)}
    if pooled:
        inp["text_embeds"] = torch.randn((shape[0], pooled), generator=g)
        # (original h, w, crop top, left, target h, w), as SDXL pipelines pass them
        inp["time_ids"] = torch.tensor([[1024.0, 768.0, 0.0, 0.0, 1024.0, 768.0],
                                        [64.0, 96.0, 16.0, 8.0, 832.0, 1216.0]])
    return inp


def unet_run(m, inp):
    kw = {}
    if "text_embeds" in inp:
        kw["added_cond_kwargs"] = {"text_embeds": inp["text_embeds"], "time_ids": inp["time_ids"]}
    with torch.no_grad():
        return m(inp["x"], inp["t"], encoder_hidden_states=inp["context"], **kw).sample


def unet_reference(m, inp):
    """Output and intermediates, captured with forward hooks."""
    got, hooks = {}, []

    def grab(name, pick=lambda o: o):
        hooks.append(getattr_path(m, name).register_forward_hook(
            lambda mod, a, o: got.__setitem__(name, pick(o).detach().clone())))

    grab("time_proj")
    grab("time_embedding")
    if m.config.addition_embed_type == "text_time":
        grab("add_time_proj")
        grab("add_embedding")
    grab("conv_in")
    for i in range(len(m.down_blocks)):
        grab("down_blocks.%d" % i, lambda o: o[0])
    grab("mid_block")
    for i in range(len(m.up_blocks)):
        grab("up_blocks.%d" % i)
    out = unet_run(m, inp)
    for h in hooks:
        h.remove()
    exp = {"out": out, "t_emb": got["time_proj"], "emb": got["time_embedding"], "conv_in": got["conv_in"],
           "mid": got["mid_block"]}
    if "add_time_proj" in got:
        exp["time_ids_emb"] = got["add_time_proj"].reshape(inp["x"].shape[0], -1)
        exp["aug_emb"] = got["add_embedding"]
        exp["emb_total"] = got["time_embedding"] + got["add_embedding"]
    for i in range(len(m.down_blocks)):
        exp["down.%d" % i] = got["down_blocks.%d" % i]
    for i in range(len(m.up_blocks)):
        exp["up.%d" % i] = got["up_blocks.%d" % i]
    return exp


def getattr_path(m, path):
    for p in path.split("."):
        m = m[int(p)] if p.isdigit() else getattr(m, p)
    return m


def unet_meta(case, m, folder):
    c = m.config
    n = len(c.block_out_channels)
    heads = list(c.attention_head_dim) if isinstance(c.attention_head_dim, (list, tuple)) else [c.attention_head_dim] * n
    depth = list(c.transformer_layers_per_block) if isinstance(c.transformer_layers_per_block, (list, tuple)) \
        else [c.transformer_layers_per_block] * n
    attn = [t.startswith("CrossAttn") for t in c.down_block_types]
    return {
        "heads": json.dumps([h if a else None for h, a in zip(heads, attn)]),
        "head_dim": json.dumps([ch // h if a else None for ch, h, a in zip(c.block_out_channels, heads, attn)]),
        "mid_heads": json.dumps(heads[-1]),
        "mid_head_dim": json.dumps(c.block_out_channels[-1] // heads[-1]),
        "transformer_depth": json.dumps([d if a else 0 for d, a in zip(depth, attn)]),
        "mid_transformer_depth": json.dumps(depth[-1]),
        "norm_num_groups": str(c.norm_num_groups),
        "ldm_heads": {"sd1": "num_heads=2", "inpaint": "num_heads=2",
                      "sd2": "num_head_channels=8", "sdxl": "num_head_channels=8"}[case],
        "config": read_config(folder),
    }


# -------------------------------------------------------------------------------------------- VAE

def vae_reference(m, case):
    ishape, zshape, seed = VAE_INPUTS[case]
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(ishape, generator=g) * 2 - 1
    z = torch.randn(zshape, generator=g)
    exp = {"image": image, "z": z}
    with torch.no_grad():
        h = m.encoder(image)
        exp["enc.h"] = h
        moments = m.quant_conv(h)
        exp["moments"] = moments
        dist = m.encode(image).latent_dist
        exp["mean"], exp["logvar"], exp["std"] = dist.mean, dist.logvar, dist.std
        assert torch.equal(torch.cat([dist.mean, dist.logvar], 1), moments)  # logvar clamp(-30, 20) inactive
        exp["dec.post_quant"] = m.post_quant_conv(z)
        exp["decoded"] = m.decode(z).sample
    return exp


def vae_tiled(m, exp):
    g = torch.Generator().manual_seed(23)
    image = torch.rand(TILING["encode_image"], generator=g) * 2 - 1
    z = torch.randn(TILING["decode_latent"], generator=g)
    m.enable_tiling()
    m.tile_sample_min_size = TILING["tile_sample_min_size"]
    m.tile_latent_min_size = TILING["tile_latent_min_size"]
    m.tile_overlap_factor = TILING["tile_overlap_factor"]
    with torch.no_grad():
        dist = m.encode(image).latent_dist
        dec = m.decode(z).sample
        m.disable_tiling()
        plain = m.decode(z).sample
    exp.update({"tiled.image": image, "tiled.moments": torch.cat([dist.mean, dist.logvar], 1),
                "tiled.z": z, "tiled.decoded": dec})
    return maxdiff(dec, plain)


def vae_meta(m, folder):
    return {"norm_num_groups": str(m.config.norm_num_groups), "scaling_factor": repr(m.config.scaling_factor),
            "config": read_config(folder)}


def blend_weights(e, i):
    """The weights diffusers' blend_v / blend_h give row (column) i < e of the later tile: the earlier tile's
    row gets (1 - i/e), the later tile's own row i/e, both computed in double and used as float."""
    return 1 - i / e, i / e


def tiled(fn, x, in_tile, stride, blend, keep):
    """diffusers' tiled encode / decode written out: tiles of in_tile x in_tile at multiples of stride (clipped
    at the far edges), each mapped by fn alone; then, in raster order and IN PLACE, each tile's first rows are
    blended with the last rows of the (already blended) tile above, then its first columns with the last
    columns of the (already blended, uncropped) tile to its left; blend extent = min(blend, both sizes);
    finally each tile is cropped to its top-left keep x keep and the crops are concatenated."""
    H, W = x.shape[2], x.shape[3]
    rows = [[fn(x[:, :, i:i + in_tile, j:j + in_tile]).clone() for j in range(0, W, stride)]
            for i in range(0, H, stride)]
    for r, row in enumerate(rows):
        for c, b in enumerate(row):
            if r > 0:
                a = rows[r - 1][c]
                e = min(a.shape[2], b.shape[2], blend)
                for y in range(e):
                    wa, wb = blend_weights(e, y)
                    b[:, :, y, :] = a[:, :, a.shape[2] - e + y, :] * wa + b[:, :, y, :] * wb
            if c > 0:
                a = row[c - 1]
                e = min(a.shape[3], b.shape[3], blend)
                for xx in range(e):
                    wa, wb = blend_weights(e, xx)
                    b[:, :, :, xx] = a[:, :, :, a.shape[3] - e + xx] * wa + b[:, :, :, xx] * wb
    return torch.cat([torch.cat([b[:, :, :keep, :keep] for b in row], 3) for row in rows], 2)


def check_tiling_formula(m, exp):
    S, L, f = TILING["tile_sample_min_size"], TILING["tile_latent_min_size"], TILING["tile_overlap_factor"]
    with torch.no_grad():
        dec = tiled(lambda t: m.decoder(m.post_quant_conv(t)), exp["tiled.z"], L, int(L * (1 - f)), int(S * f),
                    S - int(S * f))
        enc = tiled(lambda t: m.quant_conv(m.encoder(t)), exp["tiled.image"], S, int(S * (1 - f)), int(L * f),
                    L - int(L * f))
    return maxdiff(dec, exp["tiled.decoded"]), maxdiff(enc, exp["tiled.moments"])


def vae_run_all(m, exp):
    """Outputs of a loaded VAE on the stored inputs, for the layout checks."""
    with torch.no_grad():
        dist = m.encode(exp["image"]).latent_dist
        r = {"moments": torch.cat([dist.mean, dist.logvar], 1), "decoded": m.decode(exp["z"]).sample}
        if "tiled.z" in exp:
            m.enable_tiling()
            m.tile_sample_min_size = TILING["tile_sample_min_size"]
            m.tile_latent_min_size = TILING["tile_latent_min_size"]
            m.tile_overlap_factor = TILING["tile_overlap_factor"]
            dist = m.encode(exp["tiled.image"]).latent_dist
            r["tiled.moments"] = torch.cat([dist.mean, dist.logvar], 1)
            r["tiled.decoded"] = m.decode(exp["tiled.z"]).sample
            m.disable_tiling()
    return r


# ------------------------------------------------------------------------------------------- main

def read_config(folder):
    with open(os.path.join(folder, "config.json")) as f:
        return json.dumps(json.load(f), sort_keys=True, separators=(",", ":"))


def size_of(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def main(out_root):
    torch.set_num_threads(1)  # fixed reduction order: the same bytes on every regeneration
    torch.use_deterministic_algorithms(True)
    gen = "tools/gen_unet_vae_fixtures.py diffusers %s torch %s" % (diffusers.__version__, torch.__version__)
    udir, vdir = os.path.join(out_root, "unet"), os.path.join(out_root, "vae")
    os.makedirs(udir, exist_ok=True)
    os.makedirs(vdir, exist_ok=True)
    report = []

    # VAEs first: the "sd" VAE goes into unet/sd1.safetensors
    vae_ldm = {}
    for vi, (case, cfg) in enumerate(VAES.items()):
        m = randomize(AutoencoderKL(**cfg), 200 + vi)
        folder = os.path.join(vdir, case, "vae")
        write_folder(m, folder)
        exp = vae_reference(m, case)
        tiled_vs_plain = vae_tiled(m, exp) if case == "sd" else None
        if tiled_vs_plain is not None:
            dd, de = check_tiling_formula(m, exp)
            print("vae %s: tiling formula written out vs diffusers: decode %.3g, encode %.3g" % (case, dd, de))
            assert dd == 0.0 and de == 0.0
        ldm = vae_to_ldm(f16_state(m), dict(m.config))
        vae_ldm[case] = ldm
        meta = vae_meta(m, folder)
        meta["generator"] = gen
        meta["ldm_file"] = "unet/sd1.safetensors (first_stage_model.*)" if case == "sd" else \
            "vae/sdxl.safetensors (no prefix)"
        if tiled_vs_plain is not None:
            meta["tiling"] = json.dumps({k: TILING[k] for k in
                                         ("tile_sample_min_size", "tile_latent_min_size", "tile_overlap_factor")})
        write_safetensors(os.path.join(vdir, case + ".expected.safetensors"),
                          {k: entry(v.float()) for k, v in exp.items()}, meta)
        if case == "sdxl":
            write_safetensors(os.path.join(vdir, "sdxl.safetensors"), {k: entry(v) for k, v in ldm.items()}, {})
        report.append(("vae", case, m, exp, folder, tiled_vs_plain))

    for ui, (case, cfg) in enumerate(UNETS.items()):
        m = randomize(UNet2DConditionModel(**cfg), 100 + ui)
        folder = os.path.join(udir, case, "unet")
        write_folder(m, folder)
        inp = unet_inputs(case, cfg)
        exp = dict(inp)
        exp.update(unet_reference(m, inp))
        ldm = {"model.diffusion_model." + k: v for k, v in unet_to_ldm(f16_state(m), dict(m.config)).items()}
        if case == "sd1":
            ldm.update({"first_stage_model." + k: v for k, v in vae_ldm["sd"].items()})
        write_safetensors(os.path.join(udir, case + ".safetensors"), {k: entry(v) for k, v in ldm.items()}, {})
        meta = unet_meta(case, m, folder)
        meta["generator"] = gen
        write_safetensors(os.path.join(udir, case + ".expected.safetensors"),
                          {k: entry(v.float()) for k, v in exp.items()}, meta)
        report.append(("unet", case, m, exp, folder, None))

    # ------------------------------------------------------------------ checks of both layouts
    print("%-5s %-8s %9s %9s %9s  %-12s %-12s %-12s %s" % (
        "kind", "case", "folder", "single", "expected", "|folder-ref|", "|single-ref|", "|single-fold|", "|out|max"))
    for kind, case, m, exp, folder, tiled_vs_plain in report:
        if kind == "unet":
            single = os.path.join(udir, case + ".safetensors")
            fm = UNet2DConditionModel.from_pretrained(folder, local_files_only=True).eval()
            sm = UNet2DConditionModel.from_single_file(single, config=folder, local_files_only=True).eval()
            check_mapping(convert_ldm_unet_checkpoint(load_file(single), dict(fm.config)),
                          load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors")), case)
            for mm in (fm, sm):
                assert all(p.dtype == torch.float32 for p in mm.parameters())
                for (k, a), b in zip(mm.state_dict().items(), m.state_dict().values()):
                    assert torch.equal(a, b), (case, k)
            inp = {k: exp[k] for k in ("x", "t", "context", "text_embeds", "time_ids") if k in exp}
            fo, so = unet_run(fm, inp), unet_run(sm, inp)
            dref, dsf, dsfo = maxdiff(fo, exp["out"]), maxdiff(so, exp["out"]), maxdiff(so, fo)
            sizes = (size_of(os.path.dirname(folder)), size_of(single),
                     size_of(os.path.join(udir, case + ".expected.safetensors")))
            big = exp["out"].abs().max().item()
        else:
            single = os.path.join(udir, "sd1.safetensors") if case == "sd" else os.path.join(vdir, "sdxl.safetensors")
            fm = AutoencoderKL.from_pretrained(folder, local_files_only=True).eval()
            sm = AutoencoderKL.from_single_file(single, config=folder, local_files_only=True).eval()
            check_mapping(convert_ldm_vae_checkpoint(load_file(single), dict(fm.config)),
                          load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors")), case)
            for mm in (fm, sm):
                assert all(p.dtype == torch.float32 for p in mm.parameters())
                for (k, a), b in zip(mm.state_dict().items(), m.state_dict().values()):
                    assert torch.equal(a, b), (case, k)
            fo, so = vae_run_all(fm, exp), vae_run_all(sm, exp)
            dref = max(maxdiff(fo[k], exp[k]) for k in fo)
            dsf = max(maxdiff(so[k], exp[k]) for k in so)
            dsfo = max(maxdiff(so[k], fo[k]) for k in so)
            sizes = (size_of(os.path.dirname(folder)), size_of(single) if case == "sdxl" else 0,
                     size_of(os.path.join(vdir, case + ".expected.safetensors")))
            big = exp["decoded"].abs().max().item()
        print("%-5s %-8s %9d %9d %9d  %-12.3g %-12.3g %-12.3g %.3g" % ((kind, case) + sizes + (dref, dsf, dsfo, big)))
        if tiled_vs_plain is not None:
            print("      %s: max |tiled decode - plain decode| = %.3g (tiles differ, as expected)" % (case, tiled_vs_plain))
        assert dref == 0.0 and dsf == 0.0 and dsfo == 0.0, (kind, case, dref, dsf, dsfo)
    print("total: unet %d bytes, vae %d bytes" % (size_of(udir), size_of(vdir)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")

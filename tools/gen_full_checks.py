"""Full-size random-weight reference models for `make check-full` (not
committed: written under build/check-full, about 0.5 GB).

  clip_vitl/text_encoder   transformers' CLIPTextModel with ViT-L/14's
                           configuration (SD1.x), f16 weights, diffusers layout
  clip_vitl/expected.safetensors  ids (batch 2: EOS- and 0-padded) and its outputs
  sd15/unet, sd15/vae      diffusers' UNet2DConditionModel and AutoencoderKL with
                           SD1.5's configuration, random f16 weights
  sd15/expected.safetensors  one CFG-batch UNet step at 64x64 latents and one
                           VAE decode of 64x64 latents
  dit_xl2/transformer      DiT-XL/2-256 (depth 28, hidden 1152, 16 heads of 72,
                           patch 2, 32x32x4 latents, 1000 classes + null,
                           learn_sigma), random f16 weights, diffusers folder
                           (legacy "Transformer2DModel" config.json, as the Hub's)
  dit_xl2/DiT-XL-2-256.safetensors  the same weights in the original DiT layout
                           (tools/gen_dit_fixtures.py; about 2.9 GB for both)
  dit_xl2/expected.safetensors  one forward at batch 2 and its intermediates

Run: tools/.venv/bin/python tools/gen_full_checks.py build/check-full
"""
import json
import os
import sys

import torch
from transformers import CLIPTextConfig, CLIPTextModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_safetensors  # noqa: E402

DT = {torch.float32: "F32", torch.float16: "F16", torch.int32: "I32"}


def entry(t):
    t = t.detach().contiguous()
    return (DT[t.dtype], tuple(t.shape), t.numpy().tobytes())


def randomize(m, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5 if p.dim() > 1 else 1.0))
            p.copy_(p.half().float())


def save_folder(m, d):
    os.makedirs(d, exist_ok=True)
    sd = {k: v.half() for k, v in m.state_dict().items()}
    write_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"), {k: entry(v) for k, v in sd.items()}, {})
    m.save_config(d)


def sd15(out):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    d = os.path.join(out, "sd15")
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8).eval()
    randomize(unet, 10)
    save_folder(unet, os.path.join(d, "unet"))
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                        sample_size=512).eval()
    randomize(vae, 11)
    save_folder(vae, os.path.join(d, "vae"))
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 64, 64, generator=g)
    t = torch.tensor([981.0, 981.0])
    ctx = torch.randn(2, 77, 768, generator=g)
    z = torch.randn(1, 4, 64, 64, generator=g)
    with torch.no_grad():
        y = unet(x, t, encoder_hidden_states=ctx).sample
        img = vae.decode(z).sample
    exp = {"x": x, "t": t, "context": ctx, "out": y, "z": z, "decoded": img}
    write_safetensors(os.path.join(d, "expected.safetensors"), {k: entry(v.float()) for k, v in exp.items()}, {})


def dit_xl2(out):
    """DiT-XL/2-256 with random weights (every one, adaLN-Zero's included; tied per-block embedder copies),
    in both layouts, the layout conversion checked as tools/gen_dit_fixtures.py checks it, and one
    diffusers forward at batch 2 (the second label is the null class 1000)."""
    import gen_dit_fixtures as gd
    from diffusers import DiTTransformer2DModel
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    d = os.path.join(out, "dit_xl2")
    cfg = gd.XL2
    m = gd.randomize_dit(DiTTransformer2DModel(**cfg), 20)
    folder = os.path.join(d, "transformer")
    gd.write_dit_folder(m, cfg, "Transformer2DModel", folder)
    T = (cfg["sample_size"] // cfg["patch_size"]) ** 2
    orig_path = os.path.join(d, "DiT-XL-2-256.safetensors")
    orig = gd.diffusers_to_original(gd.f16_state(m), cfg["num_layers"], T)
    write_safetensors(orig_path, {k: gd.entry(v) for k, v in orig.items()}, {"format": "pt"})
    del orig
    worst, _ = gd.check_layout(load_file(orig_path),
                               load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors")), cfg, "dit_xl2")
    g = torch.Generator().manual_seed(30)
    x = torch.randn((2, 4, 32, 32), generator=g)
    t = torch.tensor([999.0, 250.5])
    y = torch.tensor([207, 1000])
    ref = gd.dit_reference(m, x, t, y)
    keep = ("t_freq", "t_emb", "y_emb", "c", "tokens", "block.0", "block.13", "block.27", "final.tokens", "out")
    exp = {"x": x, "t": t, "y": y.to(torch.int32)}
    exp.update({k: ref[k] for k in keep})
    meta = {"config": json.dumps(cfg, sort_keys=True), "layout_check_max_abs_diff": repr(worst),
            "original_file": "DiT-XL-2-256.safetensors", "null_class": "1000"}
    write_safetensors(os.path.join(d, "expected.safetensors"), {k: gd.entry(v) for k, v in exp.items()}, meta)
    print("dit_xl2: |out| max %.3g std %.3g, layout check max |diff| %g" % (
        ref["out"].abs().max().item(), ref["out"].std().item(), worst))


def main(out):
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                         layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    m = CLIPTextModel(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5 if p.dim() > 1 else 1.0))
            p.copy_(p.half().float())
    d = os.path.join(out, "clip_vitl", "text_encoder")
    os.makedirs(d, exist_ok=True)
    sd = {k: v.half() for k, v in m.state_dict().items() if "position_ids" not in k}
    write_safetensors(os.path.join(d, "model.safetensors"), {k: entry(v) for k, v in sd.items()}, {})
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(cfg.to_json_string())
    g = torch.Generator().manual_seed(1)
    ids = torch.full((2, 77), 49407, dtype=torch.int32)
    ids[:, 0] = 49406
    ids[0, 1:20] = torch.randint(0, 49406, (19,), generator=g)
    ids[1, 1:76] = torch.randint(0, 49406, (75,), generator=g)
    with torch.no_grad():
        o = m(input_ids=ids.long(), output_hidden_states=True)
    exp = {"ids": ids, "last": o.last_hidden_state, "pooled": o.pooler_output,
           "penult_ln": m.text_model.final_layer_norm(o.hidden_states[-2])}
    write_safetensors(os.path.join(out, "clip_vitl", "expected.safetensors"),
                      {k: entry(v if v.dtype == torch.int32 else v.float()) for k, v in exp.items()}, {})
    sd15(out)
    dit_xl2(out)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/check-full")

"""Full-size random-weight models for `make bench-full` (not committed; cached
under build/bench-models, about 25 GB in all).

  sd15/            SD1.5: diffusers folder (unet, vae, text_encoder = CLIP ViT-L/14,
                   tokenizer, scheduler, model_index.json), f16 weights
  sd15.safetensors the same weights as one single-file LDM checkpoint
                   (model.diffusion_model.*, first_stage_model.*,
                   cond_stage_model.transformer.text_model.*)
  sd21b/, sd21b.safetensors   SD2.1-base: UNet with linear projections and
                   heads of 64, context 1024; OpenCLIP ViT-H/14 text encoder
                   (24 blocks in the single file, as OpenCLIP ships it; 23 in
                   the folder, as the Hub's diffusers export: SD2 uses the
                   penultimate block)
  sdxl/, sdxl.safetensors     SDXL base: UNet (320, 640, 1280), transformer
                   depth (1, 2, 10), text_time conditioning; CLIP ViT-L/14 and
                   OpenCLIP ViT-bigG/14 (conditioner.embedders.0 / .1)
  dit_xl2/         DiT-XL/2-256, both layouts, from tools/gen_full_checks.py

The configurations are the published ones, written out here so that nothing
is downloaded. Weights are random (fan-in scaled, so activations stay finite
through every block) and rounded to f16; the layouts are converted with the
inverse mappings checked in tools/gen_unet_vae_fixtures.py and
tools/gen_clip_fixtures.py.

Run: tools/.venv/bin/python tools/gen_bench_models.py build/bench-models [sd15 sd21b sdxl dit_xl2]
"""
import json
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fixture_io  # noqa: E402

TOKENIZER = os.path.join(HERE, "..", "models", "tiny-shapes", "tokenizer")
DT = {torch.float32: "F32", torch.float16: "F16"}

CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
CLIP_H = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
              num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=1024)
CLIP_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
              num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)

SD_VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
              up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
              latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
SD1_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                block_out_channels=[320, 640, 1280, 1280], cross_attention_dim=768, attention_head_dim=8,
                down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3)
SD2_UNET = dict(SD1_UNET, cross_attention_dim=1024, attention_head_dim=[5, 10, 20, 20], use_linear_projection=True)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=[320, 640, 1280], cross_attention_dim=2048, attention_head_dim=[5, 10, 20],
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                 transformer_layers_per_block=[1, 2, 10], use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
SCHEDULER = {"_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
             "steps_offset": 1, "timestep_spacing": "leading"}


def randomize(m, seed):
    """Fan-in scaled normal weights, norms near 1, small biases; rounded to f16."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            elif p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g))
            p.copy_(p.half().float())
    return m


def half_state(m, drop=()):
    """A module's state dict in f16 (position_ids buffers and the prefixes in drop left out)."""
    return {k: v.detach().half() for k, v in m.state_dict().items()
            if "position_ids" not in k and not any(k.startswith(d) for d in drop)}


def clip_state(te):
    """A CLIP text model's f16 state dict under the Hub's names (text_model.*, text_projection.weight), which
    the checkpoints people have use: transformers 5 leaves the text_model. prefix out of its own."""
    return {(k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k): v
            for k, v in half_state(te).items()}


def prefixed(sd, prefix):
    return {prefix + k: v for k, v in sd.items()}


def write_safetensors(path, tensors, metadata):
    fixture_io.write_safetensors(path, {k: (DT[t.dtype], tuple(t.shape), t) for k, t in tensors.items()}, metadata)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def write_component(root, sub, m, sd, weights_name, config=None):
    d = os.path.join(root, sub)
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, weights_name), sd, {"format": "pt"})
    if config is not None:
        write_json(os.path.join(d, "config.json"), config)
    else:
        m.save_config(d)


def write_tokenizer(root, sub, pad):
    d = os.path.join(root, sub)
    os.makedirs(d, exist_ok=True)
    for f in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZER, f), d)
    cfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
    cfg["pad_token"] = pad
    write_json(os.path.join(d, "tokenizer_config.json"), cfg)


def clip(cfg, seed, projection=False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    c = CLIPTextConfig(layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407, pad_token_id=1, **cfg)
    return randomize((CLIPTextModelWithProjection if projection else CLIPTextModel)(c).eval(), seed), c


def clip_folder_config(c, layers, cls):
    d = c.to_dict()
    d["num_hidden_layers"] = layers
    d["architectures"] = [cls]
    d["torch_dtype"] = "float16"
    return d


def unet_vae(unet_cfg, vae_cfg, seed):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    return randomize(UNet2DConditionModel(**unet_cfg).eval(), seed), \
        randomize(AutoencoderKL(**vae_cfg).eval(), seed + 1)


def build(root, name):
    import gen_clip_fixtures as gc
    import gen_unet_vae_fixtures as gu
    folder, single = os.path.join(root, name), os.path.join(root, name + ".safetensors")
    unet_cfg = {"sd15": SD1_UNET, "sd21b": SD2_UNET, "sdxl": SDXL_UNET}[name]
    vae_cfg = dict(SD_VAE, scaling_factor=0.13025, force_upcast=True) if name == "sdxl" else SD_VAE
    seed = {"sd15": 100, "sd21b": 200, "sdxl": 300}[name]
    ldm, index = {}, {"_class_name": "StableDiffusionXLPipeline" if name == "sdxl" else "StableDiffusionPipeline",
                      "_diffusers_version": "0.32.2", "scheduler": ["diffusers", "EulerDiscreteScheduler"],
                      "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    unet, vae = unet_vae(unet_cfg, vae_cfg, seed)
    usd, vsd = half_state(unet), half_state(vae)
    write_component(folder, "unet", unet, usd, "diffusion_pytorch_model.safetensors")
    write_component(folder, "vae", vae, vsd, "diffusion_pytorch_model.safetensors")
    ldm.update(prefixed(gu.unet_to_ldm(usd, dict(unet.config)), "model.diffusion_model."))
    ldm.update(prefixed(gu.vae_to_ldm(vsd, dict(vae.config)), "first_stage_model."))
    del unet, vae, usd, vsd
    if name == "sd15":
        te, c = clip(CLIP_L, seed + 2)
        sd = clip_state(te)
        write_component(folder, "text_encoder", te, sd, "model.safetensors",
                        clip_folder_config(c, 12, "CLIPTextModel"))
        ldm.update(prefixed(sd, "cond_stage_model.transformer."))
        write_tokenizer(folder, "tokenizer", "<|endoftext|>")
        index.update(text_encoder=["transformers", "CLIPTextModel"], tokenizer=["transformers", "CLIPTokenizer"])
    elif name == "sd21b":
        te, c = clip(CLIP_H, seed + 2, projection=True)
        sd = clip_state(te)
        oc = gc.to_openclip(sd, CLIP_H["hidden_size"], CLIP_H["num_hidden_layers"])
        ldm.update(prefixed(oc, "cond_stage_model.model."))
        last = "text_model.encoder.layers.%d." % (CLIP_H["num_hidden_layers"] - 1)
        sd = {k: v for k, v in sd.items() if not k.startswith(last) and k != "text_projection.weight"}
        write_component(folder, "text_encoder", te, sd, "model.safetensors",
                        clip_folder_config(c, CLIP_H["num_hidden_layers"] - 1, "CLIPTextModel"))
        write_tokenizer(folder, "tokenizer", "!")
        index.update(text_encoder=["transformers", "CLIPTextModel"], tokenizer=["transformers", "CLIPTokenizer"])
    else:
        te, c = clip(CLIP_L, seed + 2)
        sd = clip_state(te)
        write_component(folder, "text_encoder", te, sd, "model.safetensors",
                        clip_folder_config(c, 12, "CLIPTextModel"))
        ldm.update(prefixed(sd, "conditioner.embedders.0.transformer."))
        te2, c2 = clip(CLIP_G, seed + 3, projection=True)
        sd2 = clip_state(te2)
        write_component(folder, "text_encoder_2", te2, sd2, "model.safetensors",
                        clip_folder_config(c2, CLIP_G["num_hidden_layers"], "CLIPTextModelWithProjection"))
        ldm.update(prefixed(gc.to_openclip(sd2, CLIP_G["hidden_size"], CLIP_G["num_hidden_layers"]),
                           "conditioner.embedders.1.model."))
        write_tokenizer(folder, "tokenizer", "<|endoftext|>")
        write_tokenizer(folder, "tokenizer_2", "!")
        index.update(text_encoder=["transformers", "CLIPTextModel"], tokenizer=["transformers", "CLIPTokenizer"],
                     text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
                     tokenizer_2=["transformers", "CLIPTokenizer"])
    os.makedirs(os.path.join(folder, "scheduler"), exist_ok=True)
    write_json(os.path.join(folder, "scheduler", "scheduler_config.json"), SCHEDULER)
    write_json(os.path.join(folder, "model_index.json"), index)
    write_safetensors(single, ldm, {"format": "pt", "modelspec.prediction_type": "epsilon"})
    print("%s: %s and %s" % (name, folder, single), flush=True)


def main(root, names):
    torch.set_num_threads(os.cpu_count() or 1)
    os.makedirs(root, exist_ok=True)
    for name in names:
        if name == "dit_xl2":
            if not os.path.exists(os.path.join(root, "dit_xl2", "DiT-XL-2-256.safetensors")):
                import gen_full_checks
                gen_full_checks.dit_xl2(root)
            continue
        if os.path.exists(os.path.join(root, name + ".safetensors")):
            print("%s: cached" % name)
            continue
        build(root, name)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/bench-models",
         sys.argv[2:] or ["sd15", "sd21b", "sdxl", "dit_xl2"])

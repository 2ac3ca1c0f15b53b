"""Tiny random-weight CLIP text encoders in every layout difusa reads, and
transformers' outputs for them (tests/fixtures/clip).

  hf/text_encoder/        diffusers folder: CLIPTextModel (config.json, 4 heads, quick_gelu)
  hf_proj/text_encoder_2/ diffusers folder: CLIPTextModelWithProjection (gelu), as SDXL's second encoder
  sd1.safetensors         single-file LDM: cond_stage_model.transformer.text_model.* (1 head of 64)
  openclip.safetensors    single-file LDM, OpenCLIP names: cond_stage_model.model.* with fused
                          in_proj, positional_embedding, ln_final and text_projection (W, P)
  expected.safetensors    ids and the reference outputs
  cond_sd1.safetensors    single-file SD1 text encoder with the full CLIP vocabulary (4 wide)
  cond_sdxl.safetensors   single-file SDXL pair: conditioner.embedders.0 (ViT-L layout, 4 wide)
                          and .1 (OpenCLIP bigG layout, 8 wide, projection 6)
  cond.expected.safetensors  prompt -> conditioning as AUTOMATIC1111 computes it: tokens
                          from transformers' CLIPTokenizer per emphasis segment, chunks of 75,
                          BREAK, EOS / 0 padding, the family's hidden state, emphasis with
                          the chunk mean restored, chunks joined; SDXL's pooled output

Weights are stored in f16 (f32 for the position table, as OpenCLIP keeps
it), and the references are computed in float32 from exactly those weights.
Run: tools/.venv/bin/python tools/gen_clip_fixtures.py tests/fixtures
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_safetensors  # noqa: E402

VOCAB, BOS, EOS = 512, 510, 511
DT = {torch.float32: "F32", torch.float16: "F16", torch.int32: "I32"}


def entry(t):
    t = t.detach().contiguous()
    return (DT[t.dtype], tuple(t.shape), t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes())


def config(width, heads, act, proj=None, layers=2):
    kw = dict(vocab_size=VOCAB, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
              num_attention_heads=heads, max_position_embeddings=77, hidden_act=act, layer_norm_eps=1e-5,
              bos_token_id=BOS, eos_token_id=EOS, pad_token_id=0)
    if proj:
        kw["projection_dim"] = proj
    return CLIPTextConfig(**kw)


def build(cls, cfg, seed):
    torch.manual_seed(seed)
    m = cls(cfg).eval()
    with torch.no_grad():  # random weights of a realistic scale, then rounded to f16
        for name, p in m.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5 if p.dim() > 1 else 1.0))
            p.copy_(p.half().float())
    return m


def state(m, keep_f32=()):
    return {k: (v.float() if any(s in k for s in keep_f32) else v.half()) for k, v in m.state_dict().items()
            if "position_ids" not in k}


def ids_batch():
    g = torch.Generator().manual_seed(7)
    a = torch.full((77,), EOS, dtype=torch.int32)  # padded with EOS (CLIP ViT-L)
    a[0] = BOS
    a[1:12] = torch.randint(1, BOS, (11,), generator=g)
    b = torch.zeros(77, dtype=torch.int32)  # padded with 0 (OpenCLIP)
    b[0] = BOS
    b[1:30] = torch.randint(1, BOS, (29,), generator=g)
    b[30] = EOS
    return torch.stack([a, b])


def outputs(m, ids, prefix, exp, proj):
    with torch.no_grad():
        o = m(input_ids=ids.long(), output_hidden_states=True)
    tm = m.text_model
    exp[prefix + ".last"] = o.last_hidden_state
    exp[prefix + ".penult"] = o.hidden_states[-2]
    exp[prefix + ".penult_ln"] = tm.final_layer_norm(o.hidden_states[-2])
    if proj:
        exp[prefix + ".pooled"] = o.text_embeds
    else:
        exp[prefix + ".pooled"] = o.pooler_output


def to_openclip(sd, width, layers):
    """transformers' CLIPTextModelWithProjection names -> OpenCLIP's (as in SD2 / SDXL checkpoints)."""
    p, o = "text_model.", {}
    o["token_embedding.weight"] = sd[p + "embeddings.token_embedding.weight"]
    o["positional_embedding"] = sd[p + "embeddings.position_embedding.weight"].float()
    for i in range(layers):
        s, d = f"{p}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        o[d + "attn.in_proj_weight"] = torch.cat([sd[s + f"self_attn.{n}_proj.weight"] for n in "qkv"])
        o[d + "attn.in_proj_bias"] = torch.cat([sd[s + f"self_attn.{n}_proj.bias"] for n in "qkv"])
        for a, b in [("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                     ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]:
            o[d + b + ".weight"] = sd[s + a + ".weight"]
            o[d + b + ".bias"] = sd[s + a + ".bias"]
    o["ln_final.weight"] = sd[p + "final_layer_norm.weight"]
    o["ln_final.bias"] = sd[p + "final_layer_norm.bias"]
    o["text_projection"] = sd["text_projection.weight"].t().contiguous()
    return o


# ---- prompt conditioning, A1111's way, for a few prompts whose emphasis
# segments are written out by hand (so this does not reimplement the parser) ----

COND_PROMPTS = [
    ("a photo of a cat", [("a photo of a cat", 1.0)]),
    ("a (red:1.5) cat, [blue] sky", [("a ", 1.0), ("red", 1.5), (" cat, ", 1.0), ("blue", 1 / 1.1), (" sky", 1.0)]),
    ("((masterpiece)) dog BREAK green field", [("masterpiece", 1.1 * 1.1), (" dog ", 1.0), None, (" green field", 1.0)]),
    ("cat " * 100, [("cat " * 100, 1.0)]),
]


def reference_tokenizer():
    import tempfile
    from transformers import CLIPTokenizer
    import gen_tokenizer_fixtures as gt
    merges = gt.standard_merges()
    d = tempfile.mkdtemp()
    vp, mp = gt.write_pair(d, gt.standard_vocab(merges), merges)
    return CLIPTokenizer(vp, mp)


def chunks_for(tok, segments, pad_eos):
    """A1111's tokenize_line for segments without commas near chunk ends: 75 per chunk, BREAK = new chunk."""
    chunks, cur, curw = [], [], []

    def flush():
        ids = [49406] + cur + [49407]
        w = [1.0] + curw + [1.0]
        while len(ids) < 77:
            ids.append(49407 if pad_eos else 0)
            w.append(1.0)
        chunks.append((ids, w))

    for seg in segments:
        if seg is None:
            flush()
            cur, curw = [], []
            continue
        text, weight = seg
        for t in tok(text, add_special_tokens=False)["input_ids"]:
            if len(cur) == 75:
                flush()
                cur, curw = [], []
            cur.append(t)
            curw.append(weight)
    if cur or not chunks:
        flush()
    return chunks


def emphasis(z, w):
    original_mean = z.mean()
    z = z * torch.tensor(w, dtype=torch.float32).reshape(1, -1, 1)
    return z * (original_mean / z.mean())


def encode(model, ids, layer, final_norm):
    with torch.no_grad():
        o = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    h = o.hidden_states[layer]
    return (model.text_model.final_layer_norm(h) if final_norm else h), o


def gen_cond(out, exp):
    tok = reference_tokenizer()
    vl = build(CLIPTextModel, CLIPTextConfig(vocab_size=49408, hidden_size=4, intermediate_size=8, num_hidden_layers=2,
                                             num_attention_heads=1, max_position_embeddings=77, hidden_act="quick_gelu",
                                             eos_token_id=49407, bos_token_id=49406), 21)
    bg = build(CLIPTextModelWithProjection, CLIPTextConfig(vocab_size=49408, hidden_size=8, intermediate_size=16,
                                                           num_hidden_layers=2, num_attention_heads=1,
                                                           max_position_embeddings=77, hidden_act="gelu",
                                                           projection_dim=6, eos_token_id=49407,
                                                           bos_token_id=49406), 22)
    sd1 = {"cond_stage_model.transformer." + k: v for k, v in state(vl).items()}
    write_safetensors(os.path.join(out, "cond_sd1.safetensors"), {k: entry(v) for k, v in sd1.items()}, {})
    sdxl = {"conditioner.embedders.0.transformer." + k: v for k, v in state(vl).items()}
    sdxl.update({"conditioner.embedders.1.model." + k: v for k, v in to_openclip(state(bg), 8, 2).items()})
    write_safetensors(os.path.join(out, "cond_sdxl.safetensors"), {k: entry(v) for k, v in sdxl.items()}, {})
    for i, (prompt, segments) in enumerate(COND_PROMPTS):
        # SD1: last layer, final norm, EOS padding
        zs = [emphasis(encode(vl, ids, -1, True)[0], w) for ids, w in chunks_for(tok, segments, True)]
        exp["cond.%d.sd1" % i] = torch.cat(zs, dim=1)
        # SDXL: penultimate states of both, no final norm; bigG pads with 0; pooled from the first chunk
        zl = [emphasis(encode(vl, ids, -2, False)[0], w) for ids, w in chunks_for(tok, segments, True)]
        zg, pooled = [], None
        for ids, w in chunks_for(tok, segments, False):
            h, o = encode(bg, ids, -2, False)
            zg.append(emphasis(h, w))
            pooled = o.text_embeds if pooled is None else pooled
        exp["cond.%d.sdxl" % i] = torch.cat([torch.cat(zl, dim=1), torch.cat(zg, dim=1)], dim=2)
        exp["cond.%d.sdxl_pooled" % i] = pooled
    return [p for p, _ in COND_PROMPTS]


def main(out_root):
    out = os.path.join(out_root, "clip")
    ids = ids_batch()
    exp = {"ids": ids}

    # diffusers folder, CLIPTextModel, 4 heads of 16
    cfg = config(64, 4, "quick_gelu")
    m = build(CLIPTextModel, cfg, 1)
    d = os.path.join(out, "hf", "text_encoder")
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "model.safetensors"), {k: entry(v) for k, v in state(m).items()}, {})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(json.loads(cfg.to_json_string()), f, indent=1, sort_keys=True)
    outputs(m, ids, "hf", exp, False)

    # diffusers folder, CLIPTextModelWithProjection (SDXL's text_encoder_2 layout)
    cfg = config(64, 4, "gelu", proj=48)
    m = build(CLIPTextModelWithProjection, cfg, 2)
    d = os.path.join(out, "hf_proj", "text_encoder_2")
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "model.safetensors"), {k: entry(v) for k, v in state(m).items()}, {})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(json.loads(cfg.to_json_string()), f, indent=1, sort_keys=True)
    outputs(m, ids, "hf_proj", exp, True)

    # single-file SD1 layout: heads are not stored, so difusa uses width / 64
    cfg = config(64, 1, "quick_gelu")
    m = build(CLIPTextModel, cfg, 3)
    sd = {"cond_stage_model.transformer." + k: v for k, v in state(m).items()}
    write_safetensors(os.path.join(out, "sd1.safetensors"), {k: entry(v) for k, v in sd.items()}, {})
    outputs(m, ids, "sd1", exp, False)

    # single-file OpenCLIP layout (SD2 / SDXL's bigG), gelu, 2 heads of 64, projection
    cfg = config(128, 2, "gelu", proj=96)
    m = build(CLIPTextModelWithProjection, cfg, 4)
    sd = {"cond_stage_model.model." + k: v for k, v in to_openclip(state(m), 128, 2).items()}
    write_safetensors(os.path.join(out, "openclip.safetensors"), {k: entry(v) for k, v in sd.items()}, {})
    outputs(m, ids, "openclip", exp, True)

    # A1111 emphasis on the SD1 output: z * w, then rescaled to the original mean (per chunk)
    g = torch.Generator().manual_seed(11)
    w = (0.8 + 0.5 * torch.rand(2, 77, generator=g)).float()
    z = exp["sd1.last"]
    zs = []
    for i in range(2):
        zi = z[i:i + 1]
        original_mean = zi.mean()
        zw = zi * w[i:i + 1].unsqueeze(-1)
        zs.append(zw * (original_mean / zw.mean()))
    exp["emphasis.weights"] = w
    exp["emphasis.out"] = torch.cat(zs)

    meta = {"generator": "tools/gen_clip_fixtures.py transformers %s torch %s" % (
        __import__("transformers").__version__, torch.__version__)}
    cond = {}
    prompts = gen_cond(out, cond)
    write_safetensors(os.path.join(out, "cond.expected.safetensors"),
                      {k: entry(v.float()) for k, v in cond.items()},
                      {"prompts": json.dumps(prompts)})
    write_safetensors(os.path.join(out, "expected.safetensors"),
                      {k: entry(v.float() if v.dtype != torch.int32 else v) for k, v in exp.items()}, meta)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs)
    print("wrote %s: %d bytes" % (out, total))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")

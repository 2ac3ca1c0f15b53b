"""Full-size random-weight reference models for `make check-full` (not
committed: written under build/check-full, about 0.5 GB).

  clip_vitl/text_encoder   transformers' CLIPTextModel with ViT-L/14's
                           configuration (SD1.x), f16 weights, diffusers layout
  expected.safetensors     ids (batch 2: EOS- and 0-padded) and its outputs

Run: tools/.venv/bin/python tools/gen_full_checks.py build/check-full
"""
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
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/check-full")

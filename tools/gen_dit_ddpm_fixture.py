"""The original DiT sampler's DDPM with learned variance, as a reference:
facebookresearch/DiT sample.py (torch.manual_seed, z = randn(n, 4, L, L),
classifier-free guidance with forward_with_cfg on the first 3 channels) over
its gaussian_diffusion (linear betas 1e-4..0.02, 1000 steps, respaced to N
steps as space_timesteps(1000, "N"), learned-range variance, clip_denoised
False), rewritten from those formulas. The model is the tiny original-layout
DiT of tests/fixtures/dit/p4.safetensors, computed by gen_dit_fixtures.py's
written-out original forward. Writes tests/fixtures/dit/ddpm.expected.safetensors.
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_dit_fixtures as gd  # noqa: E402
from fixture_io import write_safetensors  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

N_STEPS, LABELS, CFG, SEED = 10, [1, 7], 4.0, 0


def space_timesteps(num_timesteps, count):
    frac_stride = (num_timesteps - 1) / (count - 1)
    return sorted({round(i * frac_stride) for i in range(count)})


def main(out_root):
    torch.set_num_threads(1)
    spec = gd.MODELS["p4"]
    cfg = spec["cfg"]
    sd = load_file(os.path.join(out_root, "dit", "p4.safetensors"))
    n_cls = cfg["num_embeds_ada_norm"]

    betas_base = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    ac_base = np.cumprod(1.0 - betas_base)
    use = space_timesteps(1000, N_STEPS)
    betas, last = [], 1.0
    for i, ac in enumerate(ac_base):
        if i in use:
            betas.append(1 - ac / last)
            last = ac
    betas = np.array(betas)
    ac = np.cumprod(1.0 - betas)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    post_log_var_clipped = np.log(np.append(post_var[1], post_var[1:]))
    coef1 = betas * np.sqrt(ac_prev) / (1.0 - ac)
    coef2 = (1.0 - ac_prev) * np.sqrt(1.0 - betas) / (1.0 - ac)
    f32 = lambda a, i: torch.tensor(a[i], dtype=torch.float32)  # noqa: E731  (_extract: float64 table -> float32)

    torch.manual_seed(SEED)
    n, L = len(LABELS), cfg["sample_size"]
    z = torch.randn(n, 4, L, L)
    img = torch.cat([z, z], 0)
    y = torch.tensor(LABELS + [n_cls] * n)
    noises = []
    for i in reversed(range(N_STEPS)):
        t_model = torch.tensor([float(use[i])] * (2 * n))
        half = img[:n]
        combined = torch.cat([half, half], 0)
        with torch.no_grad():
            out, _ = gd.dit_forward_written(sd, combined, t_model, y, cfg, "original")
        eps, rest = out[:, :3], out[:, 3:]
        cond_eps, uncond_eps = torch.split(eps, n, dim=0)
        half_eps = uncond_eps + CFG * (cond_eps - uncond_eps)
        model_out = torch.cat([torch.cat([half_eps, half_eps], 0), rest], 1)
        eps, v = model_out[:, :4], model_out[:, 4:]
        min_log, max_log = f32(post_log_var_clipped, i), f32(np.log(betas), i)
        frac = (v + 1) / 2
        log_var = frac * max_log + (1 - frac) * min_log
        x0 = f32(np.sqrt(1.0 / ac), i) * img - f32(np.sqrt(1.0 / ac - 1), i) * eps
        mean = f32(coef1, i) * x0 + f32(coef2, i) * img
        noise = torch.randn_like(img)
        noises.append(noise[:n].clone())
        img = mean + (1.0 if i != 0 else 0.0) * torch.exp(0.5 * log_var) * noise
    exp = {"z": z, "final": img[:n], "noise.first": noises[0], "noise.last": noises[-1]}
    meta = {"steps": str(N_STEPS), "labels": ",".join(map(str, LABELS)), "cfg": str(CFG), "seed": str(SEED),
            "timesteps": ",".join(map(str, use)), "generator": "tools/gen_dit_ddpm_fixture.py torch " + torch.__version__}
    write_safetensors(os.path.join(out_root, "dit", "ddpm.expected.safetensors"),
                      {k: ("F32", tuple(v.shape), v.float().contiguous().numpy().tobytes()) for k, v in exp.items()},
                      meta)
    print("final latents std %.4g, timesteps %s" % (img[:n].std().item(), use))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")

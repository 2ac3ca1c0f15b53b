"""The PyTorch side of `make bench-full`: diffusers on the CPU in fp32 (or on CUDA for bench/gpu-bench.sh),
the same model folder, sampler (Euler, "leading" spacing), CFG batch and size as bench/full.lua, and the
same line format:

  python tools/bench_torch.py sd|dit MODEL SIZE [STEPS] [DEVICE] [VAE] [DTYPE]

prints "torch key=value ..." with load_s, encode_s (the better of two), first_step_s, step_s (the mean of
the steps after the first), decode_s and peak_rss_mb (ru_maxrss). Threads: OMP_NUM_THREADS, as difusa.
Development-time only, like everything under tools/.
"""
import os
import resource
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse on the moon, highly detailed"


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(kind, model, size, steps=3, device="cpu", vae_path=None, dtype="fp32"):
    size, steps = int(size), int(steps)
    dt = torch.float16 if dtype == "fp16" else torch.float32
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    out, marks = {}, []
    t0 = time.perf_counter()
    with torch.inference_mode():
        if kind == "sd":
            from diffusers import DiffusionPipeline
            pipe = DiffusionPipeline.from_pretrained(model, torch_dtype=dt, safety_checker=None).to(device)
            pipe.set_progress_bar_config(disable=True)
            out["load_s"] = time.perf_counter() - t0
            enc = []
            for _ in range(2):
                t = time.perf_counter()
                pipe.encode_prompt(PROMPT, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True,
                                   negative_prompt="")
                sync(device)
                enc.append(time.perf_counter() - t)
            out["encode_s"] = min(enc)

            def on_step(p, i, t, kw):
                sync(device)
                marks.append(time.perf_counter())
                return kw

            t = time.perf_counter()
            latents = pipe(PROMPT, negative_prompt="", height=size, width=size, num_inference_steps=steps,
                           guidance_scale=7.5, output_type="latent", callback_on_step_end=on_step,
                           generator=torch.Generator().manual_seed(1)).images
            vae = pipe.vae
            latents = latents / vae.config.scaling_factor
        else:
            from diffusers import AutoencoderKL, DiTTransformer2DModel, EulerDiscreteScheduler
            dit = DiTTransformer2DModel.from_pretrained(model, torch_dtype=dt).to(device)
            vae = AutoencoderKL.from_pretrained(vae_path, torch_dtype=dt).to(device)
            out["load_s"] = time.perf_counter() - t0
            out["encode_s"] = 0.0
            sched = EulerDiscreteScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                                           timestep_spacing="leading", steps_offset=1)
            sched.set_timesteps(steps)
            g = torch.Generator().manual_seed(1)
            x = (torch.randn(1, 4, size // 8, size // 8, generator=g) * sched.init_noise_sigma).to(device, dt)
            labels = torch.tensor([207, 1000], device=device)
            t = time.perf_counter()
            for ts in sched.timesteps:
                xin = sched.scale_model_input(torch.cat([x, x]), ts)
                o = dit(xin, timestep=ts.expand(2).to(device), class_labels=labels).sample
                eps_c, eps_u = o[:, :4].chunk(2)
                x = sched.step(eps_u + 4.0 * (eps_c - eps_u), ts, x).prev_sample
                sync(device)
                marks.append(time.perf_counter())
            latents = x / 0.18215
        out["first_step_s"] = marks[0] - t
        out["step_s"] = (marks[-1] - marks[0]) / (len(marks) - 1)
        t = time.perf_counter()
        vae.decode(latents.to(vae.dtype)).sample.cpu()
        sync(device)
        out["decode_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.startswith("cuda"):
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print("torch " + " ".join("%s=%.6g" % (k, out[k]) for k in sorted(out)), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])

"""A tiny random-weight Stable Diffusion 1.x model as a complete diffusers folder, and
diffusers' pipelines run on it end to end, every stage recorded (tests/fixtures/pipeline).

  tiny-sd/                     the model folder (StableDiffusionPipeline.from_pretrained loads it):
    model_index.json           StableDiffusionPipeline, no safety checker / feature extractor
    text_encoder/              CLIPTextModel: the full 49408-token vocabulary, 8 wide, 2 layers, 2 heads
                               of 4, intermediate 32, quick_gelu (config.json + model.safetensors, F16)
    tokenizer/                 vocab.json + merges.txt exactly as tools/gen_tokenizer_fixtures.py builds
                               them from data/clip/merges.txt.gz (= openai/clip-vit-large-patch14), and
                               tokenizer_config.json (model_max_length 77, padding with <|endoftext|>)
    unet/                      UNet2DConditionModel, SD1 layout on two levels: CrossAttnDown, Down / Up,
                               CrossAttnUp; block_out_channels (16, 32), layers_per_block 1,
                               attention_head_dim 2 (= 2 heads, diffusers' SD1 naming), 8 groups,
                               cross_attention_dim 8, conv proj_in/out
    vae/                       AutoencoderKL (16, 32, 32): latent factor 4; 4 latent channels, 8 groups,
                               scaling_factor 0.18215
    scheduler/                 EulerDiscreteScheduler: scaled_linear 0.00085 .. 0.012, 1000 steps,
                               epsilon, timestep_spacing "leading", steps_offset 1 (SD1's config)
  The widths are what keeps the folder near 3 MB: the token table (49408 x 8 F16) is 0.8 MB and the
  tokenizer's two text files 1.5 MB.
  init.png                     the img2img input: a synthetic 64 x 48 RGB picture
  <case>.png                   each case's output image
  expected.safetensors         the references, every stage of three runs (txt2img Euler, txt2img
                               DPM++ 2M Karras, img2img Euler); tests/fixtures/pipeline/README.md lists them
  README.md                    written by this script

Weights are random with a realistic scale, rounded to f16 and stored F16; every reference is computed
in float32 (one CPU thread) from exactly those rounded weights, by diffusers' own pipelines loaded
from the written folder.

Noise: a torch.Generator("cpu").manual_seed(SEED) handed to the pipeline. Every call that draws from
it is recorded (torch.randn is wrapped), then replayed on a fresh generator: the replay must give the
same values and leave the generator in the same state, so the recorded list is complete and in order.
torch runs here with ATEN_CPU_CAPABILITY=avx2 (its AVX2 normal_ kernel, which difusa's DF_RNG_CPU
reproduces), and a child process checks that the machine's default capability draws the same bits.

Run: tools/.venv/bin/python tools/gen_pipeline_fixtures.py tests/fixtures
"""
import io
import json
import os
import subprocess
import sys

if __name__ == "__main__" and os.environ.get("ATEN_CPU_CAPABILITY") != "avx2" and "--draws-worker" not in sys.argv:
    # the CPU capability is fixed when torch loads: run again under the AVX2 kernel
    os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, ATEN_CPU_CAPABILITY="avx2"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_safetensors  # noqa: E402

SEED = 42
PROMPT = "a red circle on a blue background"
NEGATIVE = "blurry"
STEPS = 8
CFG = 7.5
HEIGHT, WIDTH = 48, 64  # not square, so that a swapped height / width shows
STRENGTH = 0.6

TEXT = dict(vocab_size=49408, hidden_size=8, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=49406,
            eos_token_id=49407, pad_token_id=1, projection_dim=8)
UNET = dict(sample_size=8, in_channels=4, out_channels=4,
            down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
            block_out_channels=[16, 32], layers_per_block=1, norm_num_groups=8, cross_attention_dim=8,
            attention_head_dim=2, use_linear_projection=False)
VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 3,
           up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[16, 32, 32], layers_per_block=1,
           latent_channels=4, norm_num_groups=8, sample_size=32, scaling_factor=0.18215)
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 prediction_type="epsilon", timestep_spacing="leading", steps_offset=1)
DPM = dict(use_karras_sigmas=True, algorithm_type="dpmsolver++", solver_order=2)
# Extra output gains (applied before rounding to f16): the UNet's eps and the decoder's image come out
# of random layers at unit scale; these keep the final latents and the decoded image in a range where
# the picture is neither flat nor clipped to 0 / 255 everywhere.
GAIN = {"unet.conv_out": 1.0, "vae.decoder.conv_out": 0.6}

CASES = ["txt2img_euler", "txt2img_dpmpp2m_karras", "img2img_euler"]
DT = {torch.float32: "F32", torch.float16: "F16", torch.int32: "I32", torch.int64: "I64", torch.uint8: "U8"}


def entry(t):
    t = t.detach().contiguous().cpu()
    a = t.numpy()
    return (DT[t.dtype], tuple(t.shape), a.astype(a.dtype.newbyteorder("<")).tobytes())


def randomize(m, seed, gains=()):
    """Random weights of a realistic scale (unit-variance activations), then the gains, rounded to f16."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 1 and ("norm" in name and name.endswith("weight")):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5))
        for prefix, g in gains:
            for name, p in m.named_parameters():
                if name.startswith(prefix + "."):
                    p.mul_(g)
        for p in m.parameters():
            p.copy_(p.half().float())
    return m.eval()


def f16_entries(m, skip=()):
    return {k: entry(v.half()) for k, v in m.state_dict().items() if not any(s in k for s in skip)}


def dump_json(path, obj, indent=2):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------- the folder

def build_models():
    from transformers import CLIPTextConfig, CLIPTextModel
    from diffusers import AutoencoderKL, UNet2DConditionModel

    te = randomize(CLIPTextModel(CLIPTextConfig(**TEXT)), 1)
    unet = randomize(UNet2DConditionModel(**UNET), 2, [("conv_out", GAIN["unet.conv_out"])])
    vae = randomize(AutoencoderKL(**VAE), 3, [("decoder.conv_out", GAIN["vae.decoder.conv_out"])])
    return te, unet, vae


def write_tokenizer(d):
    import gen_tokenizer_fixtures as gt

    os.makedirs(d, exist_ok=True)
    merges = gt.standard_merges()
    gt.write_pair(d, gt.standard_vocab(merges), merges)
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>"}
    dump_json(os.path.join(d, "special_tokens_map.json"), special)
    cfg = dict(special, add_prefix_space=False, do_lower_case=True, errors="replace", model_max_length=77,
               tokenizer_class="CLIPTokenizer")
    dump_json(os.path.join(d, "tokenizer_config.json"), cfg)


def write_folder(root, te, unet, vae):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    d = os.path.join(root, "text_encoder")
    os.makedirs(d, exist_ok=True)
    cfg = json.loads(te.config.to_json_string())
    cfg["architectures"] = ["CLIPTextModel"]
    dump_json(os.path.join(d, "config.json"), cfg)
    write_safetensors(os.path.join(d, "model.safetensors"), f16_entries(te, skip=("position_ids",)),
                      {"format": "pt"})
    write_tokenizer(os.path.join(root, "tokenizer"))
    for name, m in (("unet", unet), ("vae", vae)):
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        m.save_config(d)  # json.dumps(indent=2, sort_keys=True): deterministic
        write_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"), f16_entries(m), {"format": "pt"})
    sched = EulerDiscreteScheduler(**SCHEDULER)
    sched.save_config(os.path.join(root, "scheduler"))
    tok = CLIPTokenizer.from_pretrained(os.path.join(root, "tokenizer"), local_files_only=True)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_config(root)  # model_index.json


def load_pipeline(root, te, unet, vae):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(root, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.safety_checker is None and pipe.feature_extractor is None
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.tokenizer.fix_text is None, "transformers took the ftfy path"
    for name, a, b in (("text_encoder", pipe.text_encoder, te), ("unet", pipe.unet, unet), ("vae", pipe.vae, vae)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sorted(sa) == sorted(sb), name
        for k in sa:
            assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), (name, k)
        assert all(p.dtype == torch.float32 for p in a.parameters()), name
    assert pipe.vae_scale_factor == 4
    return pipe


# ------------------------------------------------------------------------------------- the input

def init_picture():
    """A deterministic synthetic RGB picture, WIDTH x HEIGHT: a diagonal gradient, a yellow disc,
    a dark square and a thin white stripe."""
    from PIL import Image

    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    r = 40 + 150 * x / (WIDTH - 1)
    g = 60 + 120 * y / (HEIGHT - 1)
    b = 200 - 100 * (x + y) / (WIDTH + HEIGHT - 2)
    img = np.stack([r, g, b], -1)
    disc = (x - 40.5) ** 2 + (y - 20.5) ** 2 <= 11.0 ** 2
    img[disc] = (235, 210, 40)
    img[(x >= 8) & (x < 22) & (y >= 26) & (y < 40)] = (30, 20, 60)
    img[(y >= 6) & (y < 8)] = (250, 250, 250)
    a = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return Image.fromarray(a, "RGB"), a


def png_bytes(arr):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


# ------------------------------------------------------------------------------------- recording

class Recorder:
    """Wraps torch.randn (draws from the case's generator), the text encoder, the UNet, the VAE, the
    scheduler's add_noise and img2img's retrieve_latents, for one pipeline call."""

    def __init__(self, pipe, gen):
        self.pipe, self.gen = pipe, gen
        self.draws, self.text, self.unet, self.decode, self.encode = [], [], [], [], []
        self.retrieved, self.add_noise, self.step_latents = [], [], []

    def __enter__(self):
        import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img as i2i

        self._randn, self._i2i = torch.randn, i2i
        rec = self

        def randn(*a, generator=None, **kw):
            out = rec._randn(*a, generator=generator, **kw)
            if generator is rec.gen:
                rec.draws.append(out.detach().clone())
            return out

        torch.randn = randn
        p = self.pipe
        self.hooks = [
            p.text_encoder.register_forward_hook(
                lambda m, a, kw, o: rec.text.append((a[0].clone(), o[0].detach().clone())), with_kwargs=True),
            p.unet.register_forward_hook(
                lambda m, a, kw, o: rec.unet.append((a[0].clone(), a[1].clone(), kw["encoder_hidden_states"].clone(),
                                                     o[0].detach().clone())), with_kwargs=True),
        ]
        dec, enc = p.vae.decode, p.vae.encode

        def decode(z, *a, **kw):
            out = dec(z, *a, **kw)
            rec.decode.append((z.clone(), out[0].detach().clone()))
            return out

        def encode(x, *a, **kw):
            out = enc(x, *a, **kw)
            d = out.latent_dist
            rec.encode.append((x.clone(), d.mean.clone(), d.std.clone(), d.logvar.clone()))
            return out

        p.vae.decode, p.vae.encode = decode, encode
        self._retrieve = i2i.retrieve_latents

        def retrieve(*a, **kw):
            out = rec._retrieve(*a, **kw)
            rec.retrieved.append(out.detach().clone())
            return out

        i2i.retrieve_latents = retrieve
        an = p.scheduler.add_noise

        def add_noise(x, noise, t):
            out = an(x, noise, t)
            rec.add_noise.append((x.clone(), noise.clone(), t.clone(), out.clone()))
            return out

        p.scheduler.add_noise = add_noise
        return self

    def on_step_end(self, pipe, i, t, kw):
        self.step_latents.append(kw["latents"].detach().clone())
        return {}

    def __exit__(self, *exc):
        torch.randn = self._randn
        self._i2i.retrieve_latents = self._retrieve
        for h in self.hooks:
            h.remove()
        del self.pipe.vae.decode, self.pipe.vae.encode
        del self.pipe.scheduler.add_noise


def replay(draws, seed):
    """The recorded draws, drawn again from a fresh generator; returns the generator's final state."""
    g = torch.Generator("cpu").manual_seed(seed)
    for k, d in enumerate(draws):
        again = torch.randn(d.shape, generator=g, dtype=d.dtype)
        assert torch.equal(again, d), "draw %d differs on replay" % k
    return g.get_state()


def draws_worker(spec_path, out_path):
    """Child process under the machine's default CPU capability: the same draws."""
    with open(spec_path) as f:
        spec = json.load(f)
    res = {"capability": torch.backends.cpu.get_cpu_capability()}
    for case, shapes in spec.items():
        g = torch.Generator("cpu").manual_seed(SEED)
        res[case] = [torch.randn(s, generator=g).numpy().tobytes().hex() for s in shapes]
    with open(out_path, "w") as f:
        json.dump(res, f)


def check_other_capability(all_draws, tmp):
    spec = {c: [list(d.shape) for d in ds] for c, ds in all_draws.items()}
    sp, op = os.path.join(tmp, "draws.json"), os.path.join(tmp, "draws.out.json")
    with open(sp, "w") as f:
        json.dump(spec, f)
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    subprocess.run([sys.executable, os.path.abspath(__file__), "--draws-worker", sp, op], env=env, check=True)
    with open(op) as f:
        res = json.load(f)
    for c, ds in all_draws.items():
        for k, d in enumerate(ds):
            assert res[c][k] == d.numpy().tobytes().hex(), "%s draw %d: %s differs from AVX2" % (
                c, k, res["capability"])
    return res["capability"]


# ------------------------------------------------------------------------------------- the runs

def run_case(pipe, case, init_image):
    from diffusers import (DPMSolverMultistepScheduler, EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline,
                           StableDiffusionPipeline)

    base = pipe.scheduler.config
    if case == "txt2img_dpmpp2m_karras":
        sched = DPMSolverMultistepScheduler.from_config(base, **DPM)
    else:
        sched = EulerDiscreteScheduler.from_config(base)
    if case.startswith("img2img"):
        p = StableDiffusionImg2ImgPipeline(**dict(pipe.components, scheduler=sched))
    else:
        p = StableDiffusionPipeline(**dict(pipe.components, scheduler=sched))
    p.set_progress_bar_config(disable=True)
    gen = torch.Generator("cpu").manual_seed(SEED)
    kw = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=CFG,
              generator=gen, output_type="np")
    if case.startswith("img2img"):
        kw.update(image=init_image, strength=STRENGTH)
    else:
        kw.update(height=HEIGHT, width=WIDTH)
    with Recorder(p, gen) as rec:
        image = p(callback_on_step_end=rec.on_step_end, **kw).images
    assert torch.equal(replay(rec.draws, SEED), gen.get_state()), "%s: unrecorded generator draws" % case
    return p, rec, image


def derive(case, p, rec, image):
    """The stored tensors of one case, and checks that the stages chain as README.md describes."""
    s = p.scheduler
    out, info = {}, {}
    n = len(rec.unet)
    ts, sig = s.timesteps, s.sigmas
    start = STEPS - min(int(STEPS * STRENGTH), STEPS) if case.startswith("img2img") else 0
    assert len(ts) == STEPS and len(sig) == STEPS + 1 and n == STEPS - start
    assert [u[1].item() for u in rec.unet] == ts[start:].tolist(), (case, [u[1] for u in rec.unet], ts)
    out["timesteps"] = ts.clone()
    out["sigmas"] = sig.clone()
    for k, d in enumerate(rec.draws):
        out["noise.%d" % k] = d
    # the latents the loop starts from
    if case.startswith("img2img"):
        (image_in, mean, std, logvar), = rec.encode
        (clean, noise, lt, noisy), = rec.add_noise
        (post,) = rec.retrieved
        assert len(rec.draws) == 2
        assert torch.equal(post, mean + std * rec.draws[0])  # DiagonalGaussianDistribution.sample
        assert torch.equal(clean, post * p.vae.config.scaling_factor)
        assert torch.equal(noise, rec.draws[1])
        assert s.begin_index == start and lt.tolist() == [ts[start].item()]
        assert torch.equal(noisy, clean + noise * sig[start])
        init = noisy
        out.update({"vae.image": image_in, "vae.mean": mean, "vae.std": std, "vae.logvar": logvar,
                    "vae.posterior_sample": post, "init_latents_clean": clean, "latent_timestep": lt})
        info["begin_index"] = start
        info["sigma_begin"] = float(sig[start])
    else:
        assert len(rec.draws) == 1
        init = rec.draws[0] * s.init_noise_sigma
        info["init_noise_sigma"] = float(s.init_noise_sigma)
    out["init_latents"] = init
    # per step: model input, timestep, UNet output (uncond, cond), guided eps, latents after the step
    ctx = rec.unet[0][2]
    assert all(torch.equal(u[2], ctx) for u in rec.unet)
    x = init
    model_in, unet_out, eps_l = [], [], []
    for i, (xin, t, _, o) in enumerate(rec.unet):
        j = start + i
        if type(s).__name__ == "EulerDiscreteScheduler":
            scaled = torch.cat([x] * 2) / ((sig[j] ** 2 + 1) ** 0.5)
        else:
            scaled = torch.cat([x] * 2)  # DPMSolverMultistep's scale_model_input is the identity
        assert torch.equal(scaled, xin), (case, i)
        u, c = o.chunk(2)
        eps = u + CFG * (c - u)
        model_in.append(xin)
        unet_out.append(o)
        eps_l.append(eps)
        x = rec.step_latents[i]
    replay_sampler(case, s, sig, start, init, eps_l, rec.step_latents)
    out["step.model_in"] = torch.stack(model_in)
    out["step.t"] = torch.stack([u[1] for u in rec.unet])
    out["step.unet_out"] = torch.stack(unet_out)
    out["step.eps"] = torch.stack(eps_l)
    out["step.latents"] = torch.stack(rec.step_latents)
    final = rec.step_latents[-1]
    out["final_latents"] = final
    (z, dec), = rec.decode
    assert torch.equal(z, final / p.vae.config.scaling_factor)
    out["decoded"] = dec
    img = torch.from_numpy(image.copy())
    assert torch.equal(img, (dec / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1))
    out["image"] = img
    u8 = (image * 255).round().astype("uint8")
    assert np.array_equal(np.asarray(p.numpy_to_pil(image)[0]), u8[0])
    out["image_u8"] = torch.from_numpy(u8)
    info["steps_run"] = n
    return out, info, ctx


def replay_sampler(case, s, sig, start, init, eps, latents):
    """The samplers written out from the recorded guided eps, in diffusers' float32 op order; each step
    must give diffusers' latents bit for bit. Euler: x0 = x - sigma eps, d = (x - x0) / sigma,
    x += d (sigma_next - sigma). DPM++ 2M (VP form): alpha = 1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha,
    lambda = log alpha - log sigma_t; first order on the first step and (lower_order_final) on the last."""
    x = init
    if type(s).__name__ == "EulerDiscreteScheduler":
        for i, e in enumerate(eps):
            j = start + i
            sigma = sig[j]
            pred = x - sigma * e
            der = (x - pred) / sigma
            x = x + der * (sig[j + 1] - sigma)
            assert torch.equal(x, latents[i]), (case, i)
        return
    prev = None
    for i, e in enumerate(eps):
        a_s = 1 / ((sig[i] ** 2 + 1) ** 0.5)
        s_s = sig[i] * a_s
        a_t = 1 / ((sig[i + 1] ** 2 + 1) ** 0.5)
        s_t = sig[i + 1] * a_t
        m0 = (x - s_s * e) / a_s
        lam_t, lam_s = torch.log(a_t) - torch.log(s_t), torch.log(a_s) - torch.log(s_s)
        h = lam_t - lam_s
        if prev is None or i == len(eps) - 1:
            x = (s_t / s_s) * x - (a_t * (torch.exp(-h) - 1.0)) * m0
        else:
            a_p = 1 / ((sig[i - 1] ** 2 + 1) ** 0.5)
            lam_p = torch.log(a_p) - torch.log(sig[i - 1] * a_p)
            r0 = (lam_s - lam_p) / h
            d1 = (1.0 / r0) * (m0 - prev)
            x = (s_t / s_s) * x - (a_t * (torch.exp(-h) - 1.0)) * m0 - 0.5 * (a_t * (torch.exp(-h) - 1.0)) * d1
        prev = m0
        assert torch.equal(x, latents[i]), (case, i, (x - latents[i]).abs().max().item())


# ------------------------------------------------------------------------------------- k-diffusion

def import_k_diffusion():
    """k_diffusion.sampling and .external without the package's training-side imports (as
    tools/gen_sampler_fixtures.py does it): a stub package and a stub utils."""
    import importlib
    import importlib.util
    import types

    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"], sys.modules["k_diffusion.external"]
    spec = importlib.util.find_spec("k_diffusion")
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [os.path.dirname(spec.origin)]
    pkg.__spec__ = spec
    sys.modules["k_diffusion"] = pkg
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    sys.modules["k_diffusion.utils"] = utils
    pkg.utils = utils
    return importlib.import_module("k_diffusion.sampling"), importlib.import_module("k_diffusion.external")


def k_diffusion_compare(pipe, exp):
    """k-diffusion's sample_dpmpp_2m on the same UNet, CFG and noise, (a) driven as diffusers drives its
    DPM++ 2M Karras (diffusers' sigmas, x_T = noise * sqrt(sigma_0^2 + 1), UNet timestep = the rounded
    sigma_to_t), and (b) as k-diffusion users run it (get_sigmas_karras in float32, x_T = noise * sigma_0,
    continuous timestep from DiscreteSchedule.sigma_to_t). Returns the k-diffusion sigmas and a summary."""
    K, EXT = import_k_diffusion()
    c = "txt2img_dpmpp2m_karras"
    sig_d, ts_d = exp[c + ".sigmas"], exp[c + ".timesteps"]
    noise, ref = exp[c + ".noise.0"], exp[c + ".final_latents"]
    ctx = torch.cat([exp["text.uncond"], exp["text.cond"]])
    ac = pipe.scheduler.alphas_cumprod
    train = ((1 - ac) / ac) ** 0.5  # float32, t = 0 .. 999
    sched = EXT.DiscreteSchedule(train, quantize=False)
    k_sig = K.get_sigmas_karras(STEPS, train[0].item(), train[-1].item())

    def denoiser(tmap):
        def f(x, sigma):
            sg = sigma[0]
            t = tmap(sg)
            xin = torch.cat([x] * 2) / ((sg ** 2 + 1) ** 0.5)
            with torch.no_grad():
                o = pipe.unet(xin, t, encoder_hidden_states=ctx).sample
            u, cc = o.chunk(2)
            return x - sg * (u + CFG * (cc - u))
        return f

    lookup = {float(a): b for a, b in zip(sig_d[:-1].tolist(), ts_d)}
    like = K.sample_dpmpp_2m(denoiser(lambda sg: lookup[float(sg)]), noise * (sig_d[0] ** 2 + 1) ** 0.5,
                             sig_d, disable=True)
    plain = K.sample_dpmpp_2m(denoiser(lambda sg: sched.sigma_to_t(sg)), noise * k_sig[0], k_sig, disable=True)
    # the two differences one at a time
    only_t = K.sample_dpmpp_2m(denoiser(lambda sg: sched.sigma_to_t(sg)), noise * (sig_d[0] ** 2 + 1) ** 0.5,
                               sig_d, disable=True)
    only_x = K.sample_dpmpp_2m(denoiser(lambda sg: lookup[float(sg)]), noise * sig_d[0], sig_d, disable=True)
    summary = {
        "max_abs_sigma_diffusers_minus_k": (sig_d - k_sig).abs().max().item(),
        "max_rel_sigma_diffusers_minus_k": ((sig_d[:-1] - k_sig[:-1]).abs() / k_sig[:-1]).max().item(),
        "k_driven_like_diffusers.max_abs_latent_diff": (like - ref).abs().max().item(),
        "k_plain.max_abs_latent_diff": (plain - ref).abs().max().item(),
        "k_continuous_t_only.max_abs_latent_diff": (only_t - ref).abs().max().item(),
        "k_x_T_sigma0_only.max_abs_latent_diff": (only_x - ref).abs().max().item(),
        "final_latents_max_abs": ref.abs().max().item(),
    }
    return k_sig, summary


def json_safe(v):
    """Standard JSON: infinities as strings (lambda_min_clipped is -inf)."""
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items() if k != "_use_default_values"}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return repr(v)
    return v


# ------------------------------------------------------------------------------------- README

README = """# tests/fixtures/pipeline: generated, do not edit

Everything here is written by `tools/gen_pipeline_fixtures.py` (this file too):

    tools/.venv/bin/python tools/gen_pipeline_fixtures.py tests/fixtures

Regenerating with the same software gives the same bytes ({versions};
the float32 results may move in the last bits on other CPUs / math libraries).
A tiny random-weight Stable Diffusion 1.x model as a complete diffusers folder, and diffusers' own
`StableDiffusionPipeline` / `StableDiffusionImg2ImgPipeline`, loaded from that folder with
`from_pretrained`, run on it in float32 on the CPU (one thread), every stage recorded.
Weights are random (unit-scale activations; the decoder's conv_out scaled by {dec_gain} so that few
pixels clip), rounded to f16 and stored F16; the references are computed from exactly those weights.

## Files

{files}
tiny-sd/ holds:

| path | content |
|---|---|
| model_index.json | StableDiffusionPipeline; safety_checker, feature_extractor, image_encoder null |
| text_encoder/ | CLIPTextModel: vocab 49408, width 8, 2 layers, 2 heads of 4, MLP 32, quick_gelu, 77 positions (model.safetensors F16) |
| tokenizer/ | vocab.json + merges.txt as tools/gen_tokenizer_fixtures.py builds them from data/clip/merges.txt.gz (openai/clip-vit-large-patch14's); tokenizer_config.json: model_max_length 77, pad = unk = eos = `<\\|endoftext\\|>` |
| unet/ | UNet2DConditionModel: CrossAttnDownBlock2D, DownBlock2D / UpBlock2D, CrossAttnUpBlock2D; block_out_channels (16, 32); layers_per_block 1; attention_head_dim 2 (diffusers' SD1 naming: 2 heads, so head dim 8 then 16 in the mid block); 8 groups; cross_attention_dim 8; conv proj_in/out |
| vae/ | AutoencoderKL: block_out_channels (16, 32, 32), so the latent factor is **4** (not SD's 8); 4 latent channels; 8 groups; scaling_factor 0.18215 |
| scheduler/ | EulerDiscreteScheduler: scaled_linear 0.00085 .. 0.012, 1000 train steps, epsilon, timestep_spacing "leading", steps_offset 1 |

## Runs

All three: prompt "{prompt}", negative prompt "{negative}", {steps} steps, guidance {cfg}, eta 0,
`generator=torch.Generator("cpu").manual_seed({seed})`, {w} x {h} pixels (width x height) = {lw} x {lh} latents.

| case | pipeline | scheduler |
|---|---|---|
| txt2img_euler | StableDiffusionPipeline | EulerDiscreteScheduler (the folder's config) |
| txt2img_dpmpp2m_karras | StableDiffusionPipeline | DPMSolverMultistepScheduler.from_config(folder's, use_karras_sigmas=True, algorithm_type="dpmsolver++", solver_order=2): solver_type midpoint, lower_order_final, final_sigmas_type "zero" |
| img2img_euler | StableDiffusionImg2ImgPipeline, image = init.png, strength {strength} | EulerDiscreteScheduler |

The full settings and scheduler configs are in expected.safetensors' `__metadata__`, one JSON per case.

## expected.safetensors

Shared: `text.cond_ids`, `text.uncond_ids` (I32, 77: BOS, tokens, EOS, padded with EOS 49407), `text.cond`,
`text.uncond` (1 x 77 x 8: the text encoder's last_hidden_state, i.e. after final_layer_norm),
`init_image.u8` (48 x 64 x 3, init.png's pixels), `init_image.tensor` (1 x 3 x 48 x 64: what the
pipeline's image processor makes of it, pixel / 255 * 2 - 1).

Per case `<case>.`:

| name | shape | content |
|---|---|---|
| noise.k | 1 x 4 x {lh} x {lw} | the k-th draw from the generator, in call order (see below) |
| timesteps | 8 | the scheduler's full schedule (Euler F32, DPM I64, as diffusers holds them) |
| sigmas | 9 | the scheduler's sigmas, final 0 included (F32) |
| init_latents | 1 x 4 x {lh} x {lw} | the latents entering the loop |
| step.model_in | n x 2 x 4 x {lh} x {lw} | the UNet's input each step: batch [uncond, cond], already scaled by scale_model_input |
| step.t | n | the timestep handed to the UNet (the same dtype as timesteps) |
| step.unet_out | n x 2 x 4 x {lh} x {lw} | the UNet's output, [uncond, cond] |
| step.eps | n x 1 x 4 x {lh} x {lw} | guided: uncond + {cfg} (cond - uncond) |
| step.latents | n x 1 x 4 x {lh} x {lw} | latents after each scheduler step |
| final_latents | 1 x 4 x {lh} x {lw} | = step.latents[-1]; the VAE decodes final_latents / 0.18215 |
| decoded | 1 x 3 x {h} x {w} | the VAE decoder's output, unclamped (about [-1, 1]) |
| image | 1 x {h} x {w} x 3 | output_type="np": clamp(decoded / 2 + 0.5, 0, 1), NHWC |
| image_u8 | 1 x {h} x {w} x 3 (U8) | round(image * 255): the PIL image the pipeline returns, = `<case>.png` |

n = 8, or 4 for img2img (it runs the last 4 of the 8-step schedule). img2img also has
`vae.image` (= init_image.tensor), `vae.mean`, `vae.std`, `vae.logvar` (the encoder's latent_dist),
`vae.posterior_sample` (= mean + std * noise.0), `init_latents_clean` (= 0.18215 * posterior_sample),
`latent_timestep` (the timestep add_noise got). The DPM case also has `k_diffusion_sigmas`
(k-diffusion's get_sigmas_karras(8, sigma(t=0), sigma(t=999)) in float32, for comparison).

## Generator draws, in order

All draws are `torch.randn(shape, generator=g)` (via diffusers' randn_tensor) of 1 x 4 x {lh} x {lw} =
{numel} values, float32, on the CPU generator, with torch's AVX2 normal_ kernel (the 16-wide
Box-Muller path; {numel} is a multiple of 16): difusa's DF_RNG_CPU. The machine's own capability
({capability}) drew the same bits. noise.0 of every case equals `torch.randn(shape,
generator=torch.Generator("cpu").manual_seed({seed}))` of a fresh generator.

- txt2img (both schedulers): one draw, prepare_latents: init_latents = noise.0 * init_noise_sigma.
  Euler ("leading") init_noise_sigma = sqrt(max(sigmas)^2 + 1) = {euler_ins} (float32); DPM: 1.0.
  Neither scheduler draws while stepping (Euler draws only when s_churn > 0, DPM only for the SDE
  variants), and the VAE decode draws nothing.
- img2img: two draws. First the VAE posterior sample in the encode
  (retrieve_latents -> latent_dist.sample: mean + std * noise.0, std = exp(0.5 logvar)), then the noise of
  prepare_latents, added by the scheduler: init_latents = 0.18215 * posterior + noise.1 * sigmas[{begin}].

The script checks the list is complete: replaying the draws on a fresh generator gives the same values
and the same final generator state as the pipeline's generator.

## Schedules (what a C sampler must match)

Training: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000) ** 2 in float32, alphas_cumprod =
cumprod(1 - betas) in float32, sigma(t) = sqrt((1 - ac) / ac) in float32.

Euler, "leading", steps_offset 1: step_ratio = 1000 // 8 = 125, timesteps = arange(8) * 125 reversed
+ 1 = {euler_ts}; sigmas = the float32 table at those integer t (np.interp on integers is exact)
+ [0] = {euler_sig}.
Each step: model_in = x / sqrt(sigma^2 + 1), UNet(model_in, t as float32), x0 = x - sigma * eps,
d = (x - x0) / sigma, x = x + d * (sigma_next - sigma) (float32, in that order: d is not exactly eps).
The start: x_T = noise * sqrt(sigma_max^2 + 1), not noise * sigma_max as in k-diffusion: diffusers'
Euler uses sqrt(sigma_max^2 + 1) for "leading" spacing and sigma_max only for "linspace" / "trailing".
img2img, strength {strength}: init_timestep = int(8 * {strength}) = 4, t_start = 8 - 4 = {begin}; the run
uses timesteps[{begin}:] = {i2i_ts} and sigmas[{begin}:]; set_begin_index({begin}); add_noise is VE:
x = latents + noise * sigmas[{begin}] ({i2i_sig}), with no sqrt(sigma^2 + 1).

DPM++ 2M Karras: the "leading" spacing and steps_offset play no part. sigmas = Karras(rho 7) from
sigma_min = sigma(t=0) to sigma_max = sigma(t=999), computed in float64 numpy
((max^(1/7) + linspace(0, 1, 8) (min^(1/7) - max^(1/7)))^7), then + [0], cast to float32 =
{dpm_sig}. timesteps = round(sigma_to_t(sigma)) (log-sigma interpolation in the float32 table),
int64 = {dpm_ts}; the UNet gets these integers, while the update uses the unrounded sigmas.
diffusers works in VP form: the latents are x_vp, scale_model_input is the identity (the UNet sees
x_vp), init_noise_sigma = 1. With alpha = 1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha,
lambda = log(alpha) - log(sigma_t): x0 = (x - sigma_t eps) / alpha; step 0 is first order
x' = (sigma_t'/sigma_t) x - alpha' (exp(-h) - 1) x0, steps 1..6 second order (midpoint:
D1 = (m0 - m1) / r0, r0 = h_prev / h, x' = ... - 0.5 alpha' (exp(-h) - 1) D1), the last step first
order (lower_order_final; with sigma' = 0 it returns x0).
Compared with k-diffusion's sample_dpmpp_2m (VE form, x_ve = x_vp / alpha): the update is the same
formula (denoised_d = (1 + 1/(2r)) x0 - 1/(2r) x0_prev); k-diffusion driven with diffusers' sigmas,
x_T = noise * sqrt(sigma_0^2 + 1) and the rounded timesteps lands within {k_like:.3g} of diffusers'
final latents (max |latent| {k_max:.3g}: float rounding). Run as k-diffusion users run it (x_T = noise *
sigma_0, continuous t = sigma_to_t(sigma)), it differs by {k_plain:.3g} ({k_t:.3g} from the continuous t alone,
{k_x:.3g} from x_T alone). k-diffusion's get_sigmas_karras (float32) differs from diffusers' sigmas by at
most {k_sig:.3g} (relative {k_sigrel:.3g}).

## Image sanity

{sanity}
"""


def write_readme(out_dir, exp, meta, infos, capability, ksum):
    def arr(t, fmt):
        return "[" + ", ".join(fmt % v for v in t.tolist()) + "]"

    files = []
    for r, _, fs in sorted(os.walk(out_dir)):
        for f in sorted(fs):
            if f == "README.md":
                continue
            pth = os.path.join(r, f)
            files.append("    %9d  %s" % (os.path.getsize(pth), os.path.relpath(pth, out_dir)))
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(out_dir, "tiny-sd"))
                for f in fs)
    files.append("    %9d  tiny-sd/ in all" % total)
    sanity = ["| case | image std | min | max | decoded at or beyond +-1 | final latents std | distinct u8 levels |",
              "|---|---|---|---|---|---|---|"]
    for case, (sd, lo, hi, cl, ls, lv) in infos.items():
        sanity.append("| %s | %.4f | %.4f | %.4f | %.2f%% | %.3f | %d |" % (case, sd, lo, hi, 100 * cl, ls, lv))
    begin = json.loads(meta["img2img_euler"])["begin_index"]
    text = README.format(
        versions=meta["generator"].split(": ", 1)[1], dec_gain=GAIN["vae.decoder.conv_out"], files="\n".join(files),
        prompt=PROMPT, negative=NEGATIVE, steps=STEPS, cfg=CFG, seed=SEED, w=WIDTH, h=HEIGHT, lw=WIDTH // 4,
        lh=HEIGHT // 4, strength=STRENGTH, numel=4 * (HEIGHT // 4) * (WIDTH // 4), capability=capability,
        euler_ins="%.9g" % json.loads(meta["txt2img_euler"])["init_noise_sigma"], begin=begin,
        euler_ts=arr(exp["txt2img_euler.timesteps"], "%g"), euler_sig=arr(exp["txt2img_euler.sigmas"], "%.9g"),
        i2i_ts=arr(exp["img2img_euler.step.t"], "%g"), i2i_sig="%.9g" % exp["img2img_euler.sigmas"][begin].item(),
        dpm_sig=arr(exp["txt2img_dpmpp2m_karras.sigmas"], "%.9g"),
        dpm_ts=arr(exp["txt2img_dpmpp2m_karras.timesteps"], "%d"),
        k_like=ksum["k_driven_like_diffusers.max_abs_latent_diff"], k_max=ksum["final_latents_max_abs"],
        k_plain=ksum["k_plain.max_abs_latent_diff"], k_t=ksum["k_continuous_t_only.max_abs_latent_diff"],
        k_x=ksum["k_x_T_sigma0_only.max_abs_latent_diff"], k_sig=ksum["max_abs_sigma_diffusers_minus_k"],
        k_sigrel=ksum["max_rel_sigma_diffusers_minus_k"], sanity="\n".join(sanity))
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)


# ------------------------------------------------------------------------------------- main

def main(out_root):
    import tempfile
    import diffusers
    import transformers
    import gen_tokenizer_fixtures as gt

    gt.check_reference_env()
    assert torch.backends.cpu.get_cpu_capability() == "AVX2", torch.backends.cpu.get_cpu_capability()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out_dir = os.path.join(out_root, "pipeline")
    root = os.path.join(out_dir, "tiny-sd")
    os.makedirs(root, exist_ok=True)
    te, unet, vae = build_models()
    write_folder(root, te, unet, vae)
    pipe = load_pipeline(root, te, unet, vae)

    pil, arr = init_picture()
    with open(os.path.join(out_dir, "init.png"), "wb") as f:
        f.write(png_bytes(arr))

    exp, meta = {}, {}
    exp["init_image.u8"] = torch.from_numpy(arr.copy())
    pre = pipe.image_processor.preprocess(pil)
    exp["init_image.tensor"] = pre
    all_draws, ctx0, infos = {}, None, {}
    for case in CASES:
        p, rec, image = run_case(pipe, case, pil)
        out, info, ctx = derive(case, p, rec, image)
        if case.startswith("img2img"):
            assert torch.equal(out["vae.image"], pre)
        (ids_c, emb_c), (ids_u, emb_u) = rec.text
        if ctx0 is None:
            ctx0 = ctx
            exp["text.cond_ids"] = ids_c[0].to(torch.int32)
            exp["text.uncond_ids"] = ids_u[0].to(torch.int32)
            exp["text.cond"] = emb_c
            exp["text.uncond"] = emb_u
            assert torch.equal(ctx, torch.cat([emb_u, emb_c]))
        assert torch.equal(ctx, ctx0)
        for k, v in out.items():
            exp["%s.%s" % (case, k)] = v
        all_draws[case] = rec.draws
        sched = p.scheduler
        cfg = {k: v for k, v in dict(sched.config).items()}
        settings = {"pipeline": type(p).__name__, "prompt": PROMPT, "negative_prompt": NEGATIVE,
                    "num_inference_steps": STEPS, "guidance_scale": CFG, "seed": SEED,
                    "generator": 'torch.Generator("cpu").manual_seed(%d)' % SEED,
                    "scheduler": type(sched).__name__, "scheduler_config": cfg, "eta": 0.0}
        if case.startswith("img2img"):
            settings.update(strength=STRENGTH, image="init.png (%d x %d)" % (WIDTH, HEIGHT))
        else:
            settings.update(height=HEIGHT, width=WIDTH)
        settings.update(info)
        draws = []
        for k, d in enumerate(rec.draws):
            what = ("initial latents (prepare_latents: randn_tensor, then * init_noise_sigma)"
                    if not case.startswith("img2img") else
                    ["VAE posterior sample (retrieve_latents -> latent_dist.sample: mean + std * noise)",
                     "img2img noise (prepare_latents: randn_tensor, then scheduler.add_noise)"][k])
            draws.append({"index": k, "tensor": "%s.noise.%d" % (case, k), "shape": list(d.shape), "what": what})
        settings["generator_draws"] = draws
        meta[case] = json.dumps(json_safe(settings), sort_keys=True, allow_nan=False)
        # a sanity of the picture: not flat, not all clipped
        img = out["image"]
        clipped = ((out["decoded"] <= -1) | (out["decoded"] >= 1)).float().mean().item()
        infos[case] = (img.std().item(), img.min().item(), img.max().item(), clipped,
                       out["final_latents"].std().item(), len(np.unique(out["image_u8"].numpy())))
        with open(os.path.join(out_dir, case + ".png"), "wb") as f:
            f.write(png_bytes(out["image_u8"].numpy()[0]))

    with tempfile.TemporaryDirectory() as tmp:
        other = check_other_capability(all_draws, tmp)
    k_sig, ksum = k_diffusion_compare(pipe, exp)
    exp["txt2img_dpmpp2m_karras.k_diffusion_sigmas"] = k_sig
    meta["dpmpp2m_vs_k_diffusion"] = json.dumps(ksum, sort_keys=True)
    print("DPM++ 2M Karras, diffusers vs k-diffusion:", json.dumps(ksum, indent=1, sort_keys=True))
    fresh = torch.randn(all_draws["txt2img_euler"][0].shape, generator=torch.Generator("cpu").manual_seed(SEED))
    assert torch.equal(fresh, all_draws["txt2img_euler"][0])

    meta["generator"] = "tools/gen_pipeline_fixtures.py: diffusers %s, transformers %s, torch %s, numpy %s" % (
        diffusers.__version__, transformers.__version__, torch.__version__, np.__version__)
    meta["rng"] = ("torch CPU generator, normal_ kernel of ATEN_CPU_CAPABILITY=avx2 (difusa DF_RNG_CPU); "
                   "the %s capability of the generating machine drew the same bits" % other)
    meta["latent_factor"] = "4"
    meta["size"] = json.dumps({"height": HEIGHT, "width": WIDTH, "latent_height": HEIGHT // 4,
                               "latent_width": WIDTH // 4})
    meta["weight_gains"] = json.dumps(GAIN, sort_keys=True)
    write_safetensors(os.path.join(out_dir, "expected.safetensors"),
                      {k: entry(v.float() if v.dtype == torch.float64 else v) for k, v in exp.items()}, meta)

    write_readme(out_dir, exp, meta, infos, other, ksum)
    print("%-24s %8s %8s %8s %8s %8s %6s" % ("case", "img std", "min", "max", "clipped", "lat std", "levels"))
    for case, (sd, lo, hi, cl, ls, lv) in infos.items():
        print("%-24s %8.4f %8.4f %8.4f %8.4f %8.4f %6d" % (case, sd, lo, hi, cl, ls, lv))
    for r, _, fs in sorted(os.walk(out_dir)):
        for f in sorted(fs):
            pth = os.path.join(r, f)
            print("%9d  %s" % (os.path.getsize(pth), os.path.relpath(pth, out_dir)))
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(root) for f in fs)
    print("tiny-sd: %d bytes" % total)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--draws-worker":
        draws_worker(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")

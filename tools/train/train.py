"""Trains models/tiny-shapes (a tiny Stable Diffusion 1.x folder and a tiny class-conditional DiT) on the
procedural shapes dataset (tools/train/shapes.py), on a GPU (--device cuda, the default when there is one)
or a CPU, from fixed seeds.

Stages (each resumes from its checkpoint in tools/train/ckpt/ and is skipped once done):
  vae      AutoencoderKL 64 x 64 x 3 -> 4 x 16 x 16, L1 + L2 + a small KL; then its weights are rounded to
           f16 (what is exported), its reconstruction PSNR is measured and the latent scaling factor set
  decoder  the finished VAE's decoder fine-tuned with its encoder frozen (the latents stay valid): sharper edges
  unet     UNet2DConditionModel + CLIPTextModel trained jointly (epsilon, SD1's scaled_linear schedule)
  dit      the DiT (tools/train/dit.py, DiT's models.py layout) on the same latents, class = colour x shape
  export   writes models/tiny-shapes/ (f16 safetensors, diffusers layout; dit/ in DiT's original layout)
  samples  sample grids and prompt-adherence numbers from the exported folder (tools/train/samples/)
  all      every stage in order
  preview  a quick grid from the newest UNet / DiT checkpoint (monitoring; writes tools/train/samples/preview*.png)

The shipped model: tools/train/gpu-train.sh (step counts sized to a time budget). On a CPU, in the background:
  TRAIN_THREADS=2 nohup tools/.venv/bin/python tools/train/train.py all >> tools/train/train.log 2>&1 &
The same command resumes after an interruption (tools/train/README.md has the details and timings).
--extend unet=N (dit=N) trains a finished stage on for N more steps (how the shipped model was finished on a CPU).
"""
import argparse
import json
import math
import os
import sys
import time

THREADS = int(os.environ.get("TRAIN_THREADS", "1"))  # CPU threads (1 = the reproducible CPU run)
for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = str(THREADS)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, HERE)
sys.path.insert(0, TOOLS)

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)
torch.set_num_interop_threads(1)
DEV = torch.device("cpu")  # set by --device
PARTIAL = False  # --partial: export the newest checkpoints of unfinished stages (monitoring; never shipped)
DEADLINE = None  # time.time() after which a training stage stops early (--deadline-s), None: never

import dit as ditmod  # noqa: E402
import shapes  # noqa: E402

SEED = 20240607
STAGE_ID = {"vae": 1, "unet": 2, "dit": 3, "decoder": 4, "eval": 9}

CFG = {
    "seed": SEED,
    # rendered once per stage in parallel, then sampled per step (captions re-drawn per step)
    "pool": dict(unet=200000, dit=100000, decoder=50000, chunk=500),
    "vae": dict(block_out_channels=[32, 64, 64], layers_per_block=1, norm_num_groups=8, latent_channels=4,
                batch=64, steps=4000, lr=1e-3, warmup=200, kl_weight=1e-6, logvar_init=-8.0, ckpt_every=1000),
    "text": dict(vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                 max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=49406,
                 eos_token_id=49407, pad_token_id=1, projection_dim=64),
    "decoder": dict(batch=32, steps=3000, lr=3e-4, warmup=100, grad_weight=1.0, ckpt_every=250),
    "unet": dict(block_out_channels=[64, 96, 128], layers_per_block=1, norm_num_groups=8, attention_head_dim=4,
                 batch=256, steps=6000, lr=1e-3, te_lr=5e-4, warmup=300, p_uncond=0.1, offset_noise=0.1,
                 weighting="trunc_min_snr", min_snr=5.0, snr_floor=1.0, weight_cap=10.0,
                 ema=0.999, grad_clip=1.0, ckpt_every=1000),
    "dit": dict(hidden_size=128, depth=6, num_heads=4, patch_size=2, mlp_ratio=4.0, class_dropout_prob=0.1,
                batch=256, steps=8000, lr=8e-4, warmup=300, weighting="trunc_min_snr", min_snr=5.0, snr_floor=1.0,
                weight_cap=10.0, ema=0.999, grad_clip=1.0, ckpt_every=1000),
    "sample": dict(steps=20, cfg=5.0, dit_steps=50, dit_cfg=4.0),
}
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 prediction_type="epsilon", timestep_spacing="leading", steps_offset=1)

CKPT = os.path.join(HERE, "ckpt")
OUT = os.path.join(ROOT, "models", "tiny-shapes")
SAMPLES = os.path.join(HERE, "samples")


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def step_rng(stage, step, extra=0):
    return np.random.default_rng([SEED, STAGE_ID[stage], step, extra])


def step_gen(stage, step, extra=0):
    s = np.random.SeedSequence([SEED, STAGE_ID[stage], step, extra, 7]).generate_state(2, np.uint64)[0]
    return torch.Generator().manual_seed(int(s) & ((1 << 63) - 1))


def lr_at(step, total, base, warmup):
    """Linear warm-up, then cosine down to a tenth."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


EXTEND = {}  # stage -> more steps (--extend): a finished stage reopened and trained on with a fresh schedule


def phase(stage, c, state, ck):
    """The training phase step state["step"] is in, as state["phases"] records them: the first is the stage's own
    run (c["steps"] with c's batch and learning rates); --extend STAGE=N on a finished stage appends one of N more
    steps that starts from the trained weights, optimiser and EMA, with a warm-up of a tenth (at most 100 steps)
    and a cosine of its own, at the batch and rates c has then (--set). A resumed run keeps its phase's settings,
    which are written into c. Returns (the phase, its end)."""
    done = bool(ck and ck.get("done"))
    ph = state.setdefault("phases", [])
    keys = [k for k in ("batch", "lr", "te_lr") if k in c]
    if not ph:  # the stage's own run, as the checkpoint's config had it
        c0 = ck["config"][stage] if ck else c
        ph.append(dict(start=0, steps=state["step"] if done else c0["steps"], warmup=c0["warmup"],
                       **{k: c0[k] for k in keys}))
    if done and EXTEND.get(stage):
        n = EXTEND[stage]
        ph.append(dict(start=state["step"], steps=n, warmup=min(100, max(1, n // 10)), **{k: c[k] for k in keys}))
        log("[%s] extending by %d steps from step %d: %s" % (stage, n, state["step"], ph[-1]))
    last = ph[-1]
    c.update({k: last[k] for k in keys})
    return last, last["start"] + last["steps"]


def load_opt(opt, ck, stage):
    """The optimiser state of a checkpoint; the shipped checkpoints were slimmed to the weights and EMA, so an
    extension of those starts a fresh AdamW (its warm-up covers that)."""
    if "opt" in ck:
        opt.load_state_dict(ck["opt"])
    else:
        log("[%s] the checkpoint has no optimiser state: a fresh AdamW" % stage)


def phase_lr(last, step, base):
    return lr_at(step - last["start"], last["steps"], base, last["warmup"])


class EMA:
    def __init__(self, model, decay):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, model, step):
        d = min(self.decay, (1 + step) / (10 + step))
        sd = model.state_dict()
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [sd[k] for k in keys], 1 - d)

    def load(self, shadow):
        self.shadow = {k: v.to(DEV, torch.float32) for k, v in shadow.items()}  # (the slimmed checkpoints hold f16)

    def copy_to(self, model):
        sd = model.state_dict()
        sd.update(self.shadow)
        model.load_state_dict(sd)


def save_ckpt(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=False) if os.path.exists(path) else None


def round_f16(model):
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.dtype == torch.float32:
                v.copy_(v.half().float())
    return model


def fmt_time(s):
    return "%d:%02d" % (s // 60, s % 60)


# ------------------------------------------------------------------------------------------- models

def make_vae(scaling_factor=0.18215):
    from diffusers import AutoencoderKL

    c = CFG["vae"]
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 3,
                         up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=c["block_out_channels"],
                         layers_per_block=c["layers_per_block"], latent_channels=c["latent_channels"],
                         norm_num_groups=c["norm_num_groups"], sample_size=64, scaling_factor=scaling_factor)


def make_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(SEED + 21)
    return CLIPTextModel(CLIPTextConfig(**CFG["text"]))


def make_unet():
    from diffusers import UNet2DConditionModel

    c = CFG["unet"]
    torch.manual_seed(SEED + 22)
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4,
        down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        block_out_channels=c["block_out_channels"], layers_per_block=c["layers_per_block"],
        norm_num_groups=c["norm_num_groups"], cross_attention_dim=CFG["text"]["hidden_size"],
        attention_head_dim=c["attention_head_dim"], use_linear_projection=False)


def make_dit():
    c = CFG["dit"]
    torch.manual_seed(SEED + 23)
    return ditmod.DiT(input_size=16, patch_size=c["patch_size"], in_channels=4, hidden_size=c["hidden_size"],
                      depth=c["depth"], num_heads=c["num_heads"], mlp_ratio=c["mlp_ratio"],
                      class_dropout_prob=c["class_dropout_prob"], num_classes=len(shapes.CLASSES), learn_sigma=True)


def tokenizer_dir():
    d = os.path.join(CKPT, "tokenizer")
    if not os.path.exists(os.path.join(d, "tokenizer_config.json")):
        from gen_pipeline_fixtures import write_tokenizer

        write_tokenizer(d)
    return d


def load_tokenizer():
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(tokenizer_dir(), local_files_only=True)
    assert tok.fix_text is None, "transformers took the ftfy path"
    return tok


class Tokens:
    """Token ids of captions, padded to 77 with <|endoftext|> as the pipeline does. The captions are lowercase
    words and single spaces, and CLIP's BPE works word by word, so a caption's ids are <|startoftext|>, each
    word's ids (from the tokenizer, cached), <|endoftext|>: the first captions are checked against the whole
    tokenizer."""

    def __init__(self, tok):
        self.tok, self.words, self.checked = tok, {}, 0

    def ids(self, c):
        out = [self.tok.bos_token_id]
        for w in c.split():
            if w not in self.words:
                self.words[w] = self.tok(w, add_special_tokens=False).input_ids
            out += self.words[w]
        out = (out + [self.tok.eos_token_id] * 77)[:77]
        if self.checked < 200:
            self.checked += 1
            ref = self.tok(c, padding="max_length", max_length=77, truncation=True).input_ids
            assert out == ref, (c, out, ref)
        return out

    def __call__(self, caps):
        return torch.tensor([self.ids(c) for c in caps], dtype=torch.long)


def sd_alphas_cumprod():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def loss_weights(ac, c):
    """Per-timestep weights of the epsilon MSE. "min_snr": min(snr, g) / snr (Min-SNR-g). "trunc_min_snr": the
    x0-space weight clamp(snr, floor, g), i.e. clamp(snr, floor, g) / snr on the epsilon MSE, capped at
    weight_cap and normalised to mean 1 over the 1000 timesteps: at high noise (snr < floor) the x0 error,
    which is where the layout (where the shape is, what colour) is decided, keeps weight 1 instead of
    fading with snr as it does under a plain or Min-SNR epsilon loss. "none": 1."""
    ac = torch.as_tensor(ac, dtype=torch.float64)
    snr = ac / (1 - ac)
    kind = c.get("weighting", "min_snr")
    if kind == "none":
        w = torch.ones_like(snr)
    elif kind == "min_snr":
        w = torch.clamp(snr, max=c["min_snr"]) / snr
    elif kind == "trunc_min_snr":
        w = torch.clamp(torch.clamp(snr, min=c["snr_floor"], max=c["min_snr"]) / snr, max=c["weight_cap"])
        w = w / w.mean()
    else:
        raise ValueError(kind)
    return w.to(torch.float32)


def load_final_vae():
    ck = load_ckpt(os.path.join(CKPT, "vae.pt"))
    assert ck and ck.get("done"), "the vae stage has not finished"
    vae = make_vae(ck["scaling_factor"])
    vae.load_state_dict(ck["final"])
    dck = load_ckpt(os.path.join(CKPT, "decoder.pt")) if PARTIAL and "decoder" not in ck else None
    if dck:  # --partial: the decoder stage's newest checkpoint
        vae.load_state_dict(dck["model"])
        round_f16(vae)
    return vae.eval().requires_grad_(False), ck["scaling_factor"]


def _render_chunk(job):
    kind, k, n = job
    rng = np.random.default_rng([SEED, 50 + STAGE_ID[kind], k])
    imgs, ps = [], []
    for _ in range(n):
        p = shapes.sample_params(rng, heldout_ok=kind == "dit", n_shapes=1 if kind == "dit" else None)
        imgs.append(shapes.render(p))
        ps.append(p)
    return np.stack(imgs), ps


class Pool:
    """CFG["pool"][kind] (or n) scenes rendered once, in parallel (TRAIN_WORKERS processes, default one per
    CPU), from fixed per-chunk seeds, so the pool is the same whatever the worker count (and a smaller one is the
    start of a larger one). "unet": the training distribution (held-out combinations excluded; one and two
    shapes); "dit": one-shape scenes of every class."""

    def __init__(self, kind, n=None):
        n, chunk = n or CFG["pool"][kind], CFG["pool"]["chunk"]
        jobs = [(kind, k, min(chunk, n - k * chunk)) for k in range((n + chunk - 1) // chunk)]
        workers = max(1, min(len(jobs), int(os.environ.get("TRAIN_WORKERS", os.cpu_count() or 1))))
        t0 = time.time()
        if workers > 1:
            import multiprocessing as mp

            with mp.get_context("fork").Pool(workers) as pool:
                parts = pool.map(_render_chunk, jobs, chunksize=1)
        else:
            parts = [_render_chunk(j) for j in jobs]
        self.images = np.concatenate([p[0] for p in parts])  # N x 64 x 64 x 3 uint8
        self.params = [q for p in parts for q in p[1]]
        self.n = len(self.params)
        log("[pool] %d %s scenes rendered in %.1f s (%d workers)" % (self.n, kind, time.time() - t0, workers))

    def pixels(self, idx):
        """float32 B x 3 x 64 x 64 in [-1, 1] on DEV."""
        x = torch.from_numpy(self.images[idx]).to(DEV).permute(0, 3, 1, 2).float()
        return x / 127.5 - 1.0


@torch.no_grad()
def encode_pool(vae, pool, bs=500):
    """The VAE posterior (mean, std) of every pool picture, on DEV."""
    t0 = time.time()
    means, stds = [], []
    for i in range(0, pool.n, bs):
        d = vae.encode(pool.pixels(np.arange(i, min(pool.n, i + bs)))).latent_dist
        means.append(d.mean)
        stds.append(d.std)
    log("[pool] %d latents in %.1f s" % (pool.n, time.time() - t0))
    return torch.cat(means), torch.cat(stds)


def dev_randn(shape, gen):
    return torch.randn(shape, generator=gen).to(DEV)


# ------------------------------------------------------------------------------------------- loop

def run_loop(stage, total, ckpt_every, state, step_fn, save_fn, extra_log=None):
    """Steps state['step'] .. total-1 of step_fn(step) -> dict of floats; checkpoints every ckpt_every steps."""
    path = os.path.join(CKPT, stage + ".pt")
    t_run, window, last_t, last_step = time.time(), {}, time.time(), state["step"]
    elapsed0 = state.get("elapsed", 0.0)
    step = state["step"]
    while step < total:
        if DEADLINE is not None and time.time() > DEADLINE:
            log("[%s] WARNING: deadline reached, stopping at step %d of %d" % (stage, step, total))
            state["stopped_early"] = step
            break
        vals = step_fn(step)
        for k, v in vals.items():
            window.setdefault(k, []).append(v)
        step += 1
        if step % 25 == 0 or step == total:
            el = elapsed0 + time.time() - t_run
            rate = (time.time() - last_t) / max(1, step - last_step)
            last_t, last_step = time.time(), step
            eta = (total - step) * rate
            means = {k: float(torch.stack([torch.as_tensor(x, dtype=torch.float32, device="cpu") if not
                                           torch.is_tensor(x) else x.detach().float().cpu() for x in v]).mean())
                     for k, v in window.items()}
            msg = " ".join("%s %.4f" % kv for kv in means.items())
            state.setdefault("history", []).append(dict(step=step, **means))
            window = {}
            log("[%s] %d/%d %s | %.4f s/step, %s elapsed, ETA %s" % (stage, step, total, msg, rate, fmt_time(el),
                                                                     fmt_time(eta)))
        if step % ckpt_every == 0 or step == total:
            state["step"] = step
            state["elapsed"] = elapsed0 + time.time() - t_run
            save_ckpt(path, save_fn(state))
    state["elapsed"] = elapsed0 + time.time() - t_run
    state["step"] = step
    return state


# ------------------------------------------------------------------------------------------- vae

def vae_eval_set(n=512):
    rng = step_rng("eval", 0)
    x, _, _ = shapes.batch(rng, n, heldout_ok=True)
    return x


def psnr_u8(vae, x, bs=64):
    """PSNR (dB) of the uint8 reconstructions (decode of the posterior mean) against the uint8 originals."""
    mses = []
    with torch.no_grad():
        for i in range(0, len(x), bs):
            xb = torch.from_numpy(x[i:i + bs])
            rec = vae.decode(vae.encode(xb).latent_dist.mean).sample
            a = torch.round((xb.clamp(-1, 1) + 1) * 127.5)
            b = torch.round((rec.clamp(-1, 1) + 1) * 127.5)
            mses.append(((a - b) ** 2).mean(dim=(1, 2, 3)))
    m = torch.cat(mses)
    return float(10 * torch.log10(255.0 ** 2 / m.mean())), float((10 * torch.log10(255.0 ** 2 / m.clamp(min=1e-3))).mean())


def stage_vae():
    c = CFG["vae"]
    path = os.path.join(CKPT, "vae.pt")
    ck = load_ckpt(path)
    if ck and ck.get("done"):
        log("[vae] done (%s, PSNR %.2f dB, scaling factor %.5f)" % (fmt_time(ck["elapsed"]), ck["psnr"],
                                                                   ck["scaling_factor"]))
        return
    pool = Pool("unet")
    torch.manual_seed(SEED + 11)
    vae = make_vae().train()
    with torch.no_grad():  # start with a near-deterministic posterior (std e^-4): unit-std noise drowns the latents
        L = c["latent_channels"]
        vae.quant_conv.weight[L:].zero_()
        vae.quant_conv.bias[L:].fill_(c["logvar_init"])
    vae.to(DEV)
    opt = torch.optim.AdamW(vae.parameters(), lr=c["lr"], weight_decay=0.0)
    state = {"step": 0}
    if ck:
        vae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        log("[vae] resuming at step %d" % state["step"])
    else:
        log("[vae] %.3fM parameters, %d steps of %d" % (sum(p.numel() for p in vae.parameters()) / 1e6, c["steps"],
                                                       c["batch"]))

    def step_fn(step):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, c["steps"], c["lr"], c["warmup"])
        x = pool.pixels(step_rng("vae", step).integers(0, pool.n, c["batch"]))
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * dev_randn(post.mean.shape, step_gen("vae", step))
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        l2 = ((rec - x) ** 2).mean()
        kl = post.kl().mean() / x[0].numel()
        loss = l1 + l2 + c["kl_weight"] * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"l1": l1.detach(), "l2": l2.detach(), "kl": kl.detach()}

    def save_fn(st):
        return {"model": vae.state_dict(), "opt": opt.state_dict(), "state": st, "config": CFG}

    state = run_loop("vae", c["steps"], c["ckpt_every"], state, step_fn, save_fn)
    # finish: round to f16, measure, set the scaling factor
    vae.eval().cpu()
    round_f16(vae)
    x = vae_eval_set()
    psnr, psnr_img = psnr_u8(vae, x)
    with torch.no_grad():
        zs = torch.cat([vae.encode(torch.from_numpy(x[i:i + 64])).latent_dist.sample(generator=step_gen("eval", i))
                        for i in range(0, len(x), 64)])
    std = float(zs.std())
    sf = float("%.5g" % (1.0 / std))
    log("[vae] done in %s: PSNR %.2f dB (mean of per-image %.2f dB), latent mean %.3f std %.3f, per-channel mean %s, "
        "scaling factor %.5g" % (fmt_time(state["elapsed"]), psnr, psnr_img, float(zs.mean()), std,
                                 [round(float(v), 3) for v in zs.mean(dim=(0, 2, 3))], sf))
    save_ckpt(path, {"model": vae.state_dict(), "final": vae.state_dict(), "state": state, "config": CFG, "done": True,
                     "elapsed": state["elapsed"], "psnr": psnr, "psnr_per_image": psnr_img, "scaling_factor": sf,
                     "latent_std": std})


def image_grad_l1(a, b):
    """L1 distance of the horizontal and vertical pixel differences: weighs edges and corners, which the plain
    pixel losses of a small decoder blur first."""
    return ((a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])).abs().mean() + \
        ((a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])).abs().mean()


def stage_decoder():
    """Fine-tunes the finished VAE's decoder (post_quant_conv and decoder) with the encoder frozen: the latents,
    the scaling factor and so every stage trained on them stay valid, while the pictures decoded from them get
    sharper (L1 + L2 + the L1 of pixel differences). Steps CFG["decoder"]["steps"] (--steps decoder=N), on the
    first CFG["pool"]["decoder"] scenes of the VAE's pool; the result replaces vae.pt's final weights (the
    original ones are kept in it as "final_before_decoder")."""
    c = CFG["decoder"]
    vpath, path = os.path.join(CKPT, "vae.pt"), os.path.join(CKPT, "decoder.pt")
    vck = load_ckpt(vpath)
    assert vck and vck.get("done"), "the vae stage has not finished"
    if "decoder" in vck:
        log("[decoder] done (%d steps, PSNR %.2f -> %.2f dB)" % (vck["decoder"]["steps"], vck["decoder"]["psnr_before"],
                                                               vck["psnr"]))
        return
    vae, sf = load_final_vae()
    vae.to(DEV)
    vae.decoder.requires_grad_(True).train()
    vae.post_quant_conv.requires_grad_(True)
    params = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=c["lr"], weight_decay=0.0)
    ck = load_ckpt(path)
    state = {"step": 0}
    if ck:
        vae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        log("[decoder] resuming at step %d" % state["step"])
    else:
        log("[decoder] %.3fM decoder parameters, %d steps of %d" % (sum(p.numel() for p in params) / 1e6, c["steps"],
                                                                   c["batch"]))
    pool = Pool("unet", CFG["pool"]["decoder"])  # the first scenes of the VAE's own pool (same chunk seeds)

    def step_fn(step):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, c["steps"], c["lr"], c["warmup"])
        x = pool.pixels(step_rng("vae", step, 1).integers(0, pool.n, c["batch"]))
        with torch.no_grad():
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * dev_randn(post.mean.shape, step_gen("vae", step, 1))
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        l2 = ((rec - x) ** 2).mean()
        lg = image_grad_l1(rec, x)
        loss = l1 + l2 + c["grad_weight"] * lg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"l1": l1.detach(), "l2": l2.detach(), "grad": lg.detach()}

    def save_fn(st):
        return {"model": vae.state_dict(), "opt": opt.state_dict(), "state": st, "config": CFG}

    state = run_loop("decoder", c["steps"], c["ckpt_every"], state, step_fn, save_fn)
    vae.eval().cpu()
    round_f16(vae)
    psnr, psnr_img = psnr_u8(vae, vae_eval_set())
    log("[decoder] done in %s: PSNR %.2f dB (was %.2f), per-image mean %.2f dB" % (
        fmt_time(state["elapsed"]), psnr, vck["psnr"], psnr_img))
    vck.update(final_before_decoder=vck["final"], final=vae.state_dict(), psnr=psnr, psnr_per_image=psnr_img,
               decoder=dict(steps=state["step"], elapsed=state["elapsed"], psnr_before=vck["psnr"],
                            psnr_per_image_before=vck["psnr_per_image"], config=dict(c)))
    save_ckpt(vpath, vck)


# ------------------------------------------------------------------------------------------- unet + clip

def stage_unet():
    c = CFG["unet"]
    path = os.path.join(CKPT, "unet.pt")
    ck = load_ckpt(path)
    if ck and ck.get("done") and not EXTEND.get("unet"):
        log("[unet] done (%s)" % fmt_time(ck["elapsed"]))
        return
    vae, sf = load_final_vae()
    pool = Pool("unet")
    zmean, zstd = encode_pool(vae.to(DEV), pool)
    tokens = Tokens(load_tokenizer())
    te, unet = make_text_encoder().train().to(DEV), make_unet().train().to(DEV)
    opt = torch.optim.AdamW([{"params": unet.parameters(), "lr": c["lr"], "base": c["lr"]},
                             {"params": te.parameters(), "lr": c["te_lr"], "base": c["te_lr"]}], weight_decay=0.0)
    ema_u, ema_t = EMA(unet, c["ema"]), EMA(te, c["ema"])
    state = {"step": 0}
    if ck:
        unet.load_state_dict(ck["unet"])
        te.load_state_dict(ck["te"])
        load_opt(opt, ck, "unet")
        ema_u.load(ck["ema_unet"])
        ema_t.load(ck["ema_te"])
        state = ck["state"]
        log("[unet] resuming at step %d" % state["step"])
    else:
        log("[unet] UNet %.3fM + text encoder %.3fM parameters, %d steps of %d, scaling factor %.5g" % (
            sum(p.numel() for p in unet.parameters()) / 1e6, sum(p.numel() for p in te.parameters()) / 1e6,
            c["steps"], c["batch"], sf))
    last, total = phase("unet", c, state, ck)
    for g, k in zip(opt.param_groups, ("lr", "te_lr")):
        g["base"] = c[k]
    ac = sd_alphas_cumprod().to(DEV)
    weight = loss_weights(ac.cpu(), c).to(DEV)
    params = list(unet.parameters()) + list(te.parameters())

    def step_fn(step):
        for g in opt.param_groups:
            g["lr"] = phase_lr(last, step, g["base"])
        rng, gen = step_rng("unet", step), step_gen("unet", step)
        idx = rng.integers(0, pool.n, c["batch"])
        caps = [shapes.caption(pool.params[i], rng) for i in idx]
        caps = ["" if rng.random() < c["p_uncond"] else s for s in caps]
        ids = tokens(caps).to(DEV)
        ti = torch.from_numpy(idx).to(DEV)
        z = (zmean[ti] + zstd[ti] * dev_randn(zmean[ti].shape, gen)) * sf
        B = z.shape[0]
        noise = dev_randn(z.shape, gen) + c["offset_noise"] * dev_randn((B, 4, 1, 1), gen)
        t = torch.randint(0, 1000, (B,), generator=gen).to(DEV)
        a = ac[t].view(B, 1, 1, 1)
        zt = a.sqrt() * z + (1 - a).sqrt() * noise
        enc = te(ids)[0]
        pred = unet(zt, t, encoder_hidden_states=enc).sample
        per = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (weight[t] * per).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, c["grad_clip"])
        opt.step()
        ema_u.update(unet, step)
        ema_t.update(te, step)
        return {"loss": loss.detach(), "mse": per.mean().detach(), "gnorm": gn.detach()}

    def save_fn(st):
        return {"unet": unet.state_dict(), "te": te.state_dict(), "opt": opt.state_dict(), "ema_unet": ema_u.shadow,
                "ema_te": ema_t.shadow, "state": st, "config": CFG}

    state = run_loop("unet", total, c["ckpt_every"], state, step_fn, save_fn)
    out = save_fn(state)
    out.update(done=True, elapsed=state["elapsed"])
    save_ckpt(path, out)
    log("[unet] done in %s" % fmt_time(state["elapsed"]))


# ------------------------------------------------------------------------------------------- dit

def stage_dit():
    c = CFG["dit"]
    path = os.path.join(CKPT, "dit.pt")
    ck = load_ckpt(path)
    if ck and ck.get("done") and not EXTEND.get("dit"):
        log("[dit] done (%s)" % fmt_time(ck["elapsed"]))
        return
    vae, sf = load_final_vae()
    pool = Pool("dit")
    zmean, zstd = encode_pool(vae.to(DEV), pool)
    labels = torch.tensor([shapes.class_index(p["objs"][0]["shape"], p["objs"][0]["colour"]) for p in pool.params],
                          device=DEV)
    model = make_dit().train().to(DEV)
    diff = ditmod.Diffusion.linear()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=c["lr"], weight_decay=0.0)
    ema = EMA(model, c["ema"])
    state = {"step": 0}
    if ck:
        model.load_state_dict(ck["model"])
        load_opt(opt, ck, "dit")
        ema.load(ck["ema"])
        state = ck["state"]
        log("[dit] resuming at step %d" % state["step"])
    else:
        log("[dit] %.3fM parameters, %d classes, %d steps of %d" % (
            sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, len(shapes.CLASSES), c["steps"],
            c["batch"]))
    last, total = phase("dit", c, state, ck)
    params = [p for p in model.parameters() if p.requires_grad]
    weight = loss_weights(diff.alphas_cumprod, c).to(DEV)

    def step_fn(step):
        for g in opt.param_groups:
            g["lr"] = phase_lr(last, step, c["lr"])
        rng, gen = step_rng("dit", step), step_gen("dit", step)
        ti = torch.from_numpy(rng.integers(0, pool.n, c["batch"])).to(DEV)
        z = (zmean[ti] + zstd[ti] * dev_randn(zmean[ti].shape, gen)) * sf
        B = z.shape[0]
        t = torch.randint(0, 1000, (B,), generator=gen).to(DEV)
        noise = dev_randn(z.shape, gen)
        zt = diff.q_sample(z, t, noise)
        drop = (torch.rand(B, generator=gen) < c["class_dropout_prob"]).to(DEV)
        out = model(zt, t, labels[ti], drop)
        _, mse, vb = diff.training_losses(out, z, zt, t, noise)
        loss = (weight[t] * mse + vb).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, c["grad_clip"])
        opt.step()
        ema.update(model, step)
        return {"loss": loss.detach(), "mse": mse.mean().detach(), "vb": vb.mean().detach(), "gnorm": gn.detach()}

    def save_fn(st):
        return {"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema.shadow, "state": st, "config": CFG}

    state = run_loop("dit", total, c["ckpt_every"], state, step_fn, save_fn)
    out = save_fn(state)
    out.update(done=True, elapsed=state["elapsed"])
    save_ckpt(path, out)
    log("[dit] done in %s" % fmt_time(state["elapsed"]))


# ------------------------------------------------------------------------------------------- export

def trained_models(ema=True, allow_partial=False):
    """(te, unet) from the unet checkpoint (EMA weights), rounded to f16."""
    ck = load_ckpt(os.path.join(CKPT, "unet.pt"))
    assert ck and (ck.get("done") or allow_partial), "the unet stage has not finished"
    te, unet = make_text_encoder(), make_unet()
    te.load_state_dict(ck["te"])
    unet.load_state_dict(ck["unet"])
    if ema:
        sd = te.state_dict()
        sd.update(ck["ema_te"])
        te.load_state_dict(sd)
        sd = unet.state_dict()
        sd.update(ck["ema_unet"])
        unet.load_state_dict(sd)
    return round_f16(te.eval()), round_f16(unet.eval()), ck["state"]["step"]


def trained_dit(allow_partial=False):
    ck = load_ckpt(os.path.join(CKPT, "dit.pt"))
    assert ck and (ck.get("done") or allow_partial), "the dit stage has not finished"
    model = make_dit()
    sd = model.state_dict()
    sd.update(ck["ema"])
    model.load_state_dict(sd)
    return round_f16(model.eval()), ck["state"]["step"]


def build_pipeline(te, unet, vae):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=load_tokenizer(), unet=unet,
                                   scheduler=EulerDiscreteScheduler(**SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def dit_config(sf):
    c = CFG["dit"]
    return {
        "_format": "facebookresearch/DiT models.py state dict (DiT(input_size, patch_size, in_channels, hidden_size, "
                   "depth, num_heads, mlp_ratio, class_dropout_prob, num_classes, learn_sigma)), F16",
        "input_size": 16, "patch_size": c["patch_size"], "in_channels": 4, "hidden_size": c["hidden_size"],
        "depth": c["depth"], "num_heads": c["num_heads"], "mlp_ratio": c["mlp_ratio"],
        "class_dropout_prob": c["class_dropout_prob"], "num_classes": len(shapes.CLASSES), "learn_sigma": True,
        "out_channels": 8, "null_class": len(shapes.CLASSES),
        "classes": shapes.CLASSES,
        "class_index": "shape_index * %d + colour_index" % len(shapes.COLOUR_NAMES),
        "shapes": shapes.SHAPES, "colours": shapes.COLOUR_NAMES,
        "diffusion": {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02,
                      "prediction_type": "epsilon", "variance_type": "learned_range",
                      "timestep_input": "the integer training timestep 0..999 (DiT's t_embedder, no rescaling)"},
        "vae": "../vae", "latent_scaling_factor": sf, "image_size": 64, "latent_size": 16,
        "guide_channels": 4,
        "sampling": {"cfg_scale": CFG["sample"]["dit_cfg"], "respaced_steps": CFG["sample"]["dit_steps"],
                     "note": "DiT's sample.py: p_sample_loop on the respaced diffusion, guidance on the epsilon half, "
                             "the variance from the conditional half"},
        "diffusers": {"class": "DiTTransformer2DModel", "num_attention_heads": c["num_heads"],
                      "attention_head_dim": c["hidden_size"] // c["num_heads"], "num_layers": c["depth"],
                      "sample_size": 16, "num_embeds_ada_norm": len(shapes.CLASSES)},
    }


def stage_export():
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from fixture_io import write_safetensors
    from gen_pipeline_fixtures import dump_json, entry, f16_entries, write_tokenizer

    vae, sf = load_final_vae()
    te, unet, _ = trained_models(allow_partial=PARTIAL)
    dmodel, _ = trained_dit(allow_partial=PARTIAL)
    os.makedirs(OUT, exist_ok=True)
    d = os.path.join(OUT, "text_encoder")
    os.makedirs(d, exist_ok=True)
    cfg = json.loads(te.config.to_json_string())
    cfg["architectures"] = ["CLIPTextModel"]
    dump_json(os.path.join(d, "config.json"), cfg)
    write_safetensors(os.path.join(d, "model.safetensors"), f16_entries(te, skip=("position_ids",)), {"format": "pt"})
    write_tokenizer(os.path.join(OUT, "tokenizer"))
    for name, m in (("unet", unet), ("vae", vae)):
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        m.save_config(d)
        write_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"), f16_entries(m), {"format": "pt"})
    sched = EulerDiscreteScheduler(**SCHEDULER)
    sched.save_config(os.path.join(OUT, "scheduler"))
    build_pipeline(te, unet, vae).save_config(OUT)
    d = os.path.join(OUT, "dit")
    os.makedirs(d, exist_ok=True)
    dsd = {k: entry(v.half()) for k, v in dmodel.state_dict().items()}
    write_safetensors(os.path.join(d, "dit.safetensors"), dsd, {"format": "pt"})
    dump_json(os.path.join(d, "dit.json"), dit_config(sf))
    # checks: the folder loads in diffusers with exactly these weights; the DiT matches diffusers' DiT
    pipe = StableDiffusionPipeline.from_pretrained(OUT, local_files_only=True)
    for name, a, b in (("text_encoder", pipe.text_encoder, te), ("unet", pipe.unet, unet), ("vae", pipe.vae, vae)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sorted(sa) == sorted(sb), name
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (name, k)
    assert pipe.vae_scale_factor == 4 and pipe.vae.config.scaling_factor == sf
    check_dit_vs_diffusers(dmodel)
    total = 0
    for r, _, fs in sorted(os.walk(OUT)):
        for f in sorted(fs):
            p = os.path.join(r, f)
            total += os.path.getsize(p)
            log("[export] %9d  %s" % (os.path.getsize(p), os.path.relpath(p, ROOT)))
    log("[export] %d bytes (%.2f MB) in %s" % (total, total / 1e6, os.path.relpath(OUT, ROOT)))
    assert total <= 25e6, "over 25 MB"
    write_model_card(te, unet, vae, dmodel, sf)


def write_model_card(te, unet, vae, dmodel, sf):
    vck, uck, dck = (load_ckpt(os.path.join(CKPT, s + ".pt")) for s in ("vae", "unet", "dit"))
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    files = []
    for r, _, fs in sorted(os.walk(OUT)):
        for f in sorted(fs):
            if f != "README.md":
                p = os.path.join(r, f)
                files.append("| %s | %d |" % (os.path.relpath(p, OUT), os.path.getsize(p)))
    u, t, d, v = CFG["unet"], CFG["text"], CFG["dit"], CFG["vae"]
    ho = shapes.HELDOUT
    history = ["- VAE: %d x %d" % (vck["state"]["step"], vck["config"]["vae"]["batch"])]
    if "decoder" in vck:
        history[0] += ", then its decoder alone (encoder frozen): %d x %d" % (
            vck["decoder"]["steps"], vck["decoder"]["config"]["batch"])
    for what, stage, ck in (("UNet + text encoder", "unet", uck), ("DiT", "dit", dck)):
        done = ck["state"]["step"]
        ph = ck["state"].get("phases") or [dict(start=0, steps=done, batch=ck["config"][stage]["batch"])]
        ends = [q["start"] for q in ph[1:]] + [done]  # a phase stopped by its deadline ends where the next starts
        history.append("- %s: %s" % (what, ", then ".join("%d x %d" % (min(q["steps"], e - q["start"]), q["batch"])
                                                          for q, e in zip(ph, ends))))
    history = "\n".join(history)
    text = """# tiny-shapes

A tiny Stable Diffusion 1.x model in diffusers layout (text encoder, tokenizer, UNet, VAE, scheduler) and a tiny
class-conditional DiT in the original DiT checkpoint layout, trained from scratch on a procedural dataset of
64 x 64 pictures of simple shapes (`tools/train/shapes.py`). Written by `tools/train/train.py export` (seed
{seed}); how it was trained, the exact commands and the timings are in `tools/train/README.md`, sample grids in
`tools/train/samples/`. Training steps (x batch), as the checkpoints record them:

{history}

It is a test and demo model: it loads through exactly the code paths of a real SD1.x folder (and
`StableDiffusionPipeline.from_pretrained`), at 64 x 64 pixels (16 x 16 latents). Use a low guidance scale
(CFG 2 to 3 from noise, 5 for img2img). It follows colours, backgrounds and positions; shapes are its weak
point (the project README has the measured prompt adherence).

## Prompts

`a small red circle at the top on a blue background`, `a large green star on the left`,
`a yellow star and a green square`, `a red circle on the left and a blue ring on the right on a white background`.
Shapes: {shapes_}. Colours (shapes and backgrounds): {colours}. Sizes: small, large. Positions: on the left,
on the right, at the top, at the bottom, in the center. Size, position and background may be left out.

Never seen in training (to test generalisation): colour + shape {cs}; shape + position {sp};
shape colour on background {cb}.

## Components

| component | what | parameters |
|---|---|---|
| text_encoder | CLIPTextModel: the full 49408-token CLIP vocabulary, width {tw}, {tl} layers, {th} heads, MLP {ti}, quick_gelu | {tn:,} |
| tokenizer | CLIP's vocab.json + merges.txt (= openai/clip-vit-large-patch14, built from data/clip/merges.txt.gz) | |
| unet | UNet2DConditionModel, SD1 layout on 3 levels: CrossAttnDown x2, Down / Up, CrossAttnUp x2; block_out_channels {ub}, layers_per_block {ul}, attention_head_dim {uh} (= heads, diffusers' SD1 naming), {ug} groups, cross_attention_dim {tw}, conv proj_in/out, sample_size 16 | {un:,} |
| vae | AutoencoderKL, 3 levels {vb}: 64 x 64 x 3 <-> 4 x 16 x 16 (factor 4), {vg} groups, scaling_factor {sf} (1 / latent std) | {vn:,} |
| scheduler | EulerDiscreteScheduler, SD1's config: scaled_linear 0.00085 .. 0.012, 1000 steps, epsilon, leading, steps_offset 1 | |
| dit | DiT (facebookresearch/DiT models.py): input 16, patch {dp}, hidden {dh}, depth {dd}, {dhe} heads, mlp_ratio {dm}, learn_sigma (8 output channels), {nc} classes (colour x shape) + the null class | {dn:,} |

All weights are F16 safetensors. VAE reconstruction PSNR (uint8, posterior mean, 512 pictures held-out
combinations included): {psnr:.2f} dB.

## DiT

`dit/dit.safetensors` holds the original DiT state-dict names (x_embedder.proj, t_embedder.mlp.0/2,
y_embedder.embedding_table ({nc1} rows: the classes, then the null class used for guidance), blocks.N.attn.qkv /
proj, blocks.N.mlp.fc1 / fc2, blocks.N.adaLN_modulation.1, final_layer.linear / adaLN_modulation.1, pos_embed
(1 x 64 x {dh}, the fixed sin-cos table)). `dit/dit.json` lists the classes (index = shape_index x 8 +
colour_index: "red circle" = 0, "orange circle" = 1, ...), the architecture and the diffusion (DiT's linear
betas 0.0001 .. 0.02 over 1000 steps, epsilon, learned-range variance); it works on this folder's VAE latents
scaled by {sf}. Unlike the text model it was trained on every class, held-out pairs included (a class-conditional
model has nothing to compose them from). Converted to diffusers' DiTTransformer2DModel names it gives the same
output there (with diffusers' timestep projection set to DiT's frequency spacing).

## Files

| file | bytes |
|---|---|
{files}
""".format(seed=SEED, history=history, shapes_=", ".join(shapes.SHAPES), colours=", ".join(shapes.COLOUR_NAMES),
           cs=", ".join("%s %s" % p for p in ho["colour_shape"]),
           sp=", ".join("%s %s" % (a, shapes.POS_PHRASE[b]) for a, b in ho["shape_position"]),
           cb=", ".join("%s on %s" % p for p in ho["colour_background"]),
           tw=t["hidden_size"], tl=t["num_hidden_layers"], th=t["num_attention_heads"], ti=t["intermediate_size"],
           tn=n(te), ub=tuple(u["block_out_channels"]), ul=u["layers_per_block"], uh=u["attention_head_dim"],
           ug=u["norm_num_groups"], un=n(unet), vb=tuple(v["block_out_channels"]), vg=v["norm_num_groups"], sf=sf,
           vn=n(vae), dp=d["patch_size"], dh=d["hidden_size"], dd=d["depth"], dhe=d["num_heads"], dm=d["mlp_ratio"],
           nc=len(shapes.CLASSES), nc1=len(shapes.CLASSES) + 1,
           dn=sum(p.numel() for p in dmodel.parameters() if p.requires_grad), psnr=vck["psnr"], files="\n".join(files))
    with open(os.path.join(OUT, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)


def check_dit_vs_diffusers(model):
    """The DiT, converted to diffusers' DiTTransformer2DModel names, gives the same output there. diffusers'
    timestep projection uses downscale_freq_shift=1 where DiT's has 0; it is set to 0 for the check."""
    from diffusers import DiTTransformer2DModel

    c = CFG["dit"]
    ref = DiTTransformer2DModel(num_attention_heads=c["num_heads"], attention_head_dim=c["hidden_size"] // c["num_heads"],
                                in_channels=4, out_channels=8, num_layers=c["depth"], dropout=0.0, norm_num_groups=32,
                                attention_bias=True, sample_size=16, patch_size=c["patch_size"],
                                activation_fn="gelu-approximate", num_embeds_ada_norm=len(shapes.CLASSES),
                                upcast_attention=False, norm_type="ada_norm_zero", norm_elementwise_affine=False,
                                norm_eps=1e-6).eval()
    sd = ditmod.to_diffusers({k: v for k, v in model.state_dict().items()}, c["depth"])
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    # diffusers computes the same sin-cos table (the file holds it rounded to f16); use the file's for the check
    pe = model.pos_embed.detach()
    assert float((ref.pos_embed.pos_embed - pe).abs().max()) < 1e-3
    ref.pos_embed.pos_embed = pe.clone()
    for blk in ref.transformer_blocks:
        blk.norm1.emb.time_proj.downscale_freq_shift = 0
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 4, 16, 16, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    y = torch.tensor([0, 7, 20, 47])
    with torch.no_grad():
        a = model(x, t, y)
        b = ref(x, timestep=t, class_labels=y).sample
    err = float((a - b).abs().max())
    log("[export] DiT vs diffusers DiTTransformer2DModel: max |diff| %.3g (output max %.3g)" % (err, float(a.abs().max())))
    assert err < 1e-4 * max(1.0, float(a.abs().max())), err


# ------------------------------------------------------------------------------------------- samples

SAMPLE_PROMPTS = [  # (prompt, held out?)
    ("a small red circle at the top on a blue background", False),
    ("a large yellow star in the center on a purple background", False),
    ("a large green square on the left on a white background", False),
    ("a small blue ring on the right on a yellow background", False),
    ("a large white triangle at the bottom on a black background", True),  # white on black + triangle/bottom
    ("a large black cross in the center on an orange background", False),
    ("a yellow star and a green square", False),
    ("a red circle on the left and a blue triangle on the right on a white background", True),
    ("a large red star in the center on a green background", True),
    ("a large blue triangle at the top on a yellow background", True),
    ("a large purple circle on the right on a white background", True),
    ("a large orange ring on the left on a blue background", True),
]


def label_grid(grid_img, rows, cols, cell, pad, scale):
    """Adds each row's text to the left of a grid image and each column's above it."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    d0 = ImageDraw.Draw(grid_img)
    left = 8 + max(int(d0.textlength(s, font=font)) for s in rows)
    top = 16
    out = Image.new("RGB", (grid_img.width + left, grid_img.height + top), (255, 255, 255))
    out.paste(grid_img, (left, top))
    d = ImageDraw.Draw(out)
    for i, s in enumerate(rows):
        d.text((4, top + (pad + i * (cell + pad)) * scale + cell * scale // 2 - 6), s, fill=(0, 0, 0), font=font)
    for j, s in enumerate(cols):
        x = left + (pad + j * (cell + pad)) * scale + (cell * scale - int(d.textlength(s, font=font))) // 2
        d.text((x, 2), s, fill=(0, 0, 0), font=font)
    return out


def sd_generate(pipe, prompts, seeds, steps, cfg):
    """Images (uint8 HWC) for every prompt x seed, with torch.Generator('cpu').manual_seed(seed) each."""
    out = []
    for p in prompts:
        gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        r = pipe([p] * len(seeds), num_inference_steps=steps, guidance_scale=cfg, generator=gens, height=64, width=64,
                 output_type="np")
        out += [np.round(im * 255).astype(np.uint8) for im in r.images]
    return out


def eval_prompts(n_seen=48, seed=99):
    """One-shape full captions: n_seen from the training distribution and every held-out kind."""
    rng = np.random.default_rng([SEED, 77, seed])
    items = []
    while len(items) < n_seen:
        p = shapes.sample_params(rng, n_shapes=1)
        items.append((shapes.caption(p, full=True), p, False))
    for kind, pairs in shapes.HELDOUT.items():
        for pair in pairs:
            for _ in range(3):
                while True:
                    p = shapes.sample_params(rng, heldout_ok=True, n_shapes=1)
                    o = p["objs"][0]
                    key = {"colour_shape": (o["colour"], o["shape"]), "shape_position": (o["shape"], o["pos"]),
                           "colour_background": (o["colour"], p["bg"])}[kind]
                    if key == pair:
                        break
                items.append((shapes.caption(p, full=True), p, kind))
    return items


def adherence(images, items, seeds_per):
    rows = []
    for i, (cap, p, kind) in enumerate(items):
        o = p["objs"][0]
        for k in range(seeds_per):
            r = shapes.analyse(images[i * seeds_per + k])
            rows.append(dict(kind=kind or "seen", bg=r["bg"] == p["bg"], colour=r["colour"] == o["colour"],
                             pos=r["pos"] == o["pos"]))
    res = {}
    for kind in ["seen"] + list(shapes.HELDOUT):
        sel = [r for r in rows if r["kind"] == kind]
        if sel:
            res[kind] = {a: round(float(np.mean([r[a] for r in sel])), 3) for a in ("bg", "colour", "pos")}
            res[kind]["n"] = len(sel)
    return res


def stage_samples(partial=False):
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    os.makedirs(SAMPLES, exist_ok=True)
    sc = CFG["sample"]
    metrics = {}
    if partial:
        vae, sf = load_final_vae()
        te, unet, step = trained_models(allow_partial=True)
        pipe = build_pipeline(te, unet, vae)
        tag = "preview_"
        metrics["unet_step"] = step
    else:
        pipe = StableDiffusionPipeline.from_pretrained(OUT, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        tag = ""
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    t0 = time.time()
    seeds = [1, 2, 3, 4]
    imgs = sd_generate(pipe, [p for p, _ in SAMPLE_PROMPTS], seeds, sc["steps"], sc["cfg"])
    shapes.save_grid(imgs, os.path.join(SAMPLES, tag + "sd_grid.png"), len(seeds), scale=2)
    g = Image.open(os.path.join(SAMPLES, tag + "sd_grid.png"))
    labels = [("[held out] " if h else "") + p for p, h in SAMPLE_PROMPTS]
    label_grid(g, labels, ["seed %d" % k for k in seeds], 64, 2, 2).save(os.path.join(SAMPLES, tag + "sd_grid.png"))
    log("[samples] SD grid in %.1f s" % (time.time() - t0))
    # adherence of one-shape prompts, read back from the pictures
    t0 = time.time()
    items = eval_prompts(n_seen=24 if partial else 48)
    ev = sd_generate(pipe, [c for c, _, _ in items], [11, 12], sc["steps"], sc["cfg"])
    metrics["sd_adherence"] = adherence(ev, items, 2)
    metrics["sd_adherence_note"] = ("share of one-shape samples (Euler %d steps, CFG %g, 64x64) whose background "
                                    "colour / shape colour / position, read back by shapes.analyse, match the prompt"
                                    % (sc["steps"], sc["cfg"]))
    log("[samples] adherence (%.1f s): %s" % (time.time() - t0, json.dumps(metrics["sd_adherence"])))
    shapes.save_grid(ev[:48], os.path.join(SAMPLES, tag + "sd_eval_seen.png"), 8, scale=2)
    shapes.save_grid(ev[2 * 24 if partial else 2 * 48:], os.path.join(SAMPLES, tag + "sd_eval_heldout.png"), 6, scale=2)
    with open(os.path.join(SAMPLES, tag + "sd_eval_prompts.txt"), "w") as f:
        for cap, _, kind in items:
            f.write("%s\t%s\n" % (kind or "seen", cap))
    # DiT
    ck = load_ckpt(os.path.join(CKPT, "dit.pt"))
    if ck is not None and (ck.get("done") or partial):
        vae, sf = load_final_vae()
        model, step = trained_dit(allow_partial=True)
        if not partial:  # from the exported file, to test it
            from safetensors.torch import load_file

            sd = {k: v.float() for k, v in load_file(os.path.join(OUT, "dit", "dit.safetensors")).items()}
            model.load_state_dict(sd)
        t0 = time.time()
        diff = ditmod.Diffusion.linear().respaced(sc["dit_steps"])
        y = torch.arange(len(shapes.CLASSES))
        g = torch.Generator().manual_seed(0)
        z = diff.sample(model, y, (len(y), 4, 16, 16), sc["dit_cfg"], g, len(shapes.CLASSES))
        with torch.no_grad():
            x = vae.decode(z / sf).sample
        dimgs = [np.round(((a.clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()).astype(np.uint8) for a in x]
        ok = [shapes.analyse(im)["colour"] == shapes.CLASSES[i].split()[0] for i, im in enumerate(dimgs)]
        metrics["dit_colour_accuracy"] = round(float(np.mean(ok)), 3)
        metrics["dit_step"] = step
        # rows = shapes, columns = colours
        shapes.save_grid(dimgs, os.path.join(SAMPLES, tag + "dit_grid.png"), len(shapes.COLOUR_NAMES), scale=2)
        gi = Image.open(os.path.join(SAMPLES, tag + "dit_grid.png"))
        label_grid(gi, shapes.SHAPES, shapes.COLOUR_NAMES, 64, 2, 2).save(os.path.join(SAMPLES, tag + "dit_grid.png"))
        log("[samples] DiT grid (%d respaced steps, CFG %g) in %.1f s; colour read back right: %.3f" % (
            sc["dit_steps"], sc["dit_cfg"], time.time() - t0, metrics["dit_colour_accuracy"]))
    # VAE reconstructions
    vae, sf = load_final_vae()
    x = vae_eval_set(32)
    with torch.no_grad():
        rec = vae.decode(vae.encode(torch.from_numpy(x)).latent_dist.mean).sample
    pair = []
    for a, b in zip(x[:16], rec[:16]):
        pair.append(np.round((np.clip(a, -1, 1) + 1) * 127.5).transpose(1, 2, 0).astype(np.uint8))
        pair.append(np.round(((b.clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()).astype(np.uint8))
    shapes.save_grid(pair, os.path.join(SAMPLES, tag + "vae_recon.png"), 8, scale=2)
    vck = load_ckpt(os.path.join(CKPT, "vae.pt"))
    metrics["vae_psnr_db"] = round(vck["psnr"], 2)
    metrics["vae_psnr_per_image_mean_db"] = round(vck["psnr_per_image"], 2)
    metrics["stage_wall_s"] = {s: round(load_ckpt(os.path.join(CKPT, s + ".pt"))["state"].get("elapsed", 0), 1)
                               for s in ("vae", "unet", "dit") if os.path.exists(os.path.join(CKPT, s + ".pt"))}
    with open(os.path.join(SAMPLES, tag + "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
    log("[samples] %s" % json.dumps(metrics, sort_keys=True))


# ------------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["vae", "decoder", "unet", "dit", "export", "samples", "all", "preview"])
    ap.add_argument("--ckpt", default=None, help="checkpoint folder (default tools/train/ckpt)")
    ap.add_argument("--out", default=None, help="model folder (default models/tiny-shapes)")
    ap.add_argument("--samples", default=None, help="samples folder (default tools/train/samples)")
    ap.add_argument("--steps", default=None, help="override steps, e.g. vae=200,unet=300,dit=100 (pilot runs)")
    ap.add_argument("--pool", default=None, help="override pool sizes, e.g. unet=2000,dit=1000 (pilot runs)")
    ap.add_argument("--extend", default=None,
                    help="train finished stages on, e.g. unet=3000,dit=2000 (a fresh warm-up and cosine; see phase())")
    ap.add_argument("--partial", action="store_true",
                    help="export: take unfinished stages' newest checkpoints (to look at a run in progress)")
    ap.add_argument("--set", default=None, help="override settings, e.g. unet.batch=64,unet.lr=3e-4")
    ap.add_argument("--device", default="auto", help="torch device for the training stages (auto: cuda if any)")
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="a training stage stops (and is finished as it is) this many seconds after the start")
    a = ap.parse_args()
    global CKPT, OUT, SAMPLES, DEV, DEADLINE, PARTIAL
    DEV = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    if DEV.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    PARTIAL = a.partial
    if a.deadline_s is not None:
        DEADLINE = time.time() + a.deadline_s
    if a.pool:
        for kv in a.pool.split(","):
            k, v = kv.split("=")
            CFG["pool"][k] = int(v)
    CKPT = a.ckpt or CKPT
    OUT = a.out or OUT
    SAMPLES = a.samples or SAMPLES
    if a.steps:
        for kv in a.steps.split(","):
            k, v = kv.split("=")
            CFG[k]["steps"] = int(v)
            CFG[k]["ckpt_every"] = min(CFG[k]["ckpt_every"], int(v))
    for kv in (a.extend.split(",") if a.extend else []):
        k, v = kv.split("=")
        EXTEND[k] = int(v)
    for kv in (a.set.split(",") if a.set else []):
        k, v = kv.split("=")
        st, key = k.split(".")
        assert key in CFG[st], "unknown setting " + k
        CFG[st][key] = type(CFG[st][key])(float(v)) if not isinstance(CFG[st][key], str) else v
    if a.stage not in ("vae", "decoder", "dit"):  # (those three never tokenize a caption)
        import gen_tokenizer_fixtures as gt

        gt.check_reference_env()
    log("stage %s, torch %s, %s, %d thread(s), seed %d, ckpt %s" % (
        a.stage, torch.__version__, torch.cuda.get_device_name(DEV) if DEV.type == "cuda" else "cpu",
        torch.get_num_threads(), SEED, CKPT))
    t0 = time.time()
    stages = {"vae": [stage_vae], "unet": [stage_unet], "dit": [stage_dit], "export": [stage_export],
              "samples": [stage_samples], "decoder": [stage_decoder],
              "all": [stage_vae, stage_decoder, stage_unet, stage_dit, stage_export, stage_samples],
              "preview": [lambda: stage_samples(partial=True)]}[a.stage]
    for f in stages:
        f()
    log("finished %s in %s" % (a.stage, fmt_time(time.time() - t0)))


if __name__ == "__main__":
    main()

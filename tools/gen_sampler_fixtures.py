"""Writes the sampler and schedule fixtures (tests/test_sampler.c, tests/test_sched.c):

  sampler_ref.safetensors   k-diffusion's and diffusers' samplers run on the
                            analytic Gaussian-mixture denoiser (tools/gmm_ref.py),
                            with their noise recorded so the C side can inject it:
      gmm.weights / gmm.means / gmm.stds          the mixture
      <case>.x          the starting point (VE: x0 + sigma_0 noise)
      <case>.sigmas     F64, the sigmas the sampler ran on
      <case>.noise      (calls, numel) the noise handed out, in call order
      <case>.noise_sigmas  F64 (calls, 2): the interval of each noise_sampler
                        call (NaN, NaN for randn_like calls)
      <case>.traj       (steps, numel) x after each step (VE)
      <case>.out        the result (VE)
    metadata "<case>.sampler" = difusa sampler name, "<case>.options" = its options.

  sched.safetensors         training and step schedules from diffusers, k-diffusion
                            and ComfyUI's formulas, and the model wrapper's outputs
                            (k-diffusion's CompVisDenoiser / CompVisVDenoiser).

The references run in float32 (as users run them); the analytic denoiser in
float64. Usage: gen_sampler_fixtures.py [outdir]   (default tests/fixtures)
"""

import importlib
import math
import os
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_safetensors  # noqa: E402
from gmm_ref import GMM  # noqa: E402


def import_k_diffusion():
    """k_diffusion.sampling and .external without the package's training-side
    imports (PIL, torchvision, wandb ...): a stub package and a stub utils."""
    import importlib.util

    spec = importlib.util.find_spec("k_diffusion")
    pkg_dir = os.path.dirname(spec.origin)
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [pkg_dir]
    pkg.__spec__ = spec
    sys.modules["k_diffusion"] = pkg
    utils = types.ModuleType("k_diffusion.utils")

    def append_dims(x, target_dims):
        dims_to_append = target_dims - x.ndim
        return x[(...,) + (None,) * dims_to_append]

    utils.append_dims = append_dims
    sys.modules["k_diffusion.utils"] = utils
    pkg.utils = utils
    sampling = importlib.import_module("k_diffusion.sampling")
    external = importlib.import_module("k_diffusion.external")
    return sampling, external


K, EXT = import_k_diffusion()

SHAPE = (2, 2, 4, 4)  # batch 2, D = 32 per item
SIGMA_MIN, SIGMA_MAX = 0.0291675, 14.614642


def f32(a):
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def f64(a):
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64))


def entry(arr):
    kind = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64"}[arr.dtype]
    return (kind, arr.shape, np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes())


def make_gmm():
    rng = np.random.default_rng(1234)
    d = int(np.prod(SHAPE[1:]))
    means = rng.normal(0, 1.2, size=(3, d))
    stds = np.array([0.35, 0.6, 0.9])
    weights = np.array([0.5, 0.3, 0.2])
    return GMM(weights, means, stds)


class NoiseRecorder:
    """Hands out seeded torch noise and records it: as torch.randn_like (kind 0)
    and as a k-diffusion noise_sampler(sigma, sigma_next) (kind 1)."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.noise, self.sig = [], []

    def draw(self, shape):
        z = torch.randn(shape, generator=self.g, dtype=torch.float32)
        self.noise.append(z.numpy().copy())
        return z

    def randn_like(self, x, *a, **kw):
        self.sig.append((math.nan, math.nan))
        return self.draw(x.shape)

    def keep(self, flags):
        """Drops the draws the reference multiplied by zero (flags[i] false)."""
        assert len(flags) == len(self.noise), (len(flags), len(self.noise))
        self.noise = [z for z, f in zip(self.noise, flags) if f]
        self.sig = [s for s, f in zip(self.sig, flags) if f]

    def sampler(self, sigma, sigma_next):
        self.sig.append((float(sigma), float(sigma_next)))
        return self.draw(SHAPE)


def store_case(out, meta, name, sampler, options, x, sigmas, rec, traj, res):
    out[f"{name}.x"] = entry(f32(x))
    out[f"{name}.sigmas"] = entry(f64(sigmas))
    if rec is not None and rec.noise:
        out[f"{name}.noise"] = entry(f32(np.stack(rec.noise).reshape(len(rec.noise), -1)))
        out[f"{name}.noise_sigmas"] = entry(f64(np.array(rec.sig)))
    if traj:
        out[f"{name}.traj"] = entry(f32(np.stack(traj).reshape(len(traj), -1)))
    out[f"{name}.out"] = entry(f32(res))
    meta[f"{name}.sampler"] = sampler
    meta[f"{name}.options"] = options


# (case, k-diffusion function, difusa name, difusa options, kwargs, brownian, steps)
K_CASES = [
    ("k_euler", "sample_euler", "euler", "", {}, False, 10),
    ("k_euler_churn", "sample_euler", "euler", "s_churn=2 s_tmin=0.05 s_tmax=10 s_noise=1.003",
     dict(s_churn=2.0, s_tmin=0.05, s_tmax=10.0, s_noise=1.003), False, 10),
    ("k_euler_ancestral", "sample_euler_ancestral", "euler_ancestral", "", {}, False, 10),
    ("k_euler_ancestral_eta", "sample_euler_ancestral", "euler_ancestral", "eta=0.5 s_noise=0.9",
     dict(eta=0.5, s_noise=0.9), False, 10),
    ("k_heun", "sample_heun", "heun", "", {}, False, 10),
    ("k_heun_churn", "sample_heun", "heun", "s_churn=1", dict(s_churn=1.0), False, 8),
    ("k_dpm_2", "sample_dpm_2", "dpm_2", "", {}, False, 10),
    ("k_dpm_2_ancestral", "sample_dpm_2_ancestral", "dpm_2_ancestral", "", {}, False, 10),
    ("k_lms", "sample_lms", "lms", "", {}, False, 12),
    ("k_lms_order2", "sample_lms", "lms", "order=2", dict(order=2), False, 8),
    ("k_dpmpp_2s_ancestral", "sample_dpmpp_2s_ancestral", "dpmpp_2s_ancestral", "", {}, False, 10),
    ("k_dpmpp_sde", "sample_dpmpp_sde", "dpmpp_sde", "", {}, True, 8),
    ("k_dpmpp_sde_r", "sample_dpmpp_sde", "dpmpp_sde", "eta=0.7 r=0.3", dict(eta=0.7, r=0.3), True, 8),
    ("k_dpmpp_2m", "sample_dpmpp_2m", "dpmpp_2m", "", {}, False, 12),
    ("k_dpmpp_2m_sde", "sample_dpmpp_2m_sde", "dpmpp_2m_sde", "", {}, True, 12),
    ("k_dpmpp_2m_sde_heun", "sample_dpmpp_2m_sde", "dpmpp_2m_sde", "solver_type=heun eta=0.8",
     dict(solver_type="heun", eta=0.8), True, 12),
    ("k_dpmpp_2m_sde_eta0", "sample_dpmpp_2m_sde", "dpmpp_2m_sde", "eta=0", dict(eta=0.0), True, 12),
    ("k_dpmpp_3m_sde", "sample_dpmpp_3m_sde", "dpmpp_3m_sde", "", {}, True, 12),
    ("k_dpmpp_3m_sde_eta", "sample_dpmpp_3m_sde", "dpmpp_3m_sde", "eta=0.5 s_noise=1.1",
     dict(eta=0.5, s_noise=1.1), True, 12),
]


def run_k_cases(gmm, out, meta):
    torch.manual_seed(0)
    for idx, (name, fn, sampler, options, kwargs, brownian, steps) in enumerate(K_CASES):
        sigmas = K.get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX)
        g = torch.Generator().manual_seed(100 + idx)
        x = torch.randn(SHAPE, generator=g) * sigmas[0]
        rec = NoiseRecorder(1000 + idx)
        traj = []

        def model(xx, s):
            return torch.from_numpy(gmm.denoise(xx.numpy(), float(s[0])))

        def cb(info):
            traj.append(info["x"].numpy().copy())

        kw = dict(kwargs)
        if brownian:
            kw["noise_sampler"] = rec.sampler
        saved = torch.randn_like
        torch.randn_like = rec.randn_like
        try:
            res = getattr(K, fn)(model, x.clone(), sigmas, callback=cb, disable=True, **kw)
        finally:
            torch.randn_like = saved
        # traj: x after each step = the next callback's x, then the result
        traj = traj[1:] + [res.numpy()]
        if fn in ("sample_euler", "sample_heun", "sample_dpm_2"):
            # k-diffusion 0.1.1 draws a churn noise every step and uses it only
            # where gamma > 0 (ComfyUI's copy draws only then): keep those
            churn, tmin, tmax = kw.get("s_churn", 0.0), kw.get("s_tmin", 0.0), kw.get("s_tmax", math.inf)
            used = [churn > 0 and tmin <= float(sg) <= tmax and min(churn / steps, 2 ** 0.5 - 1) > 0
                    for sg in sigmas[:-1]]
            rec.keep(used)
            if churn > 0:
                traj = None  # the callback's x is after the next step's churn noise
        store_case(out, meta, name, sampler, options, x.numpy(), sigmas.double().numpy(), rec, traj, res.numpy())


def run_k_dpm_solver(gmm, out, meta):
    """dpm_fast / dpm_adaptive take sigma_min, sigma_max (and n): difusa reads them
    from a schedule's first and last nonzero sigma."""
    cases = [
        ("k_dpm_fast", "dpm_fast", "", dict(n=10), 10),
        ("k_dpm_fast_9", "dpm_fast", "", dict(n=9), 9),
        ("k_dpm_fast_eta", "dpm_fast", "eta=0.5", dict(n=10, eta=0.5), 10),
        ("k_dpm_adaptive", "dpm_adaptive", "", {}, 10),
        ("k_dpm_adaptive_o2", "dpm_adaptive", "order=2 rtol=0.1 atol=0.01", dict(order=2, rtol=0.1, atol=0.01), 10),
    ]
    for idx, (name, sampler, options, kwargs, steps) in enumerate(cases):
        sigmas = K.get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX)
        g = torch.Generator().manual_seed(200 + idx)
        x = torch.randn(SHAPE, generator=g) * sigmas[0]
        rec = NoiseRecorder(2000 + idx)

        def model(xx, s):
            return torch.from_numpy(gmm.denoise(xx.numpy(), float(s[0])))

        kw = dict(kwargs)
        saved = torch.randn_like
        torch.randn_like = rec.randn_like
        try:
            if sampler == "dpm_fast":
                n = kw.pop("n")
                res = K.sample_dpm_fast(model, x.clone(), float(sigmas[-2]), float(sigmas[0]), n, disable=True, **kw)
            else:
                res = K.sample_dpm_adaptive(model, x.clone(), float(sigmas[-2]), float(sigmas[0]), disable=True, **kw)
        finally:
            torch.randn_like = saved
        if not kwargs.get("eta"):
            rec.keep([False] * len(rec.noise))  # drawn, then scaled by su = 0
        store_case(out, meta, name, sampler, options, x.numpy(), sigmas.double().numpy(), rec, None, res.numpy())


def sd_scheduler_config():
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                clip_sample=False, steps_offset=1)


def run_diffusers(gmm, out, meta):
    from diffusers import DDIMScheduler, DDPMScheduler
    import diffusers.schedulers.scheduling_ddpm as ddpm_mod

    cases = [
        ("d_ddim", "ddim", "", DDIMScheduler, dict(set_alpha_to_one=False), 0.0, 10),
        ("d_ddim_eta", "ddim", "eta=0.5", DDIMScheduler, dict(set_alpha_to_one=True), 0.5, 10),
        ("d_ddim_eta1", "ddim", "eta=1", DDIMScheduler, dict(set_alpha_to_one=False), 1.0, 8),
        ("d_ddpm", "ddpm", "", DDPMScheduler, {}, None, 10),
    ]
    for idx, (name, sampler, options, cls, extra, eta, steps) in enumerate(cases):
        sch = cls(**sd_scheduler_config(), **extra)
        sch.set_timesteps(steps)
        ac = sch.alphas_cumprod.double().numpy()
        ts = [int(t) for t in sch.timesteps]
        sig = lambda a: math.sqrt((1 - a) / a)  # noqa: E731
        if cls is DDIMScheduler:
            a_final = 1.0 if extra.get("set_alpha_to_one") else float(ac[0])
        else:
            a_final = 1.0
        sigmas = [sig(ac[t]) for t in ts] + [sig(a_final) if a_final < 1 else 0.0]
        g = torch.Generator().manual_seed(300 + idx)
        xt = torch.randn(SHAPE, generator=g) * sch.init_noise_sigma
        x_ve0 = xt.double().numpy() / math.sqrt(ac[ts[0]])
        rec = NoiseRecorder(3000 + idx)

        def eps_model(x_t, t):
            a = float(ac[t])
            s = sig(a)
            x_ve = x_t.double().numpy() / math.sqrt(a)
            d = gmm.denoise(x_ve.astype(np.float32), s).astype(np.float64)
            return torch.from_numpy(((x_ve - d) / s).astype(np.float32))

        # the C side starts from the float32 VE point; so does the reference
        x = torch.from_numpy((f32(x_ve0).astype(np.float64) * math.sqrt(ac[ts[0]])).astype(np.float32))
        traj = []
        saved = ddpm_mod.randn_tensor
        ddpm_mod.randn_tensor = lambda shape, generator=None, device=None, dtype=None: rec.randn_like(  # noqa: E731
            torch.empty(shape))
        try:
            for i, t in enumerate(ts):
                e = eps_model(x, t)
                if cls is DDIMScheduler:
                    vn = rec.randn_like(x) if eta > 0 else None
                    x = sch.step(e, t, x, eta=eta, variance_noise=vn).prev_sample
                else:
                    x = sch.step(e, t, x).prev_sample
                a_prev = float(ac[ts[i + 1]]) if i + 1 < len(ts) else a_final
                traj.append((x.double().numpy() / math.sqrt(a_prev)).astype(np.float32))
        finally:
            ddpm_mod.randn_tensor = saved
        if rec.noise and a_final == 1.0:
            rec.keep([True] * (len(rec.noise) - 1) + [False])  # the last step's variance is 0
        store_case(out, meta, name, sampler, options, x_ve0, np.array(sigmas), rec, traj, traj[-1])


# ---- ComfyUI's additions to k-diffusion (tools/comfy_k_ref.py) ----

COMFY_CASES = [
    # (case, function, difusa name, difusa options, kwargs, steps)
    ("c_ipndm", "sample_ipndm", "ipndm", "", {}, 12),
    ("c_ipndm_order2", "sample_ipndm", "ipndm", "order=2", dict(max_order=2), 8),
    ("c_ipndm_v", "sample_ipndm_v", "ipndm_v", "", {}, 12),
    ("c_ipndm_v_order3", "sample_ipndm_v", "ipndm_v", "order=3", dict(max_order=3), 9),
    ("c_deis", "sample_deis", "deis", "", {}, 12),
    ("c_deis_order2", "sample_deis", "deis", "order=2", dict(max_order=2), 8),
    ("c_deis_order4", "sample_deis", "deis", "order=4", dict(max_order=4), 10),
]


def run_comfy_cases(gmm, out, meta):
    import comfy_k_ref

    for idx, (name, fn, sampler, options, kwargs, steps) in enumerate(COMFY_CASES):
        sigmas = K.get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX)
        g = torch.Generator().manual_seed(400 + idx)
        x = torch.randn(SHAPE, generator=g) * sigmas[0]
        traj = []

        def model(xx, s):
            return torch.from_numpy(gmm.denoise(xx.numpy(), float(s[0])))

        res = getattr(comfy_k_ref, fn)(model, x.clone(), sigmas, callback=lambda xx: traj.append(xx.numpy().copy()),
                                       **kwargs)
        store_case(out, meta, name, sampler, options, x.numpy(), sigmas.double().numpy(), None, traj, res.numpy())


# ---- CFG++ (ComfyUI, tools/comfy_k_ref.py) on a guided denoiser of two mixtures ----

def make_gmm_uncond():
    """The unconditional mixture of the CFG++ cases: wider, other means."""
    rng = np.random.default_rng(4321)
    d = int(np.prod(SHAPE[1:]))
    return GMM(np.array([0.4, 0.6]), rng.normal(0, 1.0, size=(2, d)), np.array([0.7, 1.1]))


CFG_PP_CASES = [
    # (case, function, difusa name, difusa options, kwargs, cfg scale, steps)
    ("c_euler_cfg_pp", "sample_euler_cfg_pp", "euler_cfg_pp", "", {}, 1.5, 10),
    ("c_euler_cfg_pp_low", "sample_euler_cfg_pp", "euler_cfg_pp", "", {}, 0.6, 8),
    ("c_euler_ancestral_cfg_pp", "sample_euler_ancestral_cfg_pp", "euler_ancestral_cfg_pp", "", {}, 1.5, 10),
    ("c_euler_ancestral_cfg_pp_eta", "sample_euler_ancestral_cfg_pp", "euler_ancestral_cfg_pp",
     "eta=0.5 s_noise=0.9", dict(eta=0.5, s_noise=0.9), 0.8, 9),
]


def run_cfg_pp(gmm, gmm_u, out, meta):
    import comfy_k_ref

    for idx, (name, fn, sampler, options, kwargs, scale, steps) in enumerate(CFG_PP_CASES):
        sigmas = K.get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX)
        g = torch.Generator().manual_seed(900 + idx)
        x = torch.randn(SHAPE, generator=g) * sigmas[0]
        rec = NoiseRecorder(9000 + idx)
        traj = []

        def model(xx, s):
            c = torch.from_numpy(gmm.denoise(xx.numpy(), float(s[0])))
            u = torch.from_numpy(gmm_u.denoise(xx.numpy(), float(s[0])))
            return u + (c - u) * scale, u

        kw = dict(kwargs)
        if fn == "sample_euler_ancestral_cfg_pp":
            kw["noise_sampler"] = lambda s, sn: rec.randn_like(x)
        res = getattr(comfy_k_ref, fn)(model, x.clone(), sigmas, callback=lambda xx: traj.append(xx.numpy().copy()),
                                       **kw)
        meta[f"{name}.denoiser"] = "cfg"
        meta[f"{name}.cfg_scale"] = repr(scale)
        store_case(out, meta, name, sampler, options, x.numpy(), sigmas.double().numpy(), rec, traj, res.numpy())


# ---- diffusers' multistep schedulers: PNDM (PLMS), UniPC, LCM ----

def run_diffusers_multistep(gmm, out, meta):
    from diffusers import LCMScheduler, PNDMScheduler, UniPCMultistepScheduler
    import diffusers.schedulers.scheduling_lcm as lcm_mod

    sig = lambda a: math.sqrt((1 - a) / a)  # noqa: E731
    cfg = sd_scheduler_config()
    cfg.pop("clip_sample")  # (PNDM and UniPC have no clipping)

    def eps_at(x_t, s):
        """The model's epsilon at VE sigma s for a VP sample x_t."""
        a = 1.0 / (1.0 + s * s)
        x_ve = x_t.double().numpy() / math.sqrt(a)
        d = gmm.denoise(x_ve.astype(np.float32), s).astype(np.float64)
        return torch.from_numpy(((x_ve - d) / s).astype(np.float32))

    def start(idx, s0):
        g = torch.Generator().manual_seed(500 + idx)
        x_ve0 = (torch.randn(SHAPE, generator=g).double() * math.sqrt(1 + s0 * s0)).numpy()
        x_ve0 = f32(x_ve0)
        return x_ve0, torch.from_numpy((x_ve0.astype(np.float64) / math.sqrt(1 + s0 * s0)).astype(np.float32))

    # PLMS: SD's config (skip_prk_steps, set_alpha_to_one False, leading spacing + steps_offset 1)
    for idx, (name, steps, extra) in enumerate([("d_plms", 10, dict(set_alpha_to_one=False)),
                                                ("d_plms_alpha1", 7, dict(set_alpha_to_one=True))]):
        sch = PNDMScheduler(**cfg, skip_prk_steps=True, **extra)
        sch.set_timesteps(steps)
        ac = sch.alphas_cumprod.double().numpy()
        ts = [int(t) for t in sch.timesteps]
        uniq = [ts[0]] + ts[2:]  # the second entry repeats the first's target (the Heun step)
        a_final = float(sch.final_alpha_cumprod)
        sigmas = [sig(ac[t]) for t in uniq] + [sig(a_final) if a_final < 1 else 0.0]
        x_ve0, x = start(idx, sigmas[0])
        traj = []
        for k, t in enumerate(ts):
            x = sch.step(eps_at(x, sig(ac[t])), t, x).prev_sample
            if k >= 1:
                j = len(traj) + 1
                a_prev = 1.0 / (1.0 + sigmas[j] ** 2)
                traj.append((x.double().numpy() / math.sqrt(a_prev)).astype(np.float32))
        store_case(out, meta, name, "plms", "", x_ve0, np.array(sigmas), None, traj, traj[-1])

    # PNDM proper (skip_prk_steps=False): three Runge-Kutta steps, then PLMS; 8 steps have an odd timestep
    # interval (125), where diffusers' half steps differ (t_a - 62 and t_b + 62). The denoiser carries
    # SD's schedule for the midpoints' timesteps.
    for idx, (name, steps, extra) in enumerate([("d_pndm_prk", 10, dict(set_alpha_to_one=False)),
                                                ("d_pndm_prk_8", 8, dict(set_alpha_to_one=False)),
                                                ("d_pndm_prk_alpha1", 6, dict(set_alpha_to_one=True))]):
        sch = PNDMScheduler(**cfg, skip_prk_steps=False, **extra)
        sch.set_timesteps(steps)
        ac = sch.alphas_cumprod.double().numpy()
        uniq = [int(t) for t in sch._timesteps[::-1]]
        a_final = float(sch.final_alpha_cumprod)
        sigmas = [sig(ac[t]) for t in uniq] + [sig(a_final) if a_final < 1 else 0.0]
        x_ve0, x = start(40 + idx, sigmas[0])
        traj = []
        n_prk = len(sch.prk_timesteps)
        for k, t in enumerate(sch.timesteps):
            t = int(t)
            x = sch.step(eps_at(x, sig(ac[t])), t, x).prev_sample
            if k >= n_prk or k % 4 == 3:
                j = len(traj) + 1
                a_prev = 1.0 / (1.0 + sigmas[j] ** 2)
                traj.append((x.double().numpy() / math.sqrt(a_prev)).astype(np.float32))
        meta[f"{name}.denoiser"] = "gmm+sd_schedule"
        store_case(out, meta, name, "plms", "prk=1", x_ve0, np.array(sigmas), None, traj, traj[-1])

    # UniPC: diffusers' defaults (bh2, order 2, linspace spacing, final sigma 0) and variants
    unipc_cases = [
        ("d_unipc", "", dict(), 10),
        # (bh1 with the final sigma 0 gives NaN in diffusers 0.32: B(h) = h = -inf times 0; difusa returns D
        # there, so the bh1 cases end at sigma_min)
        ("d_unipc_bh1", "solver_type=bh1", dict(solver_type="bh1", final_sigmas_type="sigma_min"), 10),
        ("d_unipc_order3", "order=3", dict(solver_order=3), 12),
        ("d_unipc_bh1_order3", "order=3 solver_type=bh1", dict(solver_order=3, solver_type="bh1", final_sigmas_type="sigma_min"), 9),
        ("d_unipc_nofinal", "lower_order_final=0 order=3",
         dict(solver_order=3, lower_order_final=False, final_sigmas_type="sigma_min"), 8),
    ]
    for idx, (name, options, extra, steps) in enumerate(unipc_cases):
        sch = UniPCMultistepScheduler(**cfg, **extra)
        sch.set_timesteps(steps)
        sigmas = sch.sigmas.double().numpy()
        x_ve0, x = start(10 + idx, float(sigmas[0]))
        traj = []
        for k, t in enumerate(sch.timesteps):
            x = sch.step(eps_at(x, float(sigmas[k])), t, x).prev_sample
            traj.append((x.double().numpy() * math.sqrt(1 + float(sigmas[k + 1]) ** 2)).astype(np.float32))
        store_case(out, meta, name, "unipc", options, x_ve0, sigmas, None, traj, traj[-1])

    def lcm_run(steps, scaling, x_seed, noise_seed):
        """diffusers' LCMScheduler loop over the mixture's epsilon model, its noise recorded: (x_ve0, sigmas,
        recorder, trajectory in VE terms)."""
        sch = LCMScheduler(**sd_scheduler_config(), timestep_scaling=scaling)
        sch.set_timesteps(steps)
        ac = sch.alphas_cumprod.double().numpy()
        ts = [int(t) for t in sch.timesteps]
        sigmas = [sig(ac[t]) for t in ts] + [0.0]
        x_ve0, x = start(x_seed, sigmas[0])
        rec = NoiseRecorder(noise_seed)
        saved = lcm_mod.randn_tensor
        lcm_mod.randn_tensor = lambda shape, generator=None, device=None, dtype=None: rec.randn_like(  # noqa: E731
            torch.empty(shape))
        traj = []
        try:
            for k, t in enumerate(ts):
                x = sch.step(eps_at(x, sigmas[k]), t, x).prev_sample
                traj.append((x.double().numpy() * math.sqrt(1 + sigmas[k + 1] ** 2)).astype(np.float32))
        finally:
            lcm_mod.randn_tensor = saved
        return x_ve0, np.array(sigmas), rec, traj

    # LCM: the boundary condition made negligible (timestep_scaling 1e4: c_skip < 1e-10) so that the
    # reference's denoised is the model's x0; the condition itself belongs to difusa's model wrapper
    for idx, (name, steps) in enumerate([("d_lcm", 4), ("d_lcm_8", 8)]):
        x_ve0, sigmas, rec, traj = lcm_run(steps, 1e4, 20 + idx, 5000 + idx)
        store_case(out, meta, name, "lcm", "", x_ve0, sigmas, rec, traj, traj[-1])

    # LCM with its boundary condition (diffusers' defaults: timestep_scaling 10, sigma_data 0.5): the C
    # side runs the lcm sampler on difusa's model wrapper (consistency on, SD's schedule, integer
    # timesteps) over the same epsilon model, the mixture's (x - D) / sigma at the timestep's sigma
    # (at the default scaling c_skip stays below 1e-5 on LCM's timesteps: timestep_scaling 0.01 makes the
    # condition count, c_skip from 0.04 at t = 259 to 0.87 at t = 19)
    for idx, (name, steps, scaling) in enumerate([("d_lcm_boundary", 4, 10.0), ("d_lcm_boundary_8", 8, 10.0),
                                                  ("d_lcm_boundary_2", 2, 10.0), ("d_lcm_boundary_ts", 8, 0.01)]):
        x_ve0, sigmas, rec, traj = lcm_run(steps, scaling, 30 + idx, 5100 + idx)
        meta[f"{name}.denoiser"] = "eps_wrapper+consistency"
        meta[f"{name}.timestep_scaling"] = repr(scaling)
        store_case(out, meta, name, "lcm", "", x_ve0, sigmas, rec, traj, traj[-1])


# ---- diffusers' TCDScheduler (the denoiser carries SD's training schedule for the timesteps) ----

def run_tcd(gmm, out, meta):
    from diffusers import TCDScheduler
    import diffusers.schedulers.scheduling_tcd as tcd_mod

    sig = lambda a: math.sqrt((1 - a) / a)  # noqa: E731
    cases = [("d_tcd", "", 0.3, 4), ("d_tcd_8", "", 0.3, 8), ("d_tcd_eta0", "eta=0", 0.0, 6),
             ("d_tcd_eta1", "eta=1", 1.0, 5), ("d_tcd_eta07", "eta=0.7", 0.7, 7)]
    for idx, (name, options, eta, steps) in enumerate(cases):
        sch = TCDScheduler(**sd_scheduler_config())
        sch.set_timesteps(steps)
        ac = sch.alphas_cumprod.double().numpy()
        ts = [int(t) for t in sch.timesteps]
        sigmas = [sig(ac[t]) for t in ts] + [0.0]
        g = torch.Generator().manual_seed(800 + idx)
        x_ve0 = f32((torch.randn(SHAPE, generator=g).double() * math.sqrt(1 + sigmas[0] ** 2)).numpy())
        x = torch.from_numpy((x_ve0.astype(np.float64) * math.sqrt(ac[ts[0]])).astype(np.float32))
        rec = NoiseRecorder(8000 + idx)
        saved = tcd_mod.randn_tensor
        tcd_mod.randn_tensor = lambda shape, generator=None, device=None, dtype=None: rec.randn_like(  # noqa: E731
            torch.empty(shape))
        traj = []
        try:
            for k, t in enumerate(ts):
                a = float(ac[t])
                x_ve = x.double().numpy() / math.sqrt(a)
                d = gmm.denoise(x_ve.astype(np.float32), sig(a)).astype(np.float64)
                e = torch.from_numpy(((x_ve - d) / sig(a)).astype(np.float32))
                x = sch.step(e, t, x, eta=eta).prev_sample
                # the sample's timestep: the next one, and 0 after the last step
                a_next = float(ac[ts[k + 1]]) if k + 1 < len(ts) else float(ac[0])
                traj.append((x.double().numpy() / math.sqrt(a_next)).astype(np.float32))
        finally:
            tcd_mod.randn_tensor = saved
        meta[f"{name}.denoiser"] = "gmm+sd_schedule"
        store_case(out, meta, name, "tcd", options, x_ve0, np.array(sigmas), rec, traj, traj[-1])


# ---- score SDEs (Song et al. 2021), tools/score_sde_ref.py ----

SCORE_PC_CASES = [
    # (case, sde, sde kwargs, predictor, corrector, snr, n_steps, denoise, N)
    ("s_pc_ve", "ve", dict(sigma_max=20.0), "reverse_diffusion", "langevin", 0.16, 1, True, 20),
    ("s_pc_ve_ald", "ve", dict(sigma_max=20.0), "none", "ald", 0.2, 2, True, 12),
    ("s_pc_ve_ancestral", "ve", dict(sigma_max=20.0), "ancestral", "none", 0.16, 1, True, 20),
    ("s_pc_ve_em_noisy", "ve", dict(sigma_max=20.0), "euler_maruyama", "langevin", 0.1, 1, False, 80),
    # (VP's discrete betas reach beta_max / N: N > 20 keeps them below 1. Langevin's step is
    # (snr |z| / |score|)^2 and near t = 1e-3 the score (m D - y) / std^2 is float32 rounding of
    # D - y amplified, different in any two implementations: the Langevin cases end at a larger
    # eps, SCORE_EPS)
    ("s_pc_vp", "vp", {}, "euler_maruyama", "langevin", 0.16, 1, True, 100),
    ("s_pc_vp_rd", "vp", {}, "reverse_diffusion", "none", 0.16, 1, True, 50),
    ("s_pc_vp_ancestral", "vp", {}, "ancestral", "ald", 0.05, 2, True, 30),
    ("s_pc_subvp", "subvp", {}, "euler_maruyama", "ald", 0.1, 1, True, 40),
    ("s_pc_subvp_rd", "subvp", {}, "reverse_diffusion", "none", 0.16, 1, True, 30),
]

SCORE_EPS = {"s_pc_ve_em_noisy": 0.1, "s_pc_vp": 0.05}

SCORE_ODE_CASES = [
    # (case, sde, sde kwargs, difusa options, rtol, atol, denoise)
    ("s_ode_ve", "ve", dict(sigma_max=20.0), "", 1e-5, 1e-5, True),
    ("s_ode_vp", "vp", {}, "sde=vp", 1e-5, 1e-5, True),
    ("s_ode_subvp", "subvp", {}, "sde=subvp denoise=0", 1e-5, 1e-5, False),
    ("s_ode_vp_loose", "vp", {}, "sde=vp rtol=0.001 atol=0.0001 denoise=0", 1e-3, 1e-4, False),
]


def make_sde(kind, kw, n):
    import score_sde_ref as S
    return {"ve": S.VESDE, "vp": S.VPSDE, "subvp": S.SubVPSDE}[kind](N=n, **kw)


def run_score_sde(gmm, out, meta):
    import score_sde_ref as S

    for idx, (name, kind, kw, pred, corr, snr, n_steps, denoise, n) in enumerate(SCORE_PC_CASES):
        eps = SCORE_EPS.get(name, 1e-3)
        sde = make_sde(kind, kw, n)
        ts = list(np.linspace(1.0, eps, n))
        sigmas = [sde.marginal(t)[1] / sde.marginal(t)[0] for t in ts] + [0.0]
        g = torch.Generator().manual_seed(600 + idx)
        m0 = sde.marginal(ts[0])[0]
        prior = torch.randn(SHAPE, generator=g) * (kw.get("sigma_max", 1.0) if kind == "ve" else 1.0)
        x_ve0 = f32(prior.double().numpy() / m0)
        y = torch.from_numpy((x_ve0.astype(np.float64) * m0).astype(np.float32))
        rec = NoiseRecorder(6000 + idx)
        score = S.score_from_denoiser(sde, gmm.denoise)
        traj = []

        def cb(i, xx):
            # difusa keeps x in the VE view between steps: y / m(t_next); the result stays y
            m = sde.marginal(ts[i + 1])[0] if i + 1 < len(ts) else 1.0
            traj.append((xx.double().numpy() / m).astype(np.float32))

        res = S.pc_sampler(sde, score, y, ts, pred, corr, snr, n_steps, rec.randn_like, denoise=denoise, callback=cb)
        if denoise and pred != "none":
            rec.keep([True] * (len(rec.noise) - 1) + [False])  # the last predictor's noise is dropped
        options = (f"sde={kind} predictor={pred} corrector={corr} snr={snr} n_steps={n_steps}"
                   f" denoise={int(denoise)}")
        store_case(out, meta, name, "score_pc", options, x_ve0, np.array(sigmas), rec, traj, res.numpy())

    eps = 1e-3
    for idx, (name, kind, kw, options, rtol, atol, denoise) in enumerate(SCORE_ODE_CASES):
        sde = make_sde(kind, kw, 1000)
        sigmas = [sde.marginal(t)[1] / sde.marginal(t)[0] for t in (1.0, eps)] + ([0.0] if denoise else [])
        g = torch.Generator().manual_seed(700 + idx)
        m0 = sde.marginal(1.0)[0]
        prior = torch.randn(SHAPE, generator=g) * (kw.get("sigma_max", 1.0) if kind == "ve" else 1.0)
        x_ve0 = f32(prior.double().numpy() / m0)
        y = torch.from_numpy((x_ve0.astype(np.float64) * m0).astype(np.float32))
        score = S.score_from_denoiser(sde, gmm.denoise)
        res, nfev = S.ode_sampler(sde, score, y, 1.0, eps, rtol=rtol, atol=atol, denoise=denoise)
        res = res.double().numpy()
        if not denoise:
            res = res / sde.marginal(eps)[0]  # difusa returns the VE sample at the last sigma
        meta[f"{name}.nfev"] = str(nfev)
        store_case(out, meta, name, "score_ode", options, x_ve0, np.array(sigmas), None, None, f32(res))


# ---- schedules ----

def comfy_model_sampling(betas64):
    """ComfyUI ModelSamplingDiscrete: float64 betas -> float32 sigmas / log_sigmas."""
    ac = np.cumprod(1 - betas64)
    sigmas = torch.from_numpy(((1 - ac) / ac) ** 0.5).float()
    return sigmas, sigmas.log()


def comfy_sigma(log_sigmas, t):
    t = torch.clamp(torch.as_tensor(t, dtype=torch.float32), 0, len(log_sigmas) - 1)
    lo, hi, w = t.floor().long(), t.ceil().long(), t.frac()
    return ((1 - w) * log_sigmas[lo] + w * log_sigmas[hi]).exp()


def comfy_schedules(sigmas, log_sigmas, steps):
    """ComfyUI's samplers.py schedulers on a discrete model (transcribed)."""
    import scipy.stats

    ds = EXT.DiscreteSchedule(sigmas, quantize=False)
    n = len(sigmas)
    res = {}
    # normal / sgm_uniform: timestep(sigma) of the ends, linspace, sigma(t)
    start, end = ds.sigma_to_t(sigmas[-1]), ds.sigma_to_t(sigmas[0])
    ts = torch.linspace(start, end, steps)
    res["normal"] = [float(comfy_sigma(log_sigmas, t)) for t in ts] + [0.0]
    ts = torch.linspace(start, end, steps + 1)[:-1]
    res["sgm_uniform"] = [float(comfy_sigma(log_sigmas, t)) for t in ts] + [0.0]
    ss = n / steps
    res["simple"] = [float(sigmas[-(1 + int(x * ss))]) for x in range(steps)] + [0.0]
    sigs, x, ss = [0.0], 1, max(n // steps, 1)
    while x < n:
        sigs.append(float(sigmas[x]))
        x += ss
    res["ddim_uniform"] = sigs[::-1]
    ts = 1 - np.linspace(0, 1, steps, endpoint=False)
    ts = np.rint(scipy.stats.beta.ppf(ts, 0.6, 0.6) * (n - 1))
    sigs, last = [], -1
    for t in ts:
        if t != last:
            sigs.append(float(sigmas[int(t)]))
        last = t
    res["beta"] = sigs + [0.0]
    smin, smax = float(sigmas[0]), float(sigmas[-1])
    adj = torch.arange(steps, dtype=torch.float).div_(max(steps - 1, 1))
    kl = adj.new_zeros(steps + 1)
    kl[:-1] = (adj * math.atan(smin) + (1 - adj) * math.atan(smax)).tan_()
    res["kl_optimal"] = kl.tolist()
    return res


AYS = {
    "ays_sd15": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
                 0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "ays_sdxl": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
                 0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
}


def ays(kind, steps):
    def loglinear_interp(t_steps, num_steps):
        xs = np.linspace(0, 1, len(t_steps))
        ys = np.log(t_steps[::-1])
        new_xs = np.linspace(0, 1, num_steps)
        new_ys = np.interp(new_xs, xs, ys)
        return np.exp(new_ys)[::-1].copy()

    sig = AYS[kind][:]
    if steps + 1 != len(sig):
        sig = loglinear_interp(sig, steps + 1)
    sig = list(sig)
    sig[-1] = 0
    return sig


def linear_quadratic(steps, sigma_max, threshold_noise=0.025, linear_steps=None):
    if steps == 1:
        sched = [1.0, 0.0]
    else:
        if linear_steps is None:
            linear_steps = steps // 2
        lin = [i * threshold_noise / linear_steps for i in range(linear_steps)]
        diff = linear_steps - threshold_noise * steps
        qs = steps - linear_steps
        qc = diff / (linear_steps * qs ** 2)
        lc = threshold_noise / linear_steps - 2 * diff / (qs ** 2)
        c = qc * (linear_steps ** 2)
        quad = [qc * (i ** 2) + lc * i + c for i in range(linear_steps, steps)]
        sched = [1.0 - x for x in lin + quad + [1.0]]
    return [s * sigma_max for s in sched]


def run_schedules(out, meta):
    from diffusers import DDPMScheduler, EulerDiscreteScheduler

    # training schedules: diffusers (float32) and the float64 formula ComfyUI uses
    train = {
        "scaled_linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        "linear": dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02),
        "squaredcos_cap_v2": dict(beta_schedule="squaredcos_cap_v2"),
        "scaled_linear_zsnr": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                   rescale_betas_zero_snr=True),
    }
    for name, cfg in train.items():
        s = DDPMScheduler(num_train_timesteps=1000, **cfg)
        out[f"train.{name}.alphas_cumprod"] = entry(f64(s.alphas_cumprod.double().numpy()))
        meta[f"train.{name}"] = cfg["beta_schedule"] + (" zsnr" if "zsnr" in name else "")
    b64 = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    out["train.scaled_linear.alphas_cumprod64"] = entry(f64(np.cumprod(1 - b64)))
    e = EulerDiscreteScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                               beta_end=0.012, rescale_betas_zero_snr=True)
    out["train.scaled_linear_zsnr.sigmas"] = entry(f64(e.sigmas.double().numpy()[:-1][::-1].copy()))

    # the model's sigmas as ComfyUI builds them (float64 betas, float32 sigmas)
    sigmas, log_sigmas = comfy_model_sampling(b64)
    ds = EXT.DiscreteSchedule(sigmas, quantize=False)
    smin, smax = float(sigmas[0]), float(sigmas[-1])
    for steps in (1, 2, 7, 20, 33):
        p = f"steps{steps}"
        # k-diffusion's functions as users run them (float32), and in float64
        # (torch's default dtype switched), which is the formula without float32's error
        for dtype, suffix in ((torch.float32, ""), (torch.float64, "64")):
            torch.set_default_dtype(dtype)
            out[f"k.karras{suffix}.{p}"] = entry(f64(K.get_sigmas_karras(steps, smin, smax).double().numpy()))
            out[f"k.karras_rho3{suffix}.{p}"] = entry(
                f64(K.get_sigmas_karras(steps, smin, smax, rho=3.0).double().numpy()))
            out[f"k.exponential{suffix}.{p}"] = entry(
                f64(K.get_sigmas_exponential(steps, smin, smax).double().numpy()))
            out[f"k.polyexponential{suffix}.{p}"] = entry(
                f64(K.get_sigmas_polyexponential(steps, smin, smax, rho=2.0).double().numpy()))
            out[f"k.vp{suffix}.{p}"] = entry(f64(K.get_sigmas_vp(steps).double().numpy()))
        torch.set_default_dtype(torch.float32)
        for kind, sig in comfy_schedules(sigmas, log_sigmas, steps).items():
            out[f"comfy.{kind}.{p}"] = entry(f64(np.array(sig)))
        for kind in AYS:
            out[f"comfy.{kind}.{p}"] = entry(f64(np.array(ays(kind, steps))))
        out[f"comfy.linear_quadratic.{p}"] = entry(f64(np.array(linear_quadratic(steps, smax))))
        for spacing in ("leading", "trailing", "linspace"):
            e = EulerDiscreteScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                                       beta_end=0.012, timestep_spacing=spacing, steps_offset=1)
            e.set_timesteps(steps)
            out[f"diffusers.{spacing}.{p}"] = entry(f64(e.sigmas.double().numpy()))
            # the same on float64 alphas_cumprod (diffusers keeps them in float32)
            e.alphas_cumprod = torch.from_numpy(np.cumprod(1 - b64))
            e.set_timesteps(steps)
            out[f"diffusers.{spacing}64.{p}"] = entry(f64(e.sigmas.double().numpy()))
    # sigma <-> t (k-diffusion DiscreteSchedule)
    probe = torch.tensor([0.02, 0.0291675, 0.03, 0.1, 0.5, 1.0, 2.5, 7.0, 14.0, 14.614642, 20.0], dtype=torch.float32)
    out["k.sigma_to_t.sigma"] = entry(f64(probe.double().numpy()))
    out["k.sigma_to_t.t"] = entry(f64(ds.sigma_to_t(probe).double().numpy()))
    tprobe = torch.tensor([0.0, 0.5, 1.0, 10.25, 100.0, 499.5, 998.9, 999.0], dtype=torch.float32)
    out["k.t_to_sigma.t"] = entry(f64(tprobe.double().numpy()))
    out["k.t_to_sigma.sigma"] = entry(f64(ds.t_to_sigma(tprobe).double().numpy()))

    # model wrapper: an analytic inner model f(x_in, t) = tanh(x_in) (1 + t / 1000) + 0.1 sin(t)
    # (float64 from the float32 input), through CompVisDenoiser / CompVisVDenoiser
    class Inner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.alphas_cumprod = torch.from_numpy(np.cumprod(1 - b64)).float()

        def apply_model(self, x, t, cond=None, **kw):
            xd, td = x.double(), t.double().view(-1, *([1] * (x.ndim - 1)))
            return (torch.tanh(xd) * (1 + td / 1000) + 0.1 * torch.sin(td)).float()

    inner = Inner()
    g = torch.Generator().manual_seed(77)
    x = torch.randn(SHAPE, generator=g) * 3
    out["wrap.x"] = entry(f32(x.numpy()))
    wsig = [0.03, 0.5, 1.7, 9.0]
    out["wrap.sigmas"] = entry(f64(np.array(wsig)))
    for pred, cls in (("eps", EXT.CompVisDenoiser), ("v", EXT.CompVisVDenoiser)):
        den = cls(inner, quantize=False)
        # k-diffusion's wrapper builds its schedule from the float32 alphas_cumprod
        res = [den(x, torch.full((SHAPE[0],), s, dtype=torch.float32), cond=None).numpy() for s in wsig]
        out[f"wrap.{pred}.out"] = entry(f32(np.stack(res).reshape(len(res), -1)))
        out[f"wrap.{pred}.alphas_cumprod"] = entry(f64(inner.alphas_cumprod.double().numpy()))


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    torch.set_num_threads(1)
    gmm = make_gmm()
    out, meta = {}, {}
    out["gmm.weights"] = entry(f64(gmm.w))
    out["gmm.means"] = entry(f64(gmm.mu))
    out["gmm.stds"] = entry(f64(gmm.s))
    run_k_cases(gmm, out, meta)
    run_k_dpm_solver(gmm, out, meta)
    run_diffusers(gmm, out, meta)
    run_comfy_cases(gmm, out, meta)
    run_diffusers_multistep(gmm, out, meta)
    run_score_sde(gmm, out, meta)
    run_tcd(gmm, out, meta)
    gmm_u = make_gmm_uncond()
    out["gmm_u.weights"] = entry(f64(gmm_u.w))
    out["gmm_u.means"] = entry(f64(gmm_u.mu))
    out["gmm_u.stds"] = entry(f64(gmm_u.s))
    run_cfg_pp(gmm, gmm_u, out, meta)
    write_safetensors(os.path.join(outdir, "sampler_ref.safetensors"), out, meta)
    sout, smeta = {}, {}
    run_schedules(sout, smeta)
    write_safetensors(os.path.join(outdir, "sched.safetensors"), sout, smeta)


if __name__ == "__main__":
    main()

"""Score-based samplers of Song et al. 2021 reimplemented from score_sde's
sde_lib.py and sampling.py (the official PyTorch code is not on PyPI): the
VE / VP / sub-VP SDEs with their discretize(), reverse(), the reverse-diffusion,
Euler-Maruyama and ancestral predictors, the Langevin and annealed Langevin
correctors, pc_sampler and ode_sampler (scipy.integrate.solve_ivp, RK45).
Written from score_sde's formulas, not from difusa's C code.

Departures, all of precision or plumbing, none of formula:
- time-dependent scalars (sigma(t), beta(t), marginal std) are Python floats
  (float64); score_sde computes them as float32 tensors, whose 1 - exp(.)
  near t = eps loses ~1e-3 of the VP std. Tensors stay float32.
- the time grid is handed in (ts) instead of linspace(T, eps, N), so a run
  can start below T; N (discrete tables, Euler-Maruyama's dt = -1/N) is given.
- score_sde's sub-VP SDE has no discrete alphas, so its Langevin corrector
  fails there; here it uses the VP's (1 - linspace(beta_min/N, beta_max/N, N)).
- the score comes from a denoiser D(x, sigma) in the VE view:
  score(y, t) = (m(t) D(y / m(t), std(t) / m(t)) - y) / std(t)^2.
- noise is drawn through a callable (the fixture records it).
"""

import math

import numpy as np
import torch
from scipy import integrate


class VESDE:
    def __init__(self, sigma_min=0.01, sigma_max=50, N=1000):
        self.sigma_min, self.sigma_max, self.N = sigma_min, sigma_max, N
        self.discrete_sigmas = np.exp(np.linspace(np.log(sigma_min), np.log(sigma_max), N))
        self.T = 1

    def sde(self, t):  # drift coefficient (drift = f * x), diffusion
        sigma = self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        return 0.0, sigma * math.sqrt(2 * (math.log(self.sigma_max) - math.log(self.sigma_min)))

    def marginal(self, t):  # mean coefficient, std
        return 1.0, self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def timestep(self, t):
        return int(t * (self.N - 1) / self.T)

    def discretize(self, x, t):
        k = self.timestep(t)
        sigma = self.discrete_sigmas[k]
        adjacent = 0.0 if k == 0 else self.discrete_sigmas[k - 1]
        return torch.zeros_like(x), math.sqrt(sigma ** 2 - adjacent ** 2)


class VPSDE:
    def __init__(self, beta_min=0.1, beta_max=20, N=1000):
        self.beta_0, self.beta_1, self.N = beta_min, beta_max, N
        self.discrete_betas = np.linspace(beta_min / N, beta_max / N, N)
        self.alphas = 1.0 - self.discrete_betas
        self.T = 1

    def sde(self, t):
        beta_t = self.beta_0 + t * (self.beta_1 - self.beta_0)
        return -0.5 * beta_t, math.sqrt(beta_t)

    def marginal(self, t):
        lmc = -0.25 * t ** 2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0
        return math.exp(lmc), math.sqrt(-math.expm1(2.0 * lmc))

    def timestep(self, t):
        return int(t * (self.N - 1) / self.T)

    def discretize(self, x, t):
        k = self.timestep(t)
        beta, alpha = self.discrete_betas[k], self.alphas[k]
        return math.sqrt(alpha) * x - x, math.sqrt(beta)


class SubVPSDE(VPSDE):
    def sde(self, t):
        beta_t = self.beta_0 + t * (self.beta_1 - self.beta_0)
        discount = -math.expm1(-2 * self.beta_0 * t - (self.beta_1 - self.beta_0) * t ** 2)
        return -0.5 * beta_t, math.sqrt(beta_t * discount)

    def marginal(self, t):
        lmc = -0.25 * t ** 2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0
        return math.exp(lmc), -math.expm1(2.0 * lmc)

    def discretize(self, x, t):  # SDE.discretize: Euler with dt = 1/N
        dt = 1 / self.N
        f, g = self.sde(t)
        return f * x * dt, g * math.sqrt(dt)


def reverse(sde, score_fn, probability_flow=False):
    """sde.reverse(): the reverse-time SDE (or the probability-flow ODE)."""
    w = 0.5 if probability_flow else 1.0

    def rsde(x, t):
        f, g = sde.sde(t)
        score = score_fn(x, t)
        return f * x - g ** 2 * score * w, (0.0 if probability_flow else g)

    def rdiscretize(x, t):
        f, G = sde.discretize(x, t)
        rev_f = f - G ** 2 * score_fn(x, t) * w
        return rev_f, (0.0 if probability_flow else G)

    return rsde, rdiscretize


def euler_maruyama_predictor(sde, score_fn, x, t, randn):
    rsde, _ = reverse(sde, score_fn)
    dt = -1.0 / sde.N
    z = randn(x)
    drift, diffusion = rsde(x, t)
    x_mean = x + drift * dt
    return x_mean + diffusion * math.sqrt(-dt) * z, x_mean


def reverse_diffusion_predictor(sde, score_fn, x, t, randn):
    _, rdiscretize = reverse(sde, score_fn)
    f, G = rdiscretize(x, t)
    z = randn(x)
    x_mean = x - f
    return x_mean + G * z, x_mean


def ancestral_predictor(sde, score_fn, x, t, randn):
    k = sde.timestep(t)
    if isinstance(sde, VESDE):
        sigma = sde.discrete_sigmas[k]
        adjacent = 0.0 if k == 0 else sde.discrete_sigmas[k - 1]
        score = score_fn(x, t)
        x_mean = x + score * (sigma ** 2 - adjacent ** 2)
        std = math.sqrt((adjacent ** 2 * (sigma ** 2 - adjacent ** 2)) / (sigma ** 2))
        return x_mean + std * randn(x), x_mean
    if isinstance(sde, SubVPSDE):
        raise NotImplementedError("ancestral sampling: VE and VP only")
    beta = sde.discrete_betas[k]
    score = score_fn(x, t)
    x_mean = (x + beta * score) / math.sqrt(1.0 - beta)
    return x_mean + math.sqrt(beta) * randn(x), x_mean


def none_predictor(sde, score_fn, x, t, randn):
    return x, x


def _alpha(sde, t):
    return 1.0 if isinstance(sde, VESDE) else sde.alphas[sde.timestep(t)]


def langevin_corrector(sde, score_fn, x, t, snr, n_steps, randn):
    alpha = _alpha(sde, t)
    x_mean = x
    for _ in range(n_steps):
        grad = score_fn(x, t)
        noise = randn(x)
        grad_norm = torch.norm(grad.reshape(grad.shape[0], -1), dim=-1).double().mean().item()
        noise_norm = torch.norm(noise.reshape(noise.shape[0], -1), dim=-1).double().mean().item()
        step_size = (snr * noise_norm / grad_norm) ** 2 * 2 * alpha
        x_mean = x + step_size * grad
        x = x_mean + math.sqrt(step_size * 2) * noise
    return x, x_mean


def ald_corrector(sde, score_fn, x, t, snr, n_steps, randn):
    alpha = _alpha(sde, t)
    std = sde.marginal(t)[1]
    x_mean = x
    for _ in range(n_steps):
        grad = score_fn(x, t)
        noise = randn(x)
        step_size = (snr * std) ** 2 * 2 * alpha
        x_mean = x + step_size * grad
        x = x_mean + noise * math.sqrt(step_size * 2)
    return x, x_mean


def none_corrector(sde, score_fn, x, t, snr, n_steps, randn):
    return x, x


PREDICTORS = {"reverse_diffusion": reverse_diffusion_predictor, "euler_maruyama": euler_maruyama_predictor,
              "ancestral": ancestral_predictor, "none": none_predictor}
CORRECTORS = {"langevin": langevin_corrector, "ald": ald_corrector, "none": none_corrector}


def score_from_denoiser(sde, denoise):
    """denoise(x_ve float32 array, sigma) -> float32 array."""
    def score_fn(y, t):
        m, std = sde.marginal(t)
        xv = (y.double() / m).float()
        d = torch.from_numpy(denoise(xv.numpy(), std / m)).double()
        return ((m * d - y.double()) / std ** 2).float()
    return score_fn


def pc_sampler(sde, score_fn, y, ts, predictor, corrector, snr, n_steps, randn, denoise=True, callback=None):
    """y: the prior sample in the SDE's space; ts: the times (score_sde: linspace(T, eps, N)).
    callback(i, x): x after each step."""
    x, x_mean = y, y
    for i, t in enumerate(ts):
        x, x_mean = CORRECTORS[corrector](sde, score_fn, x, t, snr, n_steps, randn)
        x, x_mean = PREDICTORS[predictor](sde, score_fn, x, t, randn)
        if callback is not None:
            callback(i, x_mean if denoise and i == len(ts) - 1 else x)
    return x_mean if denoise else x


def ode_sampler(sde, score_fn, y, t0, eps, rtol=1e-5, atol=1e-5, denoise=False):
    rsde, _ = reverse(sde, score_fn, probability_flow=True)
    shape = y.shape

    def ode_func(t, x):
        x = torch.from_numpy(x.reshape(shape)).float()
        drift, _ = rsde(x, t)
        return drift.numpy().reshape(-1).astype(np.float64)

    sol = integrate.solve_ivp(ode_func, (t0, eps), y.numpy().reshape(-1).astype(np.float64), rtol=rtol, atol=atol,
                              method="RK45")
    x = torch.tensor(sol.y[:, -1]).reshape(shape).float()
    if denoise:
        _, x = reverse_diffusion_predictor(sde, score_fn, x, eps, lambda z: torch.zeros_like(z))
    return x, sol.nfev

"""The analytic denoiser the sampler fixtures run on, evaluated exactly as
tests/test_sampler_gmm.h does in C: the exact x0-predictor of a Gaussian
mixture, each item of the batch being one D-dimensional point.

Data: x0 ~ sum_k w_k N(mu_k, s_k^2 I). At noise level sigma (x = x0 + sigma e),
  r_k(x)      ∝ w_k (s_k^2 + sigma^2)^(-D/2) exp(-|x - mu_k|^2 / (2 (s_k^2 + sigma^2)))
  E[x0 | x]   = sum_k r_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k))
computed in float64 from the float32 input, rounded to float32 once."""

import numpy as np


class GMM:
    def __init__(self, weights, means, stds):
        self.w = np.asarray(weights, np.float64)  # (K)
        self.mu = np.asarray(means, np.float64)  # (K, D)
        self.s = np.asarray(stds, np.float64)  # (K)

    def denoise(self, x, sigma):
        """x: float32 array (B, ...) with prod(...) == D; sigma: float -> float32 array."""
        shape = x.shape
        xb = np.asarray(x, np.float64).reshape(shape[0], -1)
        d = xb.shape[1]
        s2 = self.s * self.s
        var = s2 + float(sigma) ** 2
        diff = xb[:, None, :] - self.mu[None, :, :]  # (B, K, D)
        d2 = (diff * diff).sum(-1)  # (B, K)
        logp = np.log(self.w)[None, :] - 0.5 * d * np.log(var)[None, :] - 0.5 * d2 / var[None, :]
        logp -= logp.max(axis=1, keepdims=True)
        r = np.exp(logp)
        r /= r.sum(axis=1, keepdims=True)
        x0k = self.mu[None, :, :] + (s2 / var)[None, :, None] * diff
        out = (r[:, :, None] * x0k).sum(1)
        return out.reshape(shape).astype(np.float32)

"""A class-conditional DiT written after facebookresearch/DiT models.py (same modules, same initialisation,
same state-dict names: x_embedder.proj, t_embedder.mlp.0/2, y_embedder.embedding_table, blocks.N.attn.qkv/proj,
blocks.N.mlp.fc1/fc2, blocks.N.adaLN_modulation.1, final_layer.linear / adaLN_modulation.1, pos_embed), without
timm, and DiT's Gaussian diffusion (diffusion/gaussian_diffusion.py: linear betas 1e-4 .. 0.02 over 1000 steps,
epsilon mean, LEARNED_RANGE variance, loss = MSE(eps) + the variational bound on the variance with the mean
frozen) with its respaced ancestral sampler (diffusion/respace.py)."""
import math

import numpy as np
import torch
import torch.nn as nn


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):  # timm's PatchEmbed (flatten, no norm)
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):  # timm's Attention (qkv_bias=True, no q/k norm)
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):  # timm's Mlp with GELU(tanh)
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size, frequency_embedding_size=256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size, bias=True), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size, bias=True))
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t):
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden_size, dropout_prob):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def forward(self, labels, drop=None):
        """drop: a bool tensor (which labels become the null class num_classes), or None."""
        if drop is not None:
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels)


class DiTBlock(nn.Module):
    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden_size, patch_size, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    def __init__(self, input_size=16, patch_size=2, in_channels=4, hidden_size=128, depth=6, num_heads=4,
                 mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=48, learn_sigma=True):
        super().__init__()
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        num_patches = self.x_embedder.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        def _basic_init(module):
            if isinstance(module, nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

        self.apply(_basic_init)
        pos_embed = get_2d_sincos_pos_embed(self.pos_embed.shape[-1], int(self.x_embedder.num_patches ** 0.5))
        self.pos_embed.data.copy_(torch.from_numpy(pos_embed).float().unsqueeze(0))
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.constant_(block.adaLN_modulation[-1].weight, 0)
            nn.init.constant_(block.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].weight, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.linear.weight, 0)
        nn.init.constant_(self.final_layer.linear.bias, 0)

    def unpatchify(self, x):
        c = self.out_channels
        p = self.patch_size
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(shape=(x.shape[0], h, w, p, p, c))
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(shape=(x.shape[0], c, h * p, h * p))

    def forward(self, x, t, y, drop=None):
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y, drop)
        for block in self.blocks:
            x = block(x, c)
        return self.unpatchify(self.final_layer(x, c))


def get_2d_sincos_pos_embed(embed_dim, grid_size):
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


# ------------------------------------------------------------------------------------------- diffusion

class Diffusion:
    """DiT's GaussianDiffusion (epsilon mean, LEARNED_RANGE variance), all tables float64 as in DiT, on a
    subset of the 1000 training steps when respaced (DiT's SpacedDiffusion)."""

    def __init__(self, betas, timestep_map=None):
        self.betas = betas = np.asarray(betas, np.float64)
        self.num_timesteps = len(betas)
        self.timestep_map = np.arange(len(betas)) if timestep_map is None else np.asarray(timestep_map)
        alphas = 1.0 - betas
        self.alphas_cumprod = ac = np.cumprod(alphas)
        ac_prev = np.append(1.0, ac[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(ac)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - ac)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / ac - 1)
        pv = betas * (1.0 - ac_prev) / (1.0 - ac)
        self.posterior_log_variance_clipped = np.log(np.append(pv[1], pv[1:])) if len(pv) > 1 else np.array([])
        self.posterior_mean_coef1 = betas * np.sqrt(ac_prev) / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac)

    @classmethod
    def linear(cls, steps=1000):
        scale = 1000 / steps
        return cls(np.linspace(scale * 0.0001, scale * 0.02, steps, dtype=np.float64))

    def respaced(self, n):
        """DiT's space_timesteps(1000, [n]) + SpacedDiffusion: n evenly strided steps."""
        frac_stride = (self.num_timesteps - 1) / (n - 1) if n > 1 else 1
        cur, use = 0.0, set()
        for _ in range(n):
            use.add(round(cur))
            cur += frac_stride
        use = sorted(use)
        last, new_betas = 1.0, []
        for i, a in enumerate(self.alphas_cumprod):
            if i in use:
                new_betas.append(1 - a / last)
                last = a
        return Diffusion(np.array(new_betas), timestep_map=use)

    _tables = {}

    @classmethod
    def _ex(cls, arr, t, shape):
        key = (id(arr), t.device)
        tab = cls._tables.get(key)
        if tab is None or tab[0] is not arr:
            tab = cls._tables[key] = (arr, torch.from_numpy(arr).to(t.device, torch.float32))
        return tab[1][t].reshape(-1, *([1] * (len(shape) - 1)))

    def q_sample(self, x0, t, noise):
        return self._ex(self.sqrt_alphas_cumprod, t, x0.shape) * x0 + \
            self._ex(self.sqrt_one_minus_alphas_cumprod, t, x0.shape) * noise

    def q_posterior(self, x0, xt, t):
        mean = self._ex(self.posterior_mean_coef1, t, xt.shape) * x0 + self._ex(self.posterior_mean_coef2, t, xt.shape) * xt
        return mean, self._ex(self.posterior_log_variance_clipped, t, xt.shape)

    def p_mean_variance(self, out, xt, t):
        C = xt.shape[1]
        eps, var_values = out[:, :C], out[:, C:]
        min_log = self._ex(self.posterior_log_variance_clipped, t, xt.shape)
        max_log = self._ex(np.log(self.betas), t, xt.shape)
        frac = (var_values + 1) / 2
        log_var = frac * max_log + (1 - frac) * min_log
        x0 = self._ex(self.sqrt_recip_alphas_cumprod, t, xt.shape) * xt - \
            self._ex(self.sqrt_recipm1_alphas_cumprod, t, xt.shape) * eps
        mean, _ = self.q_posterior(x0, xt, t)
        return mean, log_var, x0

    def training_losses(self, out, x0, xt, t, noise):
        """DiT's LossType.MSE with learned sigma: mse(eps) + vb (the mean detached); per-sample losses."""
        C = x0.shape[1]
        mse = ((noise - out[:, :C]) ** 2).mean(dim=(1, 2, 3))
        frozen = torch.cat([out[:, :C].detach(), out[:, C:]], dim=1)
        true_mean, true_logvar = self.q_posterior(x0, xt, t)
        mean, log_var, _ = self.p_mean_variance(frozen, xt, t)
        kl = 0.5 * (-1.0 + log_var - true_logvar + torch.exp(true_logvar - log_var) +
                    (true_mean - mean) ** 2 * torch.exp(-log_var))
        kl = kl.mean(dim=(1, 2, 3)) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, means=mean, log_scales=0.5 * log_var)
        nll = nll.mean(dim=(1, 2, 3)) / math.log(2.0)
        vb = torch.where(t == 0, nll, kl)
        return mse + vb, mse, vb

    @torch.no_grad()
    def sample(self, model, y, shape, cfg, generator, null_class):
        """DiT's sample.py: p_sample_loop with forward_with_cfg (guidance on the eps half only)."""
        n = shape[0]
        x = torch.randn(shape, generator=generator)
        yy = torch.cat([y, torch.full_like(y, null_class)])
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((n,), i, dtype=torch.long)
            tm = torch.from_numpy(self.timestep_map)[t]
            out = model(torch.cat([x, x]), torch.cat([tm, tm]), yy)
            C = x.shape[1]
            cond, unc = out[:n], out[n:]
            eps = unc[:, :C] + cfg * (cond[:, :C] - unc[:, :C])
            mean, log_var, _ = self.p_mean_variance(torch.cat([eps, cond[:, C:]], 1), x, t)
            noise = torch.randn(shape, generator=generator)
            x = mean + (i > 0) * torch.exp(0.5 * log_var) * noise
        return x


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x, *, means, log_scales):
    centered_x = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered_x + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered_x - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


# ------------------------------------------------------------------------------------------- diffusers check

def to_diffusers(sd, depth):
    """The original state dict under diffusers' DiTTransformer2DModel names (as diffusers'
    scripts/convert_dit_to_diffusers.py maps them)."""
    out = {"pos_embed.proj.weight": sd["x_embedder.proj.weight"], "pos_embed.proj.bias": sd["x_embedder.proj.bias"],
           "proj_out_1.weight": sd["final_layer.adaLN_modulation.1.weight"],
           "proj_out_1.bias": sd["final_layer.adaLN_modulation.1.bias"],
           "proj_out_2.weight": sd["final_layer.linear.weight"], "proj_out_2.bias": sd["final_layer.linear.bias"]}
    for d in range(depth):
        p, q = "transformer_blocks.%d." % d, "blocks.%d." % d
        out[p + "norm1.emb.timestep_embedder.linear_1.weight"] = sd["t_embedder.mlp.0.weight"]
        out[p + "norm1.emb.timestep_embedder.linear_1.bias"] = sd["t_embedder.mlp.0.bias"]
        out[p + "norm1.emb.timestep_embedder.linear_2.weight"] = sd["t_embedder.mlp.2.weight"]
        out[p + "norm1.emb.timestep_embedder.linear_2.bias"] = sd["t_embedder.mlp.2.bias"]
        out[p + "norm1.emb.class_embedder.embedding_table.weight"] = sd["y_embedder.embedding_table.weight"]
        out[p + "norm1.linear.weight"] = sd[q + "adaLN_modulation.1.weight"]
        out[p + "norm1.linear.bias"] = sd[q + "adaLN_modulation.1.bias"]
        for name, part in zip(("to_q", "to_k", "to_v"), sd[q + "attn.qkv.weight"].chunk(3)):
            out[p + "attn1.%s.weight" % name] = part
        for name, part in zip(("to_q", "to_k", "to_v"), sd[q + "attn.qkv.bias"].chunk(3)):
            out[p + "attn1.%s.bias" % name] = part
        out[p + "attn1.to_out.0.weight"] = sd[q + "attn.proj.weight"]
        out[p + "attn1.to_out.0.bias"] = sd[q + "attn.proj.bias"]
        out[p + "ff.net.0.proj.weight"] = sd[q + "mlp.fc1.weight"]
        out[p + "ff.net.0.proj.bias"] = sd[q + "mlp.fc1.bias"]
        out[p + "ff.net.2.weight"] = sd[q + "mlp.fc2.weight"]
        out[p + "ff.net.2.bias"] = sd[q + "mlp.fc2.bias"]
    return out

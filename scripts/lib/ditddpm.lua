-- The original DiT sampler: DDPM over DiT's linear schedule respaced to
-- `steps` (gaussian_diffusion's space_timesteps), with the learned-range
-- variance the model predicts (the second half of its output channels), and
-- guidance as forward_with_cfg applies it (the first `guide` channels).
-- Random draws follow DiT's sample.py: z ~ randn(n, C, H, W), then each step
-- randn of the doubled (cond, uncond) batch, whose first half is used.
local difusa = require "difusa"
local M = {}

local function space_timesteps(total, count)
  local use, seen = {}, {}
  local stride = (total - 1) / (count - 1)
  for i = 0, count - 1 do
    local t = math.floor(i * stride + 0.5)
    if not seen[t] then seen[t] = true; use[#use + 1] = t end
  end
  table.sort(use)
  return use
end

-- float32 rounding, as gaussian_diffusion's _extract casts its float64 tables
local function f32(v) return string.unpack("f", string.pack("f", v)) end

function M.sample(dit, labels, opts)
  local info = dit:info()
  if not info.learn_sigma then error("ddpm with learned variance needs a DiT with learned sigma", 0) end
  local C, n, L = info.in_channels, #labels, opts.latent
  local steps, cfg, guide = opts.steps, opts.cfg or 4, opts.guide_channels or 3
  local use = space_timesteps(1000, steps)
  local betas, last = {}, 1.0
  local ac_base = 1.0
  local k = 1
  for i = 0, 999 do
    local beta_i = 1e-4 + (0.02 - 1e-4) * i / 999
    ac_base = ac_base * (1 - beta_i)
    if i == use[k] then
      betas[k] = 1 - ac_base / last
      last = ac_base
      k = k + 1
    end
  end
  local ac, ac_prev, acc = {}, {}, 1.0
  for i = 1, steps do ac_prev[i] = acc; acc = acc * (1 - betas[i]); ac[i] = acc end
  local post_var = {}
  for i = 1, steps do post_var[i] = betas[i] * (1 - ac_prev[i]) / (1 - ac[i]) end
  local g = opts.generator
  local z = difusa.randn { n, C, L, L, generator = g }
  local x = z
  local null = {}
  for i = 1, n do null[i] = labels[i] end
  for i = 1, n do null[n + i] = info.num_classes end
  for i = steps, 1, -1 do
    local out = dit:forward(difusa.cat({ x, x }, 1), use[i], null):to("cpu")
    local cond, uncond = out:slice(1, 1, n), out:slice(1, n + 1, 2 * n)
    local eps = cond:slice(2, 1, C)
    if cfg ~= 1 then
      local g_c, g_u = cond:slice(2, 1, guide), uncond:slice(2, 1, guide)
      local guided = g_u + (g_c - g_u) * cfg
      eps = guide < C and difusa.cat({ guided, cond:slice(2, guide + 1, C) }, 2) or guided
    end
    local v = cond:slice(2, C + 1, 2 * C)
    local min_log = f32(math.log(i == 1 and post_var[2] or post_var[i]))
    local max_log = f32(math.log(betas[i]))
    local c_x0x, c_x0e = f32(math.sqrt(1 / ac[i])), f32(math.sqrt(1 / ac[i] - 1))
    local c1 = f32(betas[i] * math.sqrt(ac_prev[i]) / (1 - ac[i]))
    local c2 = f32((1 - ac_prev[i]) * math.sqrt(1 - betas[i]) / (1 - ac[i]))
    local x0 = x * c_x0x - eps * c_x0e
    local mean = (x0 * c1 + x * c2):table()
    local noise = difusa.randn { 2 * n, C, L, L, generator = g }:slice(1, 1, n):table()
    local vv = v:table()
    local res = {}
    for j = 1, #mean do
      local frac = (vv[j] + 1) / 2
      local log_var = frac * max_log + (1 - frac) * min_log
      res[j] = i > 1 and mean[j] + math.exp(0.5 * log_var) * noise[j] or mean[j]
    end
    x = difusa.from_table(res, { n, C, L, L })
    if opts.callback then opts.callback { i = steps - i + 1, n = steps, sigma = 0 } end
  end
  return x
end

return M

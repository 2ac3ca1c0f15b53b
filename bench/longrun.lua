-- Long-run stability (`make longrun`): memory and numbers over long work in one process.
--   1. 200 consecutive txt2img generations with the default model (64 x 64, Euler, 20 steps, CFG 3, a new
--      seed each): the resident set size after each, written to build/longrun-rss.csv, and its growth.
--   2. 10 000 Euler steps of the probability-flow ODE on a Gaussian data set, whose exact solution is known
--      (data N(mu, s^2): D(x, sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu), and the ODE carries x from sigma_T
--      to mu + (x - mu) sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_T^2)): the end point against it, and the RSS.
--   difusa bench/longrun.lua [model folder] [csv path] [generations]
package.path = "scripts/lib/?.lua;" .. package.path
local difusa = require "difusa"
local pipeline = require "pipeline"

local model_path = select(1, ...) or "models/tiny-shapes"
local csv_path = select(2, ...) or "build/longrun-rss.csv"
local n_gen = tonumber(select(3, ...) or 200)

local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- 1. generations
local m = assert(difusa.load(model_path))
local prompts = { "a small red circle at the top on a blue background", "a yellow star and a green square",
  "a large green square on the left on a white background", "a small blue ring on the right on a yellow background" }
local rss = {}
local t0 = difusa.clock()
for i = 1, n_gen do
  local opts = { prompt = prompts[(i - 1) % #prompts + 1], negative = "", clip_skip = 1, cfg = 3,
    width = m.size, height = m.size }
  local h, w = pipeline.latent_size(m, opts)
  local cond, uncond = pipeline.encode(m, opts)
  local sigmas = pipeline.sigmas(m, opts, 20)
  local g = difusa.generator(i)
  local x = difusa.randn { 1, m.latent_channels, h, w, generator = g } * math.sqrt(sigmas[1] ^ 2 + 1)
  local img = m.vae:decode(difusa.sampler("euler")(pipeline.denoiser(m, opts, cond, uncond), x, sigmas,
    { generator = g }))
  img, x, cond, uncond = nil, nil, nil, nil
  collectgarbage()
  rss[i] = rss_kib()
  if i % 50 == 0 then io.stderr:write(string.format("  %d generations, RSS %.1f MiB\n", i, rss[i] / 1024)) end
end
local secs = difusa.clock() - t0
local f = assert(io.open(csv_path, "w"))
f:write("generation,rss_kib\n")
for i, v in ipairs(rss) do f:write(i, ",", v, "\n") end
f:close()
-- growth over the second half (after the caches have filled), by least squares
local half = n_gen // 2
local sx, sy, sxx, sxy, k = 0, 0, 0, 0, 0
for i = half + 1, n_gen do
  sx, sy, sxx, sxy, k = sx + i, sy + rss[i], sxx + i * i, sxy + i * rss[i], k + 1
end
local slope = (k * sxy - sx * sy) / (k * sxx - sx * sx)
local peak = 0
for _, v in ipairs(rss) do peak = math.max(peak, v) end
print(string.format("%d generations in %.1f s (%.0f ms each)", n_gen, secs, 1000 * secs / n_gen))
print(string.format("RSS after generation 1: %.1f MiB, 10: %.1f MiB, %d: %.1f MiB, %d: %.1f MiB; peak %.1f MiB",
  rss[1] / 1024, rss[math.min(10, n_gen)] / 1024, half, rss[half] / 1024, n_gen, rss[n_gen] / 1024, peak / 1024))
print(string.format("RSS growth over generations %d..%d: %.2f KiB per generation (%s)", half + 1, n_gen, slope, csv_path))

-- 2. a 10 000-step run against its exact end point
local mu, s, sigma_max, steps = 0.3, 0.5, 80.0, 10000
local sigmas = difusa.sigmas(nil, steps, "karras", { sigma_min = 0.002, sigma_max = sigma_max, rho = 7 })
local x0 = difusa.randn { 1, 4, 16, 16, seed = 7 }
local x = x0 * sigma_max + mu
local function gaussian(v, sigma)
  local k = s * s / (s * s + sigma * sigma)
  return v * k + mu * (1 - k)
end
local before = rss_kib()
t0 = difusa.clock()
local out = difusa.sampler("euler")(gaussian, x, sigmas)
secs = difusa.clock() - t0
collectgarbage()
local after = rss_kib()
-- the exact end point at sigma = 0 from x at sigma_max (the last step of the schedule goes to 0)
local exact = (x - mu) * (s / math.sqrt(s * s + sigma_max * sigma_max)) + mu
local d, ref = (out - exact):table(), (exact - mu):table()
local worst, scale = 0, 0
for i = 1, #d do
  worst = math.max(worst, math.abs(d[i]))
  scale = math.max(scale, math.abs(ref[i]))
end
print(string.format("%d Euler steps in %.1f s: max |error| %.3g against the exact ODE solution (values up to %.3g); " ..
  "RSS %.1f -> %.1f MiB", steps, secs, worst, scale, before / 1024, after / 1024))
